"""Fixtures shared by every test suite."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import wrapper_runner
from syslog_receiver import SyslogReceiver
from wrapper_runner import RunWrapper, wrapper_argv


@pytest.fixture
def run_wrapper(tmp_path: Path) -> RunWrapper:
    """Runs ``session-wrapper ... -- COMMAND`` to completion and returns what a user sees.

    Keyword arguments go to wrapper_argv, except ``input`` (stdin text), ``timeout`` (seconds
    before the test fails) and ``cwd``.
    """

    def run(
        *command: str,
        input: str | None = None,
        timeout: float = 30,
        cwd: Path | None = None,
        **options: object,
    ) -> subprocess.CompletedProcess[str]:
        argv = wrapper_argv(command, **options)  # type: ignore[arg-type]
        return subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd or tmp_path,
            check=False,
        )

    return run


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A fresh directory with a short path: sun_path holds 108 bytes, pytest's tmp_path may be
    longer."""
    path = Path(tempfile.mkdtemp(prefix="sw-sock-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def syslog(socket_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SyslogReceiver]:
    """A syslog socket of the test's own; wrappers started by wrapper_argv send to it."""
    receiver = SyslogReceiver(socket_dir / "log")
    monkeypatch.setattr(wrapper_runner, "SYSLOG_SOCKET", str(receiver.path))
    monkeypatch.delenv("SSH_ORIGINAL_COMMAND", raising=False)
    yield receiver
    receiver.close()
