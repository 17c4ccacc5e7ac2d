"""``aoeprov pull --require-signed``: real GPG keys in temporary keyrings, real git signatures."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from aoeprov.host import Host
from aoeprov.pull.agent import PullOptions, pull
from aoeprov.pull.git import signature_problem
from tests.conftest import require_tools
from tests.unit.pull.repo import IMAGE_SPEC, ConfigRepo

SPEC = "aoeprov.yaml"


def make_key(home: Path, uid: str) -> str:
    home.mkdir(mode=0o700)
    env = {"GNUPGHOME": str(home), "PATH": "/usr/bin:/bin"}
    subprocess.run(["gpg", "--batch", "--quiet", "--passphrase", "", "--quick-gen-key", uid,
                    "ed25519", "sign", "never"], env=env, check=True, capture_output=True)
    out = subprocess.run(["gpg", "--list-keys", "--with-colons"], env=env, check=True,
                         capture_output=True, text=True).stdout
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


@pytest.fixture
def keyrings(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    """(the signer's keyring, a stranger's, the host's trusted one); every gpg-agent they
    started is stopped afterwards."""
    require_tools("gpg", "gpgconf")
    homes = (tmp_path / "signer", tmp_path / "stranger", tmp_path / "trusted")
    try:
        yield homes
    finally:
        for home in homes:
            if home.exists():
                subprocess.run(["gpgconf", "--kill", "gpg-agent"], check=False,
                               env={"GNUPGHOME": str(home), "PATH": "/usr/bin:/bin"})


@pytest.mark.tools
def test_only_commits_signed_by_a_trusted_key_are_taken(
        tmp_path: Path, keyrings: tuple[Path, Path, Path]) -> None:
    signer_home, stranger_home, trusted = keyrings
    signer = make_key(signer_home, "Fleet Signer <signer@example.org>")
    stranger = make_key(stranger_home, "Stranger <stranger@example.org>")
    repo = ConfigRepo(tmp_path / "config", gnupg_home=signer_home)
    root = tmp_path / "root"
    root.mkdir()
    # the host's keyring holds the signer's public key only
    trusted.mkdir(mode=0o700)
    public = subprocess.run(["gpg", "--armor", "--export", signer], check=True,
                            capture_output=True, env={"GNUPGHOME": str(signer_home)}).stdout
    subprocess.run(["gpg", "--batch", "--quiet", "--import"], input=public, check=True,
                   capture_output=True, env={"GNUPGHOME": str(trusted)})
    opts = PullOptions(repo=str(repo.path), spec=SPEC, host_name="server2",
                       require_signed=True, gnupg_home=trusted)
    host = Host(root=root)

    unsigned = repo.commit({SPEC: IMAGE_SPEC}, "unsigned")
    rec = pull(host, opts)
    assert (rec.result, rec.good_commit) == ("refused", "")
    assert rec.last_error is not None and rec.last_error.commit == unsigned
    assert "the commit is not signed" in rec.last_error.message
    assert not (root / "etc").exists()

    repo.env["GNUPGHOME"] = str(stranger_home)
    by_stranger = repo.commit({SPEC: IMAGE_SPEC}, "signed by someone else", sign_with=stranger)
    rec = pull(host, opts)
    assert rec.result == "refused" and rec.last_error is not None
    assert rec.last_error.commit == by_stranger
    assert "which is not in the trusted keyring" in rec.last_error.message
    assert not (root / "etc").exists()

    repo.env["GNUPGHOME"] = str(signer_home)
    good = repo.commit({SPEC: IMAGE_SPEC}, "signed", sign_with=signer)
    rec = pull(host, opts)
    assert (rec.result, rec.applied_commit) == ("applied", good)

    # a signed commit altered afterwards: same signature, other content
    raw = repo.git("cat-file", "commit", good).replace("signed", "signed, then altered", 1)
    altered = subprocess.run(["git", "hash-object", "-t", "commit", "-w", "--stdin"],
                             input=raw + "\n", cwd=repo.path, env=repo.env, text=True,
                             check=True, capture_output=True).stdout.strip()
    repo.git("update-ref", "refs/heads/main", altered)
    rec = pull(host, opts)
    assert rec.result == "refused" and rec.last_error is not None
    assert rec.last_error.commit == altered
    assert "bad signature" in rec.last_error.message
    assert rec.applied_commit == good


@pytest.mark.parametrize(("status", "reason"), [
    ("", "the commit is not signed"),
    ("[GNUPG:] NEWSIG\n[GNUPG:] ERRSIG 1DF2 22 8 00 1 9 4C30\n[GNUPG:] NO_PUBKEY 1DF2\n",
     "signed by key 1DF2, which is not in the trusted keyring"),
    ("[GNUPG:] NEWSIG\n[GNUPG:] BADSIG 1DF2 Tester <t@e>\n",
     "bad signature (key 1DF2): the commit was altered after signing"),
    ("gpg: something else\n", "signature check failed: gpg: something else"),
])
def test_signature_problem(status: str, reason: str) -> None:
    assert signature_problem(status) == reason
