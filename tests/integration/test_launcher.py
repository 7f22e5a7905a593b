"""The launcher's report of a child that dies before handing over its listener fd.

A real forked child stands in for the session's child: it dies the way a child could (an exit
status, a signal) before sending anything, and the parent side of the launcher must say so.
"""

from __future__ import annotations

import os
import signal
import socket

import pytest

from session_wrapper.kernel import launcher


def _child_that_dies(how: int) -> tuple[int, socket.socket]:
    parent_end, child_end = socket.socketpair(
        socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC
    )
    pid = os.fork()
    if pid == 0:
        parent_end.close()
        if how < 0:
            os.kill(os.getpid(), -how)
        os._exit(how)
    child_end.close()
    return pid, parent_end


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("how", "reported"),
    [
        (3, "start: child exited with status 3"),
        (-signal.SIGKILL, "start: child killed by SIGKILL"),
        (-signal.SIGTERM, "start: child killed by SIGTERM"),
    ],
)
def test_child_dying_before_the_fd_is_reported_with_its_status(how: int, reported: str) -> None:
    pid, control = _child_that_dies(how)
    with control, pytest.raises(launcher.ChildSetupError) as raised:
        launcher._receive_listener(pid, control)
    assert str(raised.value) == reported
    assert raised.value.exit_status == 1
