"""The Landlock layer: ordinary sessions still work under it, /proc stays unwritable but for
/proc/sys, and the session-start audit event names the ABI."""

from __future__ import annotations

import sys
from pathlib import Path

import pexpect
import pytest
from wrapper_runner import RunWrapper, wrapper_argv

from fakeagent import FakeAgent
from session_wrapper.kernel import landlock

pytestmark = pytest.mark.skipif(
    landlock.abi_version() < landlock.MIN_ABI, reason="needs Landlock ABI 2 or later"
)


@pytest.mark.timeout(40)
def test_interactive_terminal_session(agent: FakeAgent, tmp_path: Path) -> None:
    argv = wrapper_argv(["/bin/bash", "--norc", "-i"], endpoint=agent.endpoint)
    shell = pexpect.spawn(argv[0], argv[1:], cwd=str(tmp_path), encoding="utf-8", timeout=15)
    shell.sendline("PS1='$ '; /usr/bin/tty; echo tty-status $?")
    shell.expect(r"/dev/pts/\d+")
    shell.expect("tty-status 0")
    shell.sendline("echo typed > /dev/tty; /usr/bin/stty size; exit 4")
    shell.expect("typed")
    shell.expect(r"\d+ \d+")
    shell.expect(pexpect.EOF)
    shell.close()
    assert shell.exitstatus == 4


def test_redirections_dev_null_tmp_and_sysctl_reads(
    agent: FakeAgent, run_wrapper: RunWrapper, tmp_path: Path
) -> None:
    script = (
        f"echo one > {tmp_path}/out; echo two >> {tmp_path}/out; "
        f"/usr/bin/cat < {tmp_path}/out > /dev/stdout; "
        "echo gone > /dev/null; echo err 2>&1 >/dev/stderr | /usr/bin/cat; "
        "/usr/bin/mktemp -p /tmp > /dev/null && echo tmp-ok; "
        "/usr/bin/cat /proc/sys/kernel/ostype; /usr/sbin/sysctl -n kernel.ostype; "
        f"/usr/bin/mv {tmp_path}/out {tmp_path}/moved && /usr/bin/wc -l < {tmp_path}/moved"
    )
    result = run_wrapper("/bin/bash", "-c", script, endpoint=agent.endpoint)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["one", "two", "err", "tmp-ok", "Linux", "Linux", "2"]


def test_proc_writes_refused_except_proc_sys(agent: FakeAgent, run_wrapper: RunWrapper) -> None:
    script = (
        "echo x > /proc/self/comm; echo comm $?; "
        "echo 1 > /proc/self/oom_score_adj; echo oom $?; "
        # /proc/sys is writable by whoever the kernel lets (root here).
        'v=$(</proc/sys/kernel/domainname); echo "$v" > /proc/sys/kernel/domainname; '
        "echo sys $?"
    )
    result = run_wrapper("/bin/bash", "-c", script, endpoint=agent.endpoint)
    # Known limit: Landlock cannot tell the session's own /proc/self files from a sibling's, so
    # /proc/self/comm and the like are refused too; only fd targets stay writable (they are
    # checked at the file they lead to).
    assert result.stdout.splitlines() == ["comm 1", "oom 1", "sys 0"], result.stderr


def test_session_start_names_the_landlock_abi(agent: FakeAgent, run_wrapper: RunWrapper) -> None:
    result = run_wrapper("/bin/bash", "-c", "exit 0", endpoint=agent.endpoint, extra=["-v"])
    start = next(line for line in result.stderr.splitlines() if "event=session_start" in line)
    assert f"landlock_abi={landlock.abi_version()}" in start


def test_proc_mem_write_refused_even_for_the_process_itself(
    agent: FakeAgent, run_wrapper: RunWrapper
) -> None:
    result = run_wrapper(
        sys.executable,
        "-c",
        "import os\ntry:\n    os.open('/proc/self/mem', os.O_RDWR)\nexcept OSError as e:\n"
        "    print(e.strerror)\n",
        endpoint=agent.endpoint,
    )
    assert result.stdout == "Permission denied\n", result.stderr
