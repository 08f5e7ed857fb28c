"""Small, loud edits of a scratch copy: each fails if its target text is gone, so a
break test cannot silently stop breaking anything."""

from __future__ import annotations

from pathlib import Path


def replace(path: Path, old: str, new: str, *, count: int = 1) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def delete_block(path: Path, anchor: str, header: str) -> None:
    """Delete the first block starting with `header` (e.g. 'retry_policy {') after `anchor`."""
    text = path.read_text(encoding="utf-8")
    at = text.index(anchor)
    start = text.index(header, at)
    start = text.rfind("\n", 0, start) + 1
    depth, end = 0, text.index("{", start)
    while True:
        char = text[end]
        depth += char == "{"
        depth -= char == "}"
        end += 1
        if depth == 0:
            break
    path.write_text(text[:start] + text[end:].lstrip(" ").removeprefix("\n"), encoding="utf-8")


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")
