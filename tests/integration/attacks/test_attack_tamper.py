"""Attack 6: tampering with a sibling or the supervisor: ptrace, process_vm_writev, /proc/PID/mem
writes, pidfd_getfd of the listener, and SIGSTOP or SIGKILL of the supervisor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from attack_support import Helpers, cmds
from wrapper_runner import RunWrapper, wrapper_argv

from fakeagent import FakeAgent

PROBE = r"""
import ctypes, errno, os, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
def call(number, *args):
    result = libc.syscall(number, *[ctypes.c_long(a) for a in args])
    return "ok" if result >= 0 else errno.errorcode[ctypes.get_errno()]
sibling = subprocess.Popen(["/usr/bin/sleep", "5"])
supervisor = int(sys.argv[1])
print("ptrace-sibling", call(101, 16, sibling.pid, 0, 0))
print("ptrace-supervisor", call(101, 16, supervisor, 0, 0))
print("vm-writev-sibling", call(311, sibling.pid, 0, 0, 0, 0, 0))
pidfd = os.pidfd_open(supervisor)
print("pidfd_getfd-listener", call(438, pidfd, 3, 0))
sibling.kill()
"""


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="syscall numbers are x86_64's")
def test_ptrace_vm_writev_and_pidfd_getfd_are_refused(
    agent: FakeAgent, run_wrapper: RunWrapper, tmp_path: Path
) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    # $PPID of the first shell is the wrapper, which is the supervisor.
    result = run_wrapper(
        "/bin/bash", "-c", f'{sys.executable} {probe} "$PPID"', endpoint=agent.endpoint
    )
    outcome = dict(line.split() for line in result.stdout.splitlines())
    assert outcome == {
        "ptrace-sibling": "EPERM",
        "ptrace-supervisor": "EPERM",
        "vm-writev-sibling": "EPERM",
        "pidfd_getfd-listener": "EPERM",
    }, result.stderr


def test_proc_mem_writes_to_sibling_and_supervisor_are_refused(
    agent: FakeAgent, helpers: Helpers, run_wrapper: RunWrapper
) -> None:
    script = (
        f"{helpers.victim} > v.out & sleep 0.3; "
        f"{helpers.procmem} $! $(/usr/bin/head -1 v.out); "
        f"{helpers.procmem} $PPID 0x400000; wait; /usr/bin/tail -1 v.out"
    )
    result = run_wrapper("/bin/bash", "-c", script, endpoint=agent.endpoint)
    # Landlock refuses the open for writing of /proc/<sibling>/mem and /proc/<supervisor>/mem.
    assert result.stdout.splitlines() == [
        "open: Permission denied",
        "open: Permission denied",
        "intact",
    ], result.stderr


@pytest.mark.timeout(40)
def test_stopped_supervisor_holds_execs_and_killed_one_fails_them(
    agent: FakeAgent, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    status = tmp_path / "status"
    script = f"kill -STOP $PPID; /usr/bin/touch {marker}; echo $? > {status}"
    wrapper = subprocess.Popen(
        wrapper_argv(["/bin/bash", "-c", script], endpoint=agent.endpoint),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _state(wrapper.pid) != "T":
        time.sleep(0.05)
    assert _state(wrapper.pid) == "T", "the session did not stop its supervisor"
    time.sleep(0.5)
    # A stopped supervisor answers nothing: the exec is held, not let through.
    assert not marker.exists()
    wrapper.kill()
    wrapper.wait()
    while not status.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    # With the listener gone the kernel fails the held exec with ENOSYS: bash reports 126.
    assert status.read_text().strip() == "126"
    assert not marker.exists()
    assert "/usr/bin/touch" not in cmds(agent)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "?"


def test_supervisor_killed_from_inside(
    agent: FakeAgent, run_wrapper: RunWrapper, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    result = run_wrapper(
        "/bin/bash",
        "-c",
        f"kill -KILL $PPID; /usr/bin/touch {marker}; echo status $?",
        endpoint=agent.endpoint,
    )
    # The wrapper itself died; its session's exec then failed with ENOSYS.
    assert result.returncode == -signal.SIGKILL
    assert "/usr/bin/touch: Function not implemented" in result.stderr
    assert not marker.exists()
