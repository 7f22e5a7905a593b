"""Post-exec verification: after CONTINUE, is /proc/PID/exe the file that was authorized?

seccomp_unotify(2) warns that the kernel reads the exec's arguments again after CONTINUE, so a
thread sharing the target's memory can swap the path after the supervisor's last look. This
module watches the process after the answer and kills it when it runs a file nobody authorized.
It detects; it cannot undo what the wrong program did before the kill. It holds no policy.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# An exec normally replaces /proc/PID/exe within a few hundred microseconds of CONTINUE. One
# whose exe is still the old file after this long is taken to have failed (ENOEXEC, EACCES).
WATCH_LIMIT_S = 1.0
# The first poll is at once, then after 100 us, doubling up to 5 ms. Polls back to back would
# catch a wrong program a little sooner, but on two cores they take a CPU away from the very
# execs being watched: every exec of the session got slower.
_FIRST_POLL_INTERVAL_S = 0.0001
_MAX_POLL_INTERVAL_S = 0.005

FileIdentity = tuple[int, int]


@dataclass(frozen=True)
class Watch:
    """One CONTINUEd exec to verify: the process, its exe before, and the file authorized."""

    tgid: int
    pidfd: int
    before: FileIdentity | None
    expected: FileIdentity
    serial: int


@dataclass(frozen=True)
class Mismatch:
    """A process found running a file that was not authorized for it."""

    tgid: int
    expected: FileIdentity
    found: FileIdentity
    found_path: str
    after_s: float


def thread_group(tid: int) -> int:
    """The tgid of a thread (proc(5), /proc/TID/status ``Tgid:``). Raises OSError if gone."""
    with open(f"/proc/{tid}/status", "rb") as status:
        for line in status:
            if line.startswith(b"Tgid:"):
                return int(line.split()[1])
    raise OSError(f"/proc/{tid}/status has no Tgid line")


def _exe(tgid: int) -> FileIdentity | None:
    try:
        info = os.stat(f"/proc/{tgid}/exe")
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _exited(pidfd: int) -> bool:
    # pidfd_open(2): the pidfd becomes readable once the process has exited.
    return bool(select.select([pidfd], [], [], 0)[0])


class ExecVerifier:
    """Registers each exec before CONTINUE and verifies it after.

    Every file authorized for a process while one of its execs is being watched counts as
    expected: a later exec of the same process (a PATH search after EACCES, another thread) may
    replace the exe legitimately before the earlier watch ends.
    """

    def __init__(self, on_mismatch: Callable[[Mismatch], None]) -> None:
        self._on_mismatch = on_mismatch
        self._lock = threading.Lock()
        self._serial = 0
        # tgid -> [(serial, expected identity)] of the watches still running.
        self._authorized: dict[int, list[tuple[int, FileIdentity]]] = {}

    def prepare(self, tid: int, expected: FileIdentity) -> Watch:
        """Called while the exec is still held. Raises OSError when the process is gone.

        The pidfd is taken now, while the held thread keeps the process alive, so the pid can
        never be a reused one later; pidfd_send_signal(2) then kills exactly this process.
        """
        try:
            # Most execs come from a single-threaded process, whose tid is its tgid;
            # pidfd_open(2) refuses (EINVAL) a tid that is not a thread-group leader.
            pidfd = os.pidfd_open(tid)
            tgid = tid
        except OSError as error:
            if error.errno != errno.EINVAL:
                raise
            tgid = thread_group(tid)
            pidfd = os.pidfd_open(tgid)
        before = _exe(tgid)
        with self._lock:
            self._serial += 1
            serial = self._serial
            self._authorized.setdefault(tgid, []).append((serial, expected))
        return Watch(tgid, pidfd, before, expected, serial)

    def cancel(self, watch: Watch) -> None:
        """The exec was denied after all: forget the watch."""
        self._forget(watch)

    def verify(self, watch: Watch) -> Mismatch | None:
        """Polls /proc/TGID/exe until it is an authorized file, the process is gone, or the
        watch limit passes with the old exe still in place (the exec failed)."""
        started = time.monotonic()
        interval = 0.0
        try:
            while True:
                found = _exe(watch.tgid)
                # Read first, then make sure the process was alive during the read: a reused
                # pid's /proc entry must not be taken for ours.
                if _exited(watch.pidfd) or found is None:
                    return None
                if found == watch.expected or found in self._expected_now(watch.tgid):
                    return None
                if found != watch.before:
                    return self._kill(watch, found, time.monotonic() - started)
                if time.monotonic() - started > WATCH_LIMIT_S:
                    logger.debug("exec in %d left exe unchanged: it failed", watch.tgid)
                    return None
                interval = min(_MAX_POLL_INTERVAL_S, interval * 2 or _FIRST_POLL_INTERVAL_S)
                time.sleep(interval)
        finally:
            self._forget(watch)

    def _expected_now(self, tgid: int) -> set[FileIdentity]:
        with self._lock:
            return {identity for _serial, identity in self._authorized.get(tgid, ())}

    def _kill(self, watch: Watch, found: FileIdentity, after_s: float) -> Mismatch:
        path = "(unknown)"
        with contextlib.suppress(OSError):
            path = os.readlink(f"/proc/{watch.tgid}/exe")
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(watch.pidfd, signal.SIGKILL)
        mismatch = Mismatch(watch.tgid, watch.expected, found, path, after_s)
        self._on_mismatch(mismatch)
        return mismatch

    def _forget(self, watch: Watch) -> None:
        with self._lock:
            entries = self._authorized.get(watch.tgid, [])
            entries[:] = [entry for entry in entries if entry[0] != watch.serial]
            if not entries:
                self._authorized.pop(watch.tgid, None)
        with contextlib.suppress(OSError):
            os.close(watch.pidfd)
