"""Builds the session's seccomp filter with libseccomp and loads it with the raw syscall.

Used only in the child, between fork and exec. libseccomp (through pyseccomp) compiles the rules
to BPF; the BPF is loaded with seccomp(2) directly because libseccomp 2.5 cannot ask for
SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV.
"""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass

import pyseccomp as sc

# seccomp(2) operations and flags (include/uapi/linux/seccomp.h).
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 1 << 5
PR_SET_NO_NEW_PRIVS = 38

# clone(2) namespace flags. CLONE_NEWTIME (0x80) is left out: in clone() those bits are the
# exit signal, so the kernel accepts CLONE_NEWTIME only from clone3() and unshare(), both of
# which the filter refuses whole.
_CLONE_NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)

# Syscalls that would let the session tamper with the supervisor or hide from it: reading or
# writing other processes, stealing the listener fd, stalling the supervisor's reads through
# userfaultfd, and new namespaces or roots in which paths mean something other than what the
# supervisor resolves.
REFUSED_SYSCALLS = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "userfaultfd",
    "unshare",
    "setns",
    "chroot",
    "pivot_root",
    "mount",
    "umount2",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsmount",
    "fsconfig",
    "fspick",
    "mount_setattr",
)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _SockFprog(ctypes.Structure):
    # struct sock_fprog from linux/filter.h; ctypes adds the padding after len.
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


@dataclass(frozen=True)
class LoadedFilter:
    """The listener fd, and facts about the filter that the supervisor needs."""

    listener_fd: int
    execve_nr: int
    execveat_nr: int
    wait_killable_recv: bool


def build_bpf() -> bytes:
    """Compiles the filter for the native architecture only and returns its BPF program.

    seccomp(2): a filter must check seccomp_data.arch. libseccomp emits that check; with only the
    native arch added, an i386 `int 0x80` call or an x32 call (nr | 0x40000000) takes the
    bad-arch action, which is set to kill the whole process.
    """
    rules = sc.SyscallFilter(sc.ALLOW)
    rules.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    rules.add_rule(sc.NOTIFY, "execve")
    rules.add_rule(sc.NOTIFY, "execveat")
    for name in REFUSED_SYSCALLS:
        rules.add_rule(sc.ERRNO(errno.EPERM), name)
    for flag in _CLONE_NAMESPACE_FLAGS:
        rules.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    # clone3 passes its flags in memory that BPF cannot read. ENOSYS makes glibc fall back to
    # clone(), whose flags the rules above can see.
    rules.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")

    scratch = os.memfd_create("session-wrapper-bpf", os.MFD_CLOEXEC)
    try:
        with os.fdopen(scratch, "w+b", closefd=False) as sink:
            rules.export_bpf(sink)
        size = os.lseek(scratch, 0, os.SEEK_END)
        return os.pread(scratch, size, 0)
    finally:
        os.close(scratch)


def set_no_new_privs() -> None:
    """prctl(2) PR_SET_NO_NEW_PRIVS: lets an unprivileged process load a filter."""
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def load(bpf: bytes) -> LoadedFilter:
    """Loads the filter into the calling thread and returns the new listener fd.

    seccomp_unotify(2): SECCOMP_FILTER_FLAG_NEW_LISTENER returns the listener fd; loading fails
    with EBUSY when an ancestor filter already has a listener.
    SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (Linux 5.19) keeps a received notification pending
    across non-fatal signals, so a target that keeps getting signals during a slow decision is
    not notified over and over. Older kernels reject the flag with EINVAL; the filter is then
    loaded without it.
    """
    program = ctypes.create_string_buffer(bpf, len(bpf))
    fprog = _SockFprog(len(bpf) // 8, ctypes.cast(program, ctypes.c_void_p))
    seccomp_nr = sc.resolve_syscall(sc.Arch.NATIVE, "seccomp")
    wait_killable = True
    flags = SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
    fd = _libc.syscall(seccomp_nr, SECCOMP_SET_MODE_FILTER, flags, ctypes.byref(fprog))
    if fd < 0 and ctypes.get_errno() == errno.EINVAL:
        wait_killable = False
        flags = SECCOMP_FILTER_FLAG_NEW_LISTENER
        fd = _libc.syscall(seccomp_nr, SECCOMP_SET_MODE_FILTER, flags, ctypes.byref(fprog))
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return LoadedFilter(
        listener_fd=fd,
        execve_nr=sc.resolve_syscall(sc.Arch.NATIVE, "execve"),
        execveat_nr=sc.resolve_syscall(sc.Arch.NATIVE, "execveat"),
        wait_killable_recv=wait_killable,
    )
