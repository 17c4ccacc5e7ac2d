"""The layout rules of aoeprov.spec.layout against the real sfdisk, on image files.

Both the spec checks and the partition resource take their arithmetic from
``Geometry``; these tests hold it to what sfdisk (util-linux) actually does.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from aoeprov.spec.layout import GPT_TAIL_SECTORS, DoesNotFit, Geometry
from tests.conftest import require_tools

pytestmark = pytest.mark.tools   # runs real programs (see tests/conftest.py)

MIB_SECTORS = 2048
# around the grain: aligned, one over, the gpt tail edges (total - 33, total - 34), larger disks
TOTALS = (10240 + 33, 10240 + 34, 12288, 131072 + 33, 200000)


def sfdisk(image: Path, total: int, script: str) -> subprocess.CompletedProcess[str]:
    image.unlink(missing_ok=True)
    with image.open("wb") as fh:
        fh.truncate(total * 512)
    return subprocess.run(["sfdisk", "--quiet", str(image)], input=script, text=True,
                          capture_output=True, check=False)


def first_partition(image: Path) -> dict[str, int]:
    out = subprocess.run(["sfdisk", "--json", str(image)], capture_output=True, text=True,
                         check=True).stdout
    part = json.loads(out)["partitiontable"]["partitions"][0]
    return {"start": int(part["start"]), "size": int(part["size"])}


@pytest.fixture
def image(tmp_path: Path) -> Path:
    require_tools("sfdisk")
    return tmp_path / "disk.img"


@pytest.mark.parametrize("label", ["gpt", "dos"])
@pytest.mark.parametrize("total", TOTALS)
def test_a_partition_may_end_exactly_at_the_usable_end(image: Path, label: str,
                                                       total: int) -> None:
    geometry = Geometry(total, label)
    start = geometry.align
    last_fit = geometry.end - start
    done = sfdisk(image, total, f"label: {label}\nstart={start}, size={last_fit}, type=L\n")
    assert done.returncode == 0, done.stderr
    assert first_partition(image) == {"start": start, "size": last_fit}
    refused = sfdisk(image, total, f"label: {label}\nstart={start}, size={last_fit + 1}, "
                                   "type=L\n")
    assert refused.returncode != 0


@pytest.mark.parametrize("label", ["gpt", "dos"])
@pytest.mark.parametrize("total", TOTALS)
def test_the_rest_ends_where_sfdisk_ends_it(image: Path, label: str, total: int) -> None:
    geometry = Geometry(total, label)
    (placed,) = geometry.place(geometry.align, [None])
    done = sfdisk(image, total, f"label: {label}\nstart={geometry.align}, type=L\n")
    assert done.returncode == 0, done.stderr
    assert first_partition(image) == {"start": placed.start, "size": placed.size}


def test_the_gpt_tail_is_33_sectors(image: Path) -> None:
    """1 MiB + a 4 MiB partition fits a disk of exactly 10240 + 33 sectors, not one less."""
    assert GPT_TAIL_SECTORS == 33
    four_mib = 4 * MIB_SECTORS * 512
    fits = Geometry(10240 + 33, "gpt")
    assert fits.place(fits.align, [four_mib])[0].size == 4 * MIB_SECTORS
    assert sfdisk(image, 10240 + 33, "label: gpt\nstart=2048, size=8192\n").returncode == 0
    short = Geometry(10240 + 32, "gpt")
    with pytest.raises(DoesNotFit) as caught:
        short.place(short.align, [four_mib])
    assert caught.value.needs == 10240
    assert sfdisk(image, 10240 + 32, "label: gpt\nstart=2048, size=8192\n").returncode != 0
