"""Attack 1: a foreign syscall ABI. The filter allows only x86_64 calls; any other kills."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from attack_support import Helpers, cmds
from wrapper_runner import RunWrapper

from fakeagent import FakeAgent

pytestmark = pytest.mark.skipif(
    os.uname().machine != "x86_64", reason="i386 and x32 ABIs exist only on x86_64"
)


@pytest.mark.parametrize("mode", ["int80", "x32"])
def test_foreign_execve_kills_the_caller(
    agent: FakeAgent, helpers: Helpers, run_wrapper: RunWrapper, mode: str
) -> None:
    result = run_wrapper(
        str(helpers.foreign_abi), mode, "/usr/bin/whoami", endpoint=agent.endpoint
    )
    assert result.returncode == 128 + signal.SIGSYS, result
    assert "survived" not in result.stdout
    assert "/usr/bin/whoami" not in cmds(agent)


def test_m32_static_binary_dies_at_its_first_syscall(
    agent: FakeAgent,
    helpers: Helpers,
    run_wrapper: RunWrapper,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    marker = tmp_path / "marker"
    monkeypatch.setenv("MARKER", str(marker))
    result = run_wrapper(
        str(helpers.foreign_abi_m32), "native", "/usr/bin/whoami", endpoint=agent.endpoint
    )
    # The 64-bit exec of the i386 binary is mediated like any other ...
    assert cmds(agent)[0] == str(helpers.foreign_abi_m32)
    # ... and the i386 program cannot make a single syscall: not even its open() ran.
    assert result.returncode == 128 + signal.SIGSYS
    assert not marker.exists()
    assert "/usr/bin/whoami" not in cmds(agent)
