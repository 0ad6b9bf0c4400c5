"""Text from users and servers, made safe for a terminal."""

from __future__ import annotations

import unicodedata


def plain(text: object, *, keep_newlines: bool = False) -> str:
    """Control and format characters (escapes, bidi overrides) shown as \\xNN / \\uNNNN
    instead of acting on the terminal."""
    out = []
    for ch in str(text):
        if unicodedata.category(ch) in ("Cc", "Cf") and ch != "\t" and not (keep_newlines and ch == "\n"):
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)
