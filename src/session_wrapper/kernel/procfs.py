"""Reads what a held exec asks for: its path and argv from /proc/PID/mem, its file from /proc.

proc(5) and seccomp_unotify(2) govern every read here. The pid in a notification may be reused
once its task dies, so each read from the target's memory is followed by an ID_VALID check: a
value read from a task that is no longer the one that made the call is never trusted.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# include/uapi/linux/binfmts.h: what the kernel reads of a file to pick its binary format.
BINPRM_BUF_SIZE = 256
PATH_MAX = 4096
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_EMPTY_PATH = 0x1000


class TargetGone(Exception):
    """The notification is no longer valid: the task died or its syscall was interrupted."""


class Unreadable(Exception):
    """The request cannot be read completely; it must be denied, not guessed."""

    def __init__(self, code: int, reason: str, path: bytes = b"") -> None:
        super().__init__(reason)
        self.errno = code
        self.reason = reason
        # The file the exec named, when it is known and worth showing.
        self.path = path


@dataclass(frozen=True)
class ExecFile:
    """The file an exec would run, as the supervisor resolved it."""

    path: bytes
    device: int
    inode: int
    # The file's first BINPRM_BUF_SIZE bytes: the kernel picks the binary format from them.
    head: bytes = b""


class TargetMemory:
    """/proc/PID/mem of a held task, with an ID_VALID check after the open and every read."""

    def __init__(self, pid: int, still_valid: Callable[[], bool]) -> None:
        self._still_valid = still_valid
        try:
            self._fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as error:
            raise TargetGone(str(error)) from error
        except OSError as error:
            raise Unreadable(
                errno.EACCES, f"cannot open the memory of pid {pid}: {error}"
            ) from error
        # seccomp_unotify(2): the pid may have been reused between RECV and open.
        self._check()

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> TargetMemory:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _check(self) -> None:
        if not self._still_valid():
            raise TargetGone("notification no longer valid")

    def _pread(self, size: int, address: int) -> bytes:
        try:
            chunk = os.pread(self._fd, size, address)
        except (OSError, OverflowError) as error:
            self._check()
            raise Unreadable(errno.EFAULT, f"bad address {address:#x}") from error
        self._check()
        return chunk

    def read_cstring(self, address: int, limit: int) -> bytes:
        """Reads a NUL-terminated string of at most ``limit`` bytes (more means truncated).

        Reads stop at page boundaries, so a string that ends just before an unmapped page is
        still read in full.
        """
        if address == 0:
            raise Unreadable(errno.EFAULT, "null pointer")
        out = bytearray()
        while len(out) <= limit:
            size = PAGE_SIZE - (address % PAGE_SIZE)
            chunk = self._pread(size, address)
            if not chunk:
                raise Unreadable(errno.EFAULT, f"bad address {address:#x}")
            end = chunk.find(b"\0")
            if end >= 0:
                out += chunk[:end]
                return bytes(out[: limit + 1])
            out += chunk
            address += len(chunk)
        return bytes(out[: limit + 1])

    def read_pointers(self, address: int, limit: int) -> list[int]:
        """Reads a NULL-terminated array of pointers, at most ``limit`` of them."""
        pointers: list[int] = []
        while len(pointers) < limit:
            size = min(PAGE_SIZE - (address % PAGE_SIZE), 8 * (limit - len(pointers)))
            chunk = self._pread(size, address)
            if len(chunk) < 8:
                raise Unreadable(errno.EFAULT, f"bad argv address {address:#x}")
            for offset in range(0, len(chunk) - len(chunk) % 8, 8):
                pointer = int.from_bytes(chunk[offset : offset + 8], "little")
                if pointer == 0:
                    return pointers
                pointers.append(pointer)
            address += len(chunk)
        return pointers

    def read_argv(self, address: int, max_count: int, max_length: int) -> tuple[bytes, ...]:
        """Reads argv. Beyond ``max_count`` entries or ``max_length`` bytes an entry or the list
        is cut one past the limit, so a caller that enforces the limits still sees it exceeded.
        """
        if address == 0:
            return ()
        return tuple(
            self.read_cstring(pointer, max_length)
            for pointer in self.read_pointers(address, max_count + 1)
        )


def _open_base(pid: int, raw_path: bytes, dirfd: int) -> int | None:
    """The directory a relative path starts from: the target's cwd or its dirfd (proc(5))."""
    if raw_path.startswith(b"/"):
        return None
    base = f"/proc/{pid}/cwd" if dirfd == AT_FDCWD else f"/proc/{pid}/fd/{dirfd}"
    try:
        return os.open(base, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError as error:
        # A missing /proc/PID/fd/N means a bad dirfd; a missing /proc/PID means the task died,
        # which the caller's ID_VALID check tells apart.
        raise Unreadable(errno.EBADF, f"bad dirfd {dirfd}") from error


def resolve_exec_file(pid: int, raw_path: bytes, dirfd: int, at_flags: int) -> ExecFile:
    """Opens the file the exec names, the way the kernel would, and returns its canonical path.

    Symlinks are followed from the target's cwd or dirfd. The session cannot chroot, pivot_root
    or enter a new mount namespace (the filter refuses those), so its root is the supervisor's
    root and the resolved path means the same thing in both. Raises OSError with the errno the
    exec itself would get (ENOENT, ENOTDIR, ELOOP, EACCES) and Unreadable for a file that has no
    stable name.
    """
    opened, info = _open_exec_file(pid, raw_path, dirfd, at_flags)
    try:
        path = os.readlink(f"/proc/self/fd/{opened}".encode())
        _require_stable_name(path, info)
        head = _read_head(opened, path)
    finally:
        os.close(opened)
    return ExecFile(path, info.st_dev, info.st_ino, head)


def reopen_exec_file(
    pid: int, raw_path: bytes, dirfd: int, at_flags: int, before: ExecFile
) -> ExecFile | None:
    """Resolves the exec's path again: the same file (its first bytes read afresh), or None
    when the path now leads to another file.

    Cheaper than resolve_exec_file: a path that still leads to the same inode needs no new
    canonical name, and that inode's name was already found stable.
    """
    opened, info = _open_exec_file(pid, raw_path, dirfd, at_flags)
    try:
        if (info.st_dev, info.st_ino) != (before.device, before.inode):
            return None
        head = _read_head(opened, before.path)
    finally:
        os.close(opened)
    return ExecFile(before.path, before.device, before.inode, head)


def _open_exec_file(
    pid: int, raw_path: bytes, dirfd: int, at_flags: int
) -> tuple[int, os.stat_result]:
    """An O_PATH fd of the regular file the exec names, and its stat; the caller closes it."""
    if at_flags & AT_EMPTY_PATH and raw_path == b"":
        # fexecve(3): the file is the dirfd itself, whatever it was opened from.
        opened = os.open(f"/proc/{pid}/fd/{dirfd}", os.O_PATH | os.O_CLOEXEC)
    else:
        base = _open_base(pid, raw_path, dirfd)
        nofollow = os.O_NOFOLLOW if at_flags & AT_SYMLINK_NOFOLLOW else 0
        try:
            opened = os.open(raw_path, os.O_PATH | os.O_CLOEXEC | nofollow, dir_fd=base)
        finally:
            if base is not None:
                os.close(base)
    try:
        info = os.fstat(opened)
        if stat.S_ISLNK(info.st_mode):
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EACCES, os.strerror(errno.EACCES))
    except BaseException:
        os.close(opened)
        raise
    return opened, info


