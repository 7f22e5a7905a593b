"""Makes untrusted text (paths, argv, server messages) safe to show on one line.

The session controls paths and argv, and a TACACS+ server controls its messages; either could
hold newlines or terminal escape sequences that forge output on the user's terminal or split an
audit line in two. Everything shown or logged passes through here.
"""

from __future__ import annotations

from session_wrapper.decision import escape_arg

MAX_LINE = 1024


def printable(text: str) -> str:
    r"""Replaces C0 and C1 control characters and DEL with ``\xHH`` escapes."""
    return "".join(
        f"\\x{ord(c):02x}" if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F else c for c in text
    )


def printable_bytes(raw: bytes) -> str:
    """Path or argv bytes, escaped as the agent sees them, then made printable."""
    return printable(escape_arg(raw))


def one_line(text: str, limit: int = MAX_LINE) -> str:
    """A printable line of at most ``limit`` characters, marked where it was cut."""
    line = printable(text)
    if len(line) <= limit:
        return line
    return line[: limit - 3] + "..."
