"""Block device fact parsers, from output captured on this machine (util-linux 2.38.1)."""

from __future__ import annotations

import os
from pathlib import Path

from aoeprov.reconciler.state import PartitionState
from aoeprov.resources._blockdev import (
    LoopInfo,
    loop_link_valid,
    parse_blkid_export,
    parse_losetup_json,
    parse_sfdisk_json,
    parse_wipefs_json,
    probe_from_outputs,
)

SFDISK_DOS = """{
   "partitiontable": {
      "label": "dos",
      "id": "0xfecd5462",
      "device": "d.img",
      "unit": "sectors",
      "sectorsize": 512,
      "partitions": [
         {
            "node": "d.img1",
            "start": 2048,
            "size": 129024,
            "type": "83"
         }
      ]
   }
}
"""

SFDISK_GPT = """{
   "partitiontable": {
      "label": "gpt",
      "id": "1A34EBF0-3DBB-FE43-8B73-F49BAA08E58B",
      "device": "g.img",
      "unit": "sectors",
      "firstlba": 2048,
      "lastlba": 131038,
      "sectorsize": 512,
      "partitions": [
         {
            "node": "g.img1",
            "start": 2048,
            "size": 20480,
            "type": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
            "uuid": "2F64565A-E501-7F46-94BF-B3D141328E9B",
            "name": "data"
         },{
            "node": "g.img2",
            "start": 22528,
            "size": 106496,
            "type": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
            "uuid": "5612C663-9E58-5F47-A8F4-BBB5008BF637",
            "name": "logs"
         }
      ]
   }
}
"""

BLKID_EXT3 = """DEVNAME=/dev/loop0
LABEL=store
UUID=68f1a6d5-51d3-46c6-883b-603d11de673f
SEC_TYPE=ext2
VERSION=1.0
BLOCK_SIZE=1024
TYPE=ext3
USAGE=filesystem
"""

# mkfs.ext4 on the whole image, then a dos table written over it: both signatures remain
BLKID_EXT4_AND_DOS = """DEVNAME=w.img
UUID=85fa6bc0-1bec-467a-826c-d285ff87edb6
VERSION=1.0
BLOCK_SIZE=1024
TYPE=ext4
USAGE=filesystem
PTUUID=61838519
PTTYPE=dos
"""
WIPEFS_EXT4_AND_DOS = """{
   "signatures": [
      {
         "device": "w.img",
         "offset": "0x438",
         "type": "ext4",
         "uuid": "85fa6bc0-1bec-467a-826c-d285ff87edb6",
         "label": null
      },{
         "device": "w.img",
         "offset": "0x1fe",
         "type": "dos",
         "uuid": null,
         "label": null
      }
   ]
}
"""
WIPEFS_GPT = """{
   "signatures": [
      {"device": "g.img", "offset": "0x200", "type": "gpt", "uuid": null, "label": null},
      {"device": "g.img", "offset": "0x3fffe00", "type": "gpt", "uuid": null, "label": null},
      {"device": "g.img", "offset": "0x1fe", "type": "PMBR", "uuid": null, "label": null}
   ]
}
"""
WIPEFS_EMPTY = '{\n   "signatures": [\n\n   ]\n}\n'
LOSETUP = """{
   "loopdevices": [
      {
         "name": "/dev/loop0",
         "back-file": "/tmp/e/d.img",
         "offset": 1048576,
         "sizelimit": 66060288
      },{
         "name": "/dev/loop1",
         "back-file": "/tmp/e/gone.img (deleted)",
         "offset": 0,
         "sizelimit": 0
      }
   ]
}
"""


def test_sfdisk_dos() -> None:
    table = parse_sfdisk_json(SFDISK_DOS)
    assert table.label == "dos"
    assert table.sector_size == 512
    assert table.partitions == (PartitionState(1, 2048, 129024, "83"),)


def test_sfdisk_gpt_names_and_upper_case_types() -> None:
    table = parse_sfdisk_json(SFDISK_GPT)
    assert [(p.number, p.name, p.size) for p in table.partitions] == [
        (1, "data", 20480), (2, "logs", 106496)]
    assert table.partitions[0].type == "0FC63DAF-8483-4772-8E79-3D69D8477DE4"


def test_blkid_export() -> None:
    tags = parse_blkid_export(BLKID_EXT3)
    assert tags["TYPE"] == "ext3" and tags["LABEL"] == "store"


def test_wipefs_lists_every_signature_once() -> None:
    assert parse_wipefs_json(WIPEFS_GPT) == ("gpt", "PMBR")
    assert parse_wipefs_json(WIPEFS_EMPTY) == ()


def test_probe_combines_both_tools() -> None:
    probe = probe_from_outputs(0, BLKID_EXT4_AND_DOS, WIPEFS_EXT4_AND_DOS)
    assert probe.signatures == ("ext4", "dos")
    assert probe.fstype == "ext4" and not probe.failed


def test_probe_nothing_found_is_blank() -> None:
    probe = probe_from_outputs(2, "", WIPEFS_EMPTY)
    assert probe.signatures == () and not probe.failed


def test_failed_probe_is_not_empty() -> None:
    assert probe_from_outputs(4, "", WIPEFS_EMPTY).failed          # blkid: usage/ambivalent
    assert probe_from_outputs(0, BLKID_EXT3, None).failed          # wipefs failed
    assert probe_from_outputs(0, BLKID_EXT3, "not json").failed


def test_losetup_json() -> None:
    loops = parse_losetup_json(LOSETUP)
    assert loops[0] == LoopInfo("/dev/loop0", "/tmp/e/d.img", 1048576, 66060288)
    assert loops[1].back_file == "/tmp/e/gone.img"
    assert parse_losetup_json("") == ()


def test_loop_link_counts_only_when_losetup_confirms(tmp_path: Path) -> None:
    image = tmp_path / "d.img"
    image.write_bytes(b"")
    link = tmp_path / "e0.1p1"
    os.symlink("/dev/loop0", link)
    loops = (LoopInfo("/dev/loop0", str(image), 1048576, 66060288),)
    assert loop_link_valid(str(link), str(image), 1048576, 66060288, loops)
    assert not loop_link_valid(str(link), str(image), 2097152, 66060288, loops)  # other offset
    assert not loop_link_valid(str(link), str(tmp_path / "other.img"), 1048576, 66060288, loops)
    assert not loop_link_valid(str(tmp_path / "missing"), str(image), 1048576, 66060288, loops)
