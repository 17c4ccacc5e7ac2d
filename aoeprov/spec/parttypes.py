"""Partition type ids: dos hex ids and GPT type GUIDs (with a few aliases)."""

from __future__ import annotations

import re

DOS_LINUX = "83"
GPT_LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"

GPT_ALIASES = {
    "linux": GPT_LINUX,
    "swap": "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",
    "lvm": "E6D6D379-F507-44C2-A23C-238F2A3DF928",
    "raid": "A19D880F-05FC-4D3B-A006-743F0F84911E",
    "efi": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
    "home": "933AC7E1-2EB4-4F13-B844-0E14E2AEF915",
}

_GUID_RE = re.compile(r"^[0-9A-Fa-f]{8}-([0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}$")
_DOS_RE = re.compile(r"^(0x)?[0-9A-Fa-f]{1,2}$")


_GPT_NAMES = {guid: alias for alias, guid in GPT_ALIASES.items()}


def type_name(type_id: str) -> str:
    """A type as people know it: ``linux`` or ``swap`` for a known GPT GUID, dos ids as they
    are ("83"); an unknown GUID stays a GUID (nothing better to say)."""
    return _GPT_NAMES.get(type_id.upper(), type_id)


def default_type(table: str) -> str:
    return DOS_LINUX if table == "dos" else GPT_LINUX


def normalize_type(value: str, table: str) -> str:
    """The canonical id: dos lower-case hex without 0x ("83"), gpt upper-case GUID.

    Raises ``ValueError`` with the reason when ``value`` is not a type for ``table``.
    """
    text = value.strip()
    if table == "dos":
        if not _DOS_RE.match(text) or int(text, 16) == 0:
            raise ValueError(f"dos partition type {value!r} is not a hex id between 01 and ff "
                             "(such as 83 for Linux, 8e for LVM)")
        return f"{int(text, 16):x}"
    if text.lower() in GPT_ALIASES:
        return GPT_ALIASES[text.lower()]
    if not _GUID_RE.match(text):
        raise ValueError(f"gpt partition type {value!r} is neither a type GUID nor one of "
                         f"{', '.join(GPT_ALIASES)}")
    return text.upper()
