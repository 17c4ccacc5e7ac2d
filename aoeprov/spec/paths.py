"""Field paths: the tuple form used in code and the text form shown to people.

``("exports", 0, "shelf")`` prints as ``exports[0].shelf``; the whole document
is the empty tuple.
"""

from __future__ import annotations

from collections.abc import Iterable

Path = tuple[str | int, ...]


def format_path(path: Iterable[str | int]) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text
