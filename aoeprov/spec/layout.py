"""Partition layout arithmetic, the way sfdisk lays out what aoeprov asks of it.

One place for the rules the spec checks (does it fit the export?) and the
partition resource (which sectors will the new partitions take?) both apply.
Measured with util-linux 2.38 sfdisk on image files (tests/unit/spec/test_layout.py
runs the real sfdisk against these rules):

- partitions start at 1 MiB and every explicit size is rounded up to whole MiB;
- gpt keeps its backup header and entries in the last 33 sectors: the last usable
  sector is ``total - 34``, so a partition may end right before ``total - 33``;
- a partition that takes the rest ends, on gpt, at the last usable sector rounded
  down to the MiB grain; on dos at the very end of the disk, unaligned;
- a rest partition needs at least one MiB.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

SECTOR = 512
ALIGN_BYTES = 1 << 20            # sfdisk's default grain: 1 MiB
GPT_TAIL_SECTORS = 33            # backup GPT: 32 sectors of entries + its header


class DoesNotFit(ValueError):
    """Partition ``index`` (0-based) would end at sector ``needs`` (exclusive): past the end."""

    def __init__(self, index: int, needs: int) -> None:
        super().__init__(f"partition at index {index} needs {needs} sectors")
        self.index = index
        self.needs = needs


@dataclass(frozen=True)
class Placement:
    start: int   # sectors
    size: int    # sectors


@dataclass(frozen=True)
class Geometry:
    """A disk of ``total`` sectors (0: size unknown, nothing is checked) with a ``label`` table."""

    total: int
    label: str                 # "dos" or "gpt"
    sector_size: int = SECTOR

    @property
    def align(self) -> int:
        """The grain in sectors; also where the first partition starts."""
        return max(1, ALIGN_BYTES // self.sector_size)

    @property
    def end(self) -> int:
        """First sector after the usable area (exclusive end for any partition)."""
        return self.total - GPT_TAIL_SECTORS if self.label == "gpt" else self.total

    @property
    def rest_end(self) -> int:
        """Where a partition taking the rest of the disk ends (exclusive)."""
        if self.label == "gpt":
            return (self.end - 1) // self.align * self.align   # last usable sector, aligned down
        return self.total

    def sectors(self, nbytes: int) -> int:
        """Bytes to sectors, rounded up to the grain."""
        return math.ceil(math.ceil(nbytes / self.sector_size) / self.align) * self.align

    def align_up(self, sector: int) -> int:
        return math.ceil(sector / self.align) * self.align

    def place(self, first: int, sizes: Sequence[int | None]) -> list[Placement]:
        """Partitions of ``sizes`` bytes (None: the rest, last only) one after another from
        sector ``first``. Raises ``DoesNotFit`` for the first one past the end (when the disk
        size is known) and ValueError for a rest partition that is not the last."""
        cursor, out = first, []
        for i, nbytes in enumerate(sizes):
            if nbytes is None:
                if i != len(sizes) - 1:
                    raise ValueError("only the last partition may fill the rest of the disk")
                size = self.rest_end - cursor if self.total else 0
                if self.total and size < self.align:
                    raise DoesNotFit(i, cursor + self.align)
            else:
                size = self.sectors(nbytes)
                if self.total and cursor + size > self.end:
                    raise DoesNotFit(i, cursor + size)
            out.append(Placement(cursor, size))
            cursor += size
        return out
