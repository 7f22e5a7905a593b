"""The seccomp user-notification listener: receive, check and answer held syscalls.

Mirrors struct seccomp_notif and struct seccomp_notif_resp once, here, and drives the listener fd
with ioctl(2) directly: pyseccomp's notify calls only work in the process that loaded the filter,
and the supervisor is the parent of that process.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import select
import struct
from dataclasses import dataclass

# ioctl numbers from include/uapi/linux/seccomp.h (_IOWR('!', 0, struct seccomp_notif) etc.).
SECCOMP_IOCTL_NOTIF_RECV = 0xC0502100
SECCOMP_IOCTL_NOTIF_SEND = 0xC0182101
SECCOMP_IOCTL_NOTIF_ID_VALID = 0x40082102
SECCOMP_GET_NOTIF_SIZES = 3

# seccomp_unotify(2): struct seccomp_notif { u64 id; u32 pid; u32 flags; struct seccomp_data }
# and struct seccomp_data { int nr; u32 arch; u64 instruction_pointer; u64 args[6] }.
_NOTIF = struct.Struct("=QIIiIQ6Q")
# struct seccomp_notif_resp { u64 id; s64 val; s32 error; u32 flags; }
_NOTIF_RESP = struct.Struct("=QqiI")
_ID = struct.Struct("=Q")
# struct seccomp_notif_sizes { u16 seccomp_notif; u16 seccomp_notif_resp; u16 seccomp_data; }
_SIZES = struct.Struct("=HHH")

SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1


@dataclass(frozen=True)
class Notification:
    """One held syscall. ``pid`` is the thread id of the target."""

    id: int
    pid: int
    nr: int
    arch: int
    args: tuple[int, int, int, int, int, int]


def check_struct_sizes(seccomp_nr: int) -> None:
    """Refuses to run when the kernel's notification structs differ from the ones mirrored here.

    seccomp_unotify(2) recommends SECCOMP_GET_NOTIF_SIZES over assuming the sizes.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    sizes = ctypes.create_string_buffer(_SIZES.size)
    if libc.syscall(seccomp_nr, SECCOMP_GET_NOTIF_SIZES, 0, sizes) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"SECCOMP_GET_NOTIF_SIZES: {os.strerror(code)}")
    notif, resp, _data = _SIZES.unpack(sizes.raw)
    if (notif, resp) != (_NOTIF.size, _NOTIF_RESP.size):
        raise OSError(
            errno.EPROTO,
            f"kernel notification structs are {notif}/{resp} bytes, expected "
            f"{_NOTIF.size}/{_NOTIF_RESP.size}",
        )


class Listener:
    """The listener fd. Thread-safe: each call is a single ioctl on its own buffer."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._poller = select.poll()
        self._poller.register(fd, select.POLLIN)

    def close(self) -> None:
        os.close(self.fd)

    def wait(self, timeout_ms: int | None = None) -> bool:
        """Waits for a notification. False on timeout; raises EOFError once no task is left.

        seccomp_unotify(2): the listener reports POLLHUP when every task using the filter has
        gone. RECV ignores O_NONBLOCK, so poll(2) is the only way not to block.
        """
        for _fd, events in self._poller.poll(timeout_ms):
            if events & select.POLLIN:
                return True
            if events & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                raise EOFError("no task is left in the filter")
        return False

    def receive(self) -> Notification:
        """SECCOMP_IOCTL_NOTIF_RECV. Raises OSError ENOENT when the target went away first."""
        # seccomp_unotify(2): the structure must be zeroed before each call.
        buffer = bytearray(_NOTIF.size)
        fcntl.ioctl(self.fd, SECCOMP_IOCTL_NOTIF_RECV, buffer, True)
        ident, pid, _flags, nr, arch, _ip, *args = _NOTIF.unpack(buffer)
        return Notification(
            ident, pid, nr, arch, (args[0], args[1], args[2], args[3], args[4], args[5])
        )

    def id_valid(self, ident: int) -> bool:
        """SECCOMP_IOCTL_NOTIF_ID_VALID: is the target still blocked on this notification?"""
        try:
            fcntl.ioctl(self.fd, SECCOMP_IOCTL_NOTIF_ID_VALID, _ID.pack(ident))
        except OSError as error:
            if error.errno == errno.ENOENT:
                return False
            raise
        return True

    def allow(self, ident: int) -> bool:
        """Lets the syscall run (SECCOMP_USER_NOTIF_FLAG_CONTINUE). False if the target is gone.

        seccomp_unotify(2): with the CONTINUE flag, error and val must be 0.
        """
        return self._send(_NOTIF_RESP.pack(ident, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE))

    def fail(self, ident: int, code: int) -> bool:
        """Makes the syscall fail with errno ``code``. False if the target is gone."""
        return self._send(_NOTIF_RESP.pack(ident, 0, -code, 0))

    def _send(self, response: bytes) -> bool:
        try:
            fcntl.ioctl(self.fd, SECCOMP_IOCTL_NOTIF_SEND, bytearray(response), True)
        except OSError as error:
            # ENOENT: the target was killed or its syscall interrupted before the answer.
            if error.errno == errno.ENOENT:
                return False
            raise
        return True
