"""``make bench``: run every ``tests/bench/*_bench.py`` module's ``main()`` in turn.

Each ``main()`` takes no arguments (options come from its own command line when
run alone) and returns an exit status; it prints its own results.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def main() -> int:
    here = Path(__file__).resolve().parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.endswith("_bench"))
    failed = 0
    for name in names:
        module = importlib.import_module(f"tests.bench.{name}")
        print(f"== {name} ==", flush=True)
        started = time.monotonic()
        rc = module.main()
        print(f"== {name}: exit {rc} after {time.monotonic() - started:.1f}s ==\n", flush=True)
        failed += rc != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
