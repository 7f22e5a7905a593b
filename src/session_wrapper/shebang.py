"""The kernel's reading of a ``#!`` line, as pure functions over the bytes of a file's start.

A script's exec runs its interpreter without another execve, so the supervisor must authorize
the interpreter too, with the argv the kernel will build. This module says what the kernel
would do with the first BINPRM_BUF_SIZE bytes; reading the file and resolving the interpreter's
path are the kernel adapter's job.
"""

from __future__ import annotations

from dataclasses import dataclass

# include/uapi/linux/binfmts.h: the kernel reads this many bytes of a file to pick its format.
BINPRM_BUF_SIZE = 256

# fs/exec.c exec_binprm() stops with ELOOP past this many interpreter rewrites. Measured on
# Linux 6.18: a chain of five scripts runs, a sixth gets "Too many levels of symbolic links".
MAX_SCRIPT_DEPTH = 5


class BadShebang(ValueError):
    """A ``#!`` line the kernel refuses with ENOEXEC."""


@dataclass(frozen=True)
class Shebang:
    """The interpreter named by a ``#!`` line and its optional single argument."""

    interpreter: bytes
    argument: bytes | None


def _spacetab(byte: int) -> bool:
    return byte in (0x20, 0x09)


def _next_non_spacetab(buf: bytes, first: int, last: int) -> int | None:
    for index in range(first, last + 1):
        if not _spacetab(buf[index]):
            return index
    return None


def _next_terminator(buf: bytes, first: int, last: int) -> int | None:
    for index in range(first, last + 1):
        if _spacetab(buf[index]) or buf[index] == 0:
            return index
    return None


def _until_nul(buf: bytes, start: int, end: int) -> bytes:
    """buf[start:end], cut at the first NUL: the kernel copies these as C strings."""
    chunk = buf[start:end]
    nul = chunk.find(b"\0")
    return chunk if nul < 0 else chunk[:nul]


def parse_shebang(head: bytes) -> Shebang | None:
    """What fs/binfmt_script.c load_script() makes of a file that starts with ``head``.

    None when the file does not start with ``#!`` (another binary format handles it). Raises
    BadShebang where the kernel answers ENOEXEC: no interpreter name, or a name that may have
    been cut by the buffer's end. Like the kernel, only spaces and tabs separate words, a
    trailing ``\\r`` stays part of the line, and everything after the name is one argument.
    """
    if not head.startswith(b"#!"):
        return None
    # The kernel's buffer is zero-filled beyond the end of a short file.
    buf = head[:BINPRM_BUF_SIZE].ljust(BINPRM_BUF_SIZE, b"\0")
    buf_end = BINPRM_BUF_SIZE - 1

    # strnchr() stops at a NUL as well as at the newline it looks for.
    newline = buf.find(b"\n")
    nul = buf.find(b"\0")
    if newline >= 0 and (nul < 0 or newline < nul):
        i_end = newline
    else:
        first = _next_non_spacetab(buf, 2, buf_end)
        if first is None:
            raise BadShebang("the #! line holds only blanks")
        if _next_terminator(buf, first, buf_end) is None:
            raise BadShebang("the interpreter's name does not fit in the first line")
        i_end = buf_end
    while _spacetab(buf[i_end - 1]):
        i_end -= 1

    i_name = _next_non_spacetab(buf, 2, i_end)
    if i_name is None or i_name == i_end:
        raise BadShebang("the #! line names no interpreter")
    i_sep = _next_terminator(buf, i_name, i_end)
    i_arg = None
    if i_sep is not None and buf[i_sep] != 0:
        i_arg = _next_non_spacetab(buf, i_sep, i_end)

    if i_arg is None:
        shebang = Shebang(_until_nul(buf, i_name, i_end), None)
    else:
        assert i_sep is not None  # i_arg is only set after a separator was found
        shebang = Shebang(_until_nul(buf, i_name, i_sep), _until_nul(buf, i_arg, i_end))
    if not shebang.interpreter:
        # A NUL right after "#!": the kernel cannot open an empty name and fails the exec.
        raise BadShebang("the #! line names no interpreter")
    return shebang


def interpreter_argv(
    shebang: Shebang, script_name: bytes, argv: tuple[bytes, ...]
) -> tuple[bytes, ...]:
    """The argv the interpreter gets: its name, the optional argument, the script's name as the
    exec gave it, then the script's argv without argv[0] (binfmt_script.c, remove_arg_zero()).

    Since Linux 5.18 an exec with an empty argv gets one empty argv[0], which is then removed.
    """
    head: tuple[bytes, ...] = (shebang.interpreter,)
    if shebang.argument is not None:
        head += (shebang.argument,)
    return (*head, script_name, *argv[1:])
