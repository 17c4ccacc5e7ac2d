"""A real git config repo for pull tests: commits made with the `git` command."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import require_tools

REPO_ROOT = Path(__file__).resolve().parents[3]
IMAGE_SPEC = (REPO_ROOT / "examples" / "image-file.yaml").read_text()


class ConfigRepo:
    def __init__(self, path: Path, gnupg_home: Path | None = None) -> None:
        require_tools("git")
        self.path = path
        self.env = {**os.environ, "GIT_AUTHOR_NAME": "Ops", "GIT_AUTHOR_EMAIL": "ops@example.org",
                    "GIT_COMMITTER_NAME": "Ops", "GIT_COMMITTER_EMAIL": "ops@example.org",
                    "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}
        if gnupg_home:
            self.env["GNUPGHOME"] = str(gnupg_home)
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "--quiet", "--initial-branch=main")

    def git(self, *args: str) -> str:
        done = subprocess.run(["git", *args], cwd=self.path, env=self.env, capture_output=True,
                              text=True, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def commit(self, files: dict[str, str], message: str, *, sign_with: str | None = None) -> str:
        for name, text in files.items():
            (self.path / name).parent.mkdir(parents=True, exist_ok=True)
            (self.path / name).write_text(text)
            self.git("add", name)
        sign = ["-c", f"user.signingkey={sign_with}", "commit", "-S"] if sign_with else ["commit"]
        self.git(*sign, "--quiet", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")
