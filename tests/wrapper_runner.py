"""Running the wrapper as a user would: the command line a ForceCommand shim builds."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root (loads seccomp filters for other users, switches uid)"
)

# The syslog socket that wrappers started by these tests send their audit trail to; None keeps
# the wrapper's default (/dev/log). The `syslog` fixture points it at a socket it reads.
SYSLOG_SOCKET: str | None = None

RunWrapper = Callable[..., subprocess.CompletedProcess[str]]


def wrapper_argv(
    command: Sequence[str],
    *,
    endpoint: str,
    fail_policy: str = "closed",
    timeout_ms: int = 3000,
    uid: int | None = None,
    gid: int | None = None,
    user: str = "alice",
    extra: Sequence[str] = (),
    syslog_socket: str | None = None,
) -> list[str]:
    """The wrapper's command line, as a ForceCommand shim would build it."""
    return [
        sys.executable,
        "-m",
        "session_wrapper",
        "--user",
        user,
        "--user-uid",
        str(os.getuid() if uid is None else uid),
        "--user-gid",
        str(os.getgid() if gid is None else gid),
        "--service-endpoint",
        endpoint,
        "--fail-policy",
        fail_policy,
        "--authorization-timeout-ms",
        str(timeout_ms),
        "--port",
        "pts/test",
        "--rem-addr",
        "192.0.2.7",
        *_syslog_flag(syslog_socket or SYSLOG_SOCKET),
        *extra,
        "--",
        *command,
    ]


def _syslog_flag(path: str | None) -> list[str]:
    return ["--syslog-socket", path] if path else []
