"""The wrapper on a kernel without Landlock and without SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV.

This kernel has both, so an outer seccomp filter plays the older kernel: landlock_create_ruleset
fails with ENOSYS, and seccomp() fails with EINVAL when asked for WAIT_KILLABLE_RECV (0x20), as a
kernel before 5.19 answers an unknown flag. The session must run, with one warning.
"""

from __future__ import annotations

import errno
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from wrapper_runner import needs_root, wrapper_argv

from fakeagent import FakeAgent

# Loaded without no_new_privs (the test runs as root), then replaced by the wrapper.
OLDER_KERNEL = f"""
import os, sys
import pyseccomp as sc
rules = sc.SyscallFilter(sc.ALLOW)
rules.set_attr(sc.Attr.CTL_NNP, 0)
rules.add_rule(sc.ERRNO({errno.ENOSYS}), "landlock_create_ruleset")
rules.add_rule(sc.ERRNO({errno.EINVAL}), "seccomp", sc.Arg(1, sc.MASKED_EQ, 0x20, 0x20))
rules.load()
os.execv(sys.argv[1], sys.argv[1:])
"""


@pytest.fixture
def agent(agent_socket_dir: Path) -> Iterator[FakeAgent]:
    policy = "[default]\nstatus = 'PASS_ADD'\n"
    with FakeAgent(listen=f"unix:{agent_socket_dir}/agent.sock", policy=policy) as fake:
        yield fake


@needs_root
@pytest.mark.timeout(30)
def test_session_runs_without_landlock_and_wait_killable_recv(
    agent: FakeAgent, tmp_path: Path
) -> None:
    argv = wrapper_argv(
        ["/bin/bash", "-c", "/usr/bin/echo still mediated"],
        endpoint=agent.endpoint,
        extra=["-v"],
    )
    result = subprocess.run(
        [sys.executable, "-c", OLDER_KERNEL, *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=20,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "still mediated\n"
    warnings = [line for line in result.stderr.splitlines() if "Landlock" in line]
    assert len(warnings) == 1, result.stderr
    assert "Landlock is not available; running without the Landlock layer" in warnings[0]
    [start] = [line for line in result.stderr.splitlines() if "event=session_start" in line]
    assert "wait_killable_recv=False" in start
    assert "landlock_abi=0" in start
    # The exec was still held and decided: the filter itself loaded.
    assert [r.cmd for r in agent.requests if r.rpc == "authorization" and r.cmd] == [
        "/usr/bin/echo"
    ]
