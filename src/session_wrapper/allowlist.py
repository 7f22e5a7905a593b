"""The allowlist: paths that run without asking the agent.

Parsing only. Matching is done against a path that the kernel adapter has already resolved to its
canonical form; nothing here touches the filesystem.
"""

from __future__ import annotations

from collections.abc import Iterable

# Programs a login shell needs before the user types anything. They are always allowed.
BUILTIN_ENTRIES: frozenset[bytes] = frozenset(
    p.encode()
    for p in (
        "/bin/bash",
        "/bin/sh",
        "/usr/bin/env",
        "/usr/bin/id",
        "/usr/bin/groups",
        "/usr/bin/dash",
        "/bin/dash",
        "/bin/uname",
        "/usr/bin/uname",
        "/usr/bin/which",
        "/usr/bin/tty",
        "/bin/stty",
        "/usr/bin/stty",
    )
)


class AllowlistError(ValueError):
    """A line of an allowlist file that is not an absolute path."""


def parse_allowlist(lines: Iterable[bytes], source: str) -> frozenset[bytes]:
    """Parses allowlist text: one absolute path a line; comment lines and blank lines ignored.

    A comment is a line whose first non-blank character is ``#``; a ``#`` later in a line is
    part of the path. Paths are bytes because Linux paths are.
    """
    entries: set[bytes] = set()
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        if not line.startswith(b"/"):
            shown = line.decode("utf-8", "backslashreplace")
            raise AllowlistError(f"{source}:{number}: entry {shown!r} is not an absolute path")
        entries.add(line)
    return frozenset(entries)


def effective_allowlist(extra: frozenset[bytes]) -> frozenset[bytes]:
    """The built-in entries together with the operator's."""
    return BUILTIN_ENTRIES | extra
