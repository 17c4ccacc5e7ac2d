"""The lab's guest kernel: Debian's stock generic kernel package, fetched once and cached.

``apt-get download`` checks the package against the signed archive index; we also
record its SHA-256 and version in ``kernel.json`` so a run says exactly which
kernel it booted. The package is unpacked with ``dpkg -x`` and indexed with
``depmod -b`` so guests can ``modprobe`` from its module tree (shared over 9p).

``python -m aoeprov.lab.kernel [--cache DIR]`` fetches it (``make kernel``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from aoeprov.errors import AoeprovError, LabError
from aoeprov.runner import Runner, ShRunner

LOG = logging.getLogger(__name__)

# The Debian meta package that always depends on the current generic kernel image.
META_PACKAGE = "linux-image-amd64"
RECORD = "kernel.json"


@dataclass(frozen=True)
class Kernel:
    """An unpacked kernel package: the image to boot and the module tree to share."""

    package: str
    version: str
    release: str          # `uname -r` in the guest, e.g. 6.1.0-56-amd64
    sha256: str
    root: Path            # where the package was unpacked

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    @property
    def modules_dir(self) -> Path:
        return self.root / "lib" / "modules" / self.release


def default_cache_dir() -> Path:
    """``$AOEPROV_CACHE`` or the checkout's ``.cache`` (the guest runs this very checkout)."""
    import os

    env = os.environ.get("AOEPROV_CACHE")
    return Path(env) if env else Path(__file__).resolve().parents[2] / ".cache"


def parse_image_dependency(depends_output: str) -> str:
    """The versioned kernel package named by ``apt-cache depends linux-image-amd64``."""
    for line in depends_output.splitlines():
        m = re.match(r"\s*Depends:\s*(linux-image-[0-9][\w.+-]*-amd64)\s*$", line)
        if m:
            return m.group(1)
    raise LabError(f"kernel fetch: no linux-image dependency in `apt-cache depends {META_PACKAGE}`")


def parse_modules_dep(text: str) -> dict[str, tuple[str, ...]]:
    """``modules.dep`` as module name -> (path, dependency names...); the path comes first."""
    deps: dict[str, tuple[str, ...]] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        path, rest = line.split(":", 1)
        deps[module_name(path)] = (path, *(module_name(p) for p in rest.split()))
    return deps


def module_name(path: str) -> str:
    """kernel/net/9p/9pnet_virtio.ko -> 9pnet_virtio (the kernel treats - and _ as one)."""
    return Path(path).name.split(".ko")[0].replace("-", "_")


def load_order(wanted: Iterable[str], modules_dep: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Every module needed for ``wanted``, dependencies first, each once (for insmod)."""
    order: list[str] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        key = name.replace("-", "_")
        if key in order:
            return
        if key in chain:
            raise LabError(f"module dependency cycle: {' -> '.join((*chain, key))}")
        if key not in modules_dep:
            raise LabError(f"kernel module {name} is not in the kernel package")
        for dep in modules_dep[key][1:]:
            visit(dep, (*chain, key))
        order.append(key)

    for name in wanted:
        visit(name, ())
    return order


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cached_kernel(cache_dir: Path) -> Kernel | None:
    record = cache_dir / "lab" / "kernel" / RECORD
    if not record.exists():
        return None
    data = json.loads(record.read_text())
    kernel = Kernel(**{**data, "root": Path(data["root"])})
    return kernel if kernel.vmlinuz.exists() and kernel.modules_dir.is_dir() else None


def fetch_kernel(cache_dir: Path, runner: Runner | None = None) -> Kernel:
    """The cached kernel, downloading and unpacking it the first time."""
    found = cached_kernel(cache_dir)
    if found is not None:
        return found
    runner = runner or ShRunner()
    kdir = cache_dir / "lab" / "kernel"
    kdir.mkdir(parents=True, exist_ok=True)
    package = parse_image_dependency(runner.run(("apt-cache", "depends", META_PACKAGE)).stdout)
    debs = sorted(kdir.glob(f"{package}_*.deb"))
    if not debs:
        LOG.info("downloading %s", package)
        # apt-get download writes into the working directory; run it from the cache dir.
        runner.run(("sh", "-c", 'cd "$1" && exec apt-get download -q "$2"', "sh", str(kdir),
                    package), timeout=900)
        debs = sorted(kdir.glob(f"{package}_*.deb"))
    if not debs:
        raise LabError(f"kernel fetch: apt-get download {package} left no .deb in {kdir}")
    deb = debs[-1]
    version = runner.run(("dpkg-deb", "--field", str(deb), "Version")).stdout.strip()
    root = kdir / "root"
    runner.run(("dpkg-deb", "-x", str(deb), str(root)), timeout=600)
    release = package.removeprefix("linux-image-")
    runner.run(("depmod", "-b", str(root), release), timeout=300)
    kernel = Kernel(package=package, version=version, release=release, sha256=_sha256(deb),
                    root=root)
    if not kernel.vmlinuz.exists():
        raise LabError(f"kernel fetch: {kernel.vmlinuz} missing after unpacking {deb.name}")
    record = {**asdict(kernel), "root": str(root)}
    (kdir / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return kernel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aoeprov.lab.kernel",
                                     description="fetch and cache the lab's guest kernel")
    parser.add_argument("--cache", type=Path, default=default_cache_dir())
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(message)s")
    logging.getLogger("sh").setLevel(logging.WARNING)  # sh logs every process start at INFO
    try:
        kernel = fetch_kernel(args.cache)
    except (AoeprovError, OSError) as exc:
        print(f"aoeprov lab kernel: {exc}", file=sys.stderr)
        return 1
    print(f"lab kernel {kernel.package} {kernel.version} sha256 {kernel.sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
