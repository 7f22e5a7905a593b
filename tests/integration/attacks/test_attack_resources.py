"""Attack 10: resource abuse. Oversized argv is denied with a reason, non-UTF-8 bytes are
escaped, a fork bomb under ulimit -u does not wedge the supervisor, and a tight loop of execs
leaves no notification stuck."""

from __future__ import annotations

import pwd

import pytest
from attack_support import cmds, commands
from wrapper_runner import RunWrapper, needs_root

from fakeagent import FakeAgent


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        # The reads stop one past the limits, so the reason gives the count and size read.
        ("$(/usr/bin/seq 300)", "more than 253 arguments, TACACS+'s limit per command"),
        (
            "$(/usr/bin/head -c 100000 /dev/zero | /usr/bin/tr '\\0' a)",
            "argument 1 is over 255 bytes as a TACACS+ arg, the limit",
        ),
        ("$(/usr/bin/seq 290000)", "more than 253 arguments, TACACS+'s limit per command"),
    ],
    ids=["300-args", "100KB-arg", "2MB-argv"],
)
def test_oversized_argv_gets_a_clean_deny(
    agent: FakeAgent, run_wrapper: RunWrapper, args: str, reason: str
) -> None:
    script = f"/usr/bin/echo {args} > /dev/null; echo status $?"
    result = run_wrapper("/bin/bash", "-c", script, endpoint=agent.endpoint)
    assert result.stdout == "status 126\n"
    assert f"session-wrapper: /usr/bin/echo: cannot be authorized: {reason}\n" in result.stderr
    assert "/usr/bin/echo" not in cmds(agent)


def test_non_utf8_bytes_are_escaped(agent: FakeAgent, run_wrapper: RunWrapper) -> None:
    result = run_wrapper(
        "/bin/bash", "-c", "/usr/bin/echo $'\\xff\\xfe' ok >/dev/null", endpoint=agent.endpoint
    )
    assert result.returncode == 0, result.stderr
    assert ("/usr/bin/echo", ("\\xff\\xfe", "ok")) in commands(agent)


# Forks until RLIMIT_NPROC says no, each child in a mediated exec of sleep, then execs echo. It
# must stay under 255 bytes: it is one TACACS+ arg. Python's fork fails at once with EAGAIN;
# bash would retry with growing sleeps, and the test would time bash, not the supervisor.
# Debian's python3, because the test user cannot read this venv's interpreter.
FORK_BOMB = (
    "import os,resource as r\n"
    "r.setrlimit(r.RLIMIT_NPROC,(40,40))\n"
    "n=0\n"
    "while n<300:\n"
    " try:p=os.fork()\n"
    " except OSError:break\n"
    " if p<1:os.execv('/bin/sleep',['s','1'])\n"
    " n+=1\n"
    "for _ in range(n):os.wait()\n"
    "os.execv('/bin/echo',['e','alive',str(n)])"
)


@needs_root
@pytest.mark.timeout(60)
def test_fork_bomb_under_ulimit_does_not_wedge_the_supervisor(
    agent: FakeAgent, run_wrapper: RunWrapper
) -> None:
    nobody = pwd.getpwnam("nobody")
    result = run_wrapper(
        "/usr/bin/python3",
        "-c",
        FORK_BOMB,
        endpoint=agent.endpoint,
        uid=nobody.pw_uid,
        gid=nobody.pw_gid,
        user="nobody",
        cwd="/",
        timeout=50,
    )
    assert result.returncode == 0, result.stderr
    word, forked = result.stdout.split()
    assert word == "alive"
    # The limit was reached (fewer than the 300 tries), and every child's exec was answered.
    assert 0 < int(forked) < 300
    assert cmds(agent).count("/usr/bin/sleep") == int(forked)


@pytest.mark.timeout(120)
def test_thousand_execs_in_a_tight_loop(agent: FakeAgent, run_wrapper: RunWrapper) -> None:
    result = run_wrapper(
        "/bin/bash",
        "-c",
        "for i in $(seq 1000); do /usr/bin/true; done; /usr/bin/echo done",
        endpoint=agent.endpoint,
        timeout=110,
    )
    assert result.stdout == "done\n", result.stderr
    assert cmds(agent).count("/usr/bin/true") == 1000
