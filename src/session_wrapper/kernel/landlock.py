"""The session's Landlock layer: no writes under /proc but /proc/sys, and optional exec dirs.

Applied in the child after the seccomp filter and before the exec; the kernel then enforces it
on every process of the session, whatever the supervisor does. Landlock grants rights beneath
paths and can never take back a right granted higher up, so write access is granted beneath
each top-level directory except /proc, and beneath /proc/sys. This module holds the syscalls
and that rule set; whether to apply it is the launcher's call.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from dataclasses import dataclass

# Syscall numbers are the same on every architecture that has Landlock (asm-generic and x86).
_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446

# include/uapi/linux/landlock.h
LANDLOCK_CREATE_RULESET_VERSION = 1 << 0
LANDLOCK_RULE_PATH_BENEATH = 1
ACCESS_FS_EXECUTE = 1 << 0
ACCESS_FS_WRITE_FILE = 1 << 1
ACCESS_FS_REFER = 1 << 13  # ABI 2
ACCESS_FS_TRUNCATE = 1 << 14  # ABI 3

# ABI 1 refuses every rename or link across directories once a ruleset exists, and REFER
# cannot be granted before ABI 2; the layer would break `mv`, so it needs ABI 2.
MIN_ABI = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _RulesetAttr(ctypes.Structure):
    # struct landlock_ruleset_attr; handled_access_net (ABI 4) and scoped (ABI 6) stay 0 and
    # are left out: the kernel takes the size, so older kernels accept the short struct.
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    # struct landlock_path_beneath_attr is __attribute__((packed)): 12 bytes.
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


@dataclass(frozen=True)
class Applied:
    """What the layer did: the ABI used (0 if none) and why it was not applied."""

    abi: int
    exec_dirs: tuple[str, ...]
    skipped: str = ""


def _call(number: int, *args: object) -> int:
    result = int(_libc.syscall(number, *args))
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def abi_version() -> int:
    """landlock_create_ruleset(2) with LANDLOCK_CREATE_RULESET_VERSION; 0 when unsupported."""
    try:
        flags = ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION)
        return _call(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), flags)
    except OSError as error:
        # ENOSYS: not built in; EOPNOTSUPP: built in but not enabled at boot.
        if error.errno in (errno.ENOSYS, errno.EOPNOTSUPP):
            return 0
        raise


def write_roots(root: str = "/") -> tuple[str, ...]:
    """Where files may be written: each directory right under ``root`` except proc, plus
    /proc/sys. Landlock checks the file a /proc/self/fd link leads to, not the link, so the
    session's own fds stay writable through /dev/stdout and the like."""
    roots: list[str] = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        try:
            is_dir = stat.S_ISDIR(os.stat(path).st_mode)
        except OSError:  # a dangling symlink holds nothing to write to
            continue
        if name == "proc" or not is_dir:
            continue
        roots.append(path)
    roots.append("/proc/sys")
    return tuple(roots)


def _add_rule(ruleset: int, path: str, access: int) -> None:
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        rule = _PathBeneathAttr(access, fd)
        _call(
            _SYS_ADD_RULE,
            ctypes.c_int(ruleset),
            ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH),
            ctypes.byref(rule),
            ctypes.c_uint32(0),
        )
    finally:
        os.close(fd)


def apply(exec_dirs: tuple[str, ...]) -> Applied:
    """Restricts the calling thread and its future children; returns what was applied.

    landlock_restrict_self(2) needs no_new_privs or CAP_SYS_ADMIN: the user launch mode has set
    no_new_privs already, and the root launch mode calls this before dropping privileges.
    """
    abi = abi_version()
    if abi < MIN_ABI:
        reason = "Landlock is not available" if abi == 0 else f"Landlock ABI {abi} is too old"
        return Applied(0, (), f"{reason}; running without the Landlock layer")

    writing = ACCESS_FS_WRITE_FILE | ACCESS_FS_REFER | (ACCESS_FS_TRUNCATE if abi >= 3 else 0)
    handled = writing | (ACCESS_FS_EXECUTE if exec_dirs else 0)
    attr = _RulesetAttr(handled)
    ruleset = _call(
        _SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)), 0
    )
    try:
        for path in write_roots():
            _add_rule(ruleset, path, writing)
        for path in exec_dirs:
            _add_rule(ruleset, path, ACCESS_FS_EXECUTE)
        _call(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0))
    finally:
        os.close(ruleset)
    return Applied(abi, exec_dirs)
