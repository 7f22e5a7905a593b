"""The wrapper as the session's subreaper: process attributes, reaping and signalling.

prctl(2) PR_SET_CHILD_SUBREAPER makes every orphaned descendant a child of the wrapper, so
waitpid(-1) sees the whole session and ECHILD means that no process of it is left. The wrapper
must therefore start no child of its own besides the session.
"""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36

_libc = ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"prctl({option}): {os.strerror(code)}")


def become_subreaper() -> None:
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def make_undumpable() -> None:
    """PR_SET_DUMPABLE 0: a same-uid session can then neither ptrace the wrapper nor open its
    /proc/PID/mem (proc(5): access needs PTRACE_MODE_ATTACH, which an undumpable task refuses to
    tasks without CAP_SYS_PTRACE)."""
    _prctl(PR_SET_DUMPABLE, 0)


def make_dumpable() -> None:
    """PR_SET_DUMPABLE 1, for the child: it is the session, not the supervisor."""
    _prctl(PR_SET_DUMPABLE, 1)


def exit_status(wait_status: int) -> int:
    """The shell convention: the exit code, or 128+N for a process killed by signal N."""
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.waitstatus_to_exitcode(wait_status)


def reap() -> tuple[int, int] | None:
    """Waits for any child; None once the wrapper has no child left (ECHILD)."""
    try:
        return os.waitpid(-1, 0)
    except ChildProcessError:
        return None


def descendants(root: int) -> set[int]:
    """Every live process below ``root``, found by walking the parent links in /proc (proc(5)).

    A snapshot: a process forked after the walk is missed, so callers repeat it.
    """
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat_file:
                fields = stat_file.read()
        except OSError:
            continue
        # proc(5): comm is in parentheses and may hold spaces; ppid is the second field after.
        after_comm = fields[fields.rfind(b")") + 2 :].split()
        if len(after_comm) < 2:
            continue
        children.setdefault(int(after_comm[1]), []).append(int(entry))
    found: set[int] = set()
    pending = [root]
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def signal_descendants(root: int, number: int) -> int:
    """Sends ``number`` to every descendant of ``root``; returns how many were signalled."""
    sent = 0
    for pid in descendants(root):
        try:
            os.kill(pid, number)
            sent += 1
        except ProcessLookupError:
            continue
    return sent


def hang_up(root: int) -> None:
    """SIGHUP then SIGCONT, as the kernel does for an orphaned process group, so that a stopped
    job also sees the hang-up."""
    signal_descendants(root, signal.SIGHUP)
    signal_descendants(root, signal.SIGCONT)