def _read_head(opened: int, path: bytes) -> bytes:
    """The first bytes of the very inode resolved, reopened through /proc/self/fd (proc(5)).

    An exec-only file the supervisor cannot read is refused: its #! line, and so the program the
    kernel would really run, cannot be known.
    """
    try:
        fd = os.open(f"/proc/self/fd/{opened}", os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as error:
        raise Unreadable(
            errno.EACCES,
            f"cannot read its first line to look for #!: {error.strerror}",
            path,
        ) from error
    try:
        return os.pread(fd, BINPRM_BUF_SIZE, 0)
    finally:
        os.close(fd)


def _require_stable_name(path: bytes, info: os.stat_result) -> None:
    """Refuses memfds, deleted files and anything else whose name does not lead back to it."""
    if path.startswith(b"/memfd:"):
        kind = "an anonymous memory file (memfd) has no path on a filesystem"
    elif path.endswith(b" (deleted)"):
        kind = "the file was deleted"
    else:
        kind = "its name does not lead back to the file"
    unnamed = Unreadable(
        errno.EACCES, f"not a file with a stable path, refused outright: {kind}", path
    )
    if not path.startswith(b"/"):
        raise unnamed
    try:
        again = os.stat(path)
    except OSError:
        raise unnamed from None
    if (again.st_dev, again.st_ino) != (info.st_dev, info.st_ino):
        raise unnamed


def exe_identity(pid: int) -> tuple[int, int] | None:
    """Device and inode of /proc/PID/exe, or None when the task is gone (proc(5))."""
    try:
        info = os.stat(f"/proc/{pid}/exe")
    except OSError:
        return None
    return info.st_dev, info.st_ino


def canonical_paths(paths: frozenset[bytes]) -> frozenset[bytes]:
    """Each path with its symlinks resolved, as held execs are (``/bin/bash`` is
    ``/usr/bin/bash`` on a merged-/usr system). A path that does not exist is kept as given."""
    return frozenset(os.path.realpath(path) for path in paths)
