"""Fixtures shared by every test suite."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
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
