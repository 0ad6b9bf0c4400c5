"""Word-level differences between two texts, for comparing prompts."""

from __future__ import annotations

import difflib
import re
from typing import Literal

Op = Literal["same", "removed", "added"]
_TOKEN = re.compile(r"\s+|[^\s]+")


def word_diff(old: str, new: str) -> list[tuple[Op, str]]:
    """Pieces of text tagged same / removed (only in `old`) / added (only in `new`)."""
    a, b = _TOKEN.findall(old), _TOKEN.findall(new)
    out: list[tuple[Op, str]] = []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            out.append(("same", "".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(("removed", "".join(a[i1:i2])))
        if j2 > j1:
            out.append(("added", "".join(b[j1:j2])))
    return out


def param_differences(left: dict, right: dict) -> list[tuple[str, object, object]]:
    """(field, left value, right value) for every field that differs."""
    keys = sorted(set(left) | set(right))
    return [(k, left.get(k), right.get(k)) for k in keys if left.get(k) != right.get(k)]
