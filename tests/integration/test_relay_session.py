"""session-wrapper → fake-tacacsrs-agentd --upstream → a TACACS+ server (RFC 8907 double).

The agent runs as its own process from the command line an operator would type, with the secret
in an environment variable; the wrapper runs a real session against it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import tacacs_double as tac
from wrapper_runner import RunWrapper

SECRET = "relay-session-secret-7c1e"  # noqa: S105 - a secret for the double only


def answer(request: tac.Received) -> tac.Action:
    """Allows everything but whoami, whose authorization fails with a server message."""
    if request.packet_type == tac.AUTHOR and "cmd=/usr/bin/whoami" in request.args:
        return tac.Reply(tac.FAIL, server_msg="no whoami through the relay")
    return tac.Reply(tac.PASS_ADD)


def start_agent(socket_path: Path, upstream: str) -> subprocess.Popen[str]:
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fakeagent",
            "--listen",
            f"unix:{socket_path}",
            "--upstream",
            upstream,
            "--secret-env",
            "RELAY_TEST_SECRET",
            "--upstream-timeout-ms",
            "500",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RELAY_TEST_SECRET": SECRET},
    )
    assert agent.stdout is not None
    first_line = agent.stdout.readline().strip()
    assert first_line == f"unix:{socket_path}", agent.stderr.read() if agent.stderr else ""
    return agent


@pytest.fixture
def server() -> Iterator[tac.TacacsDouble]:
    with tac.TacacsDouble(SECRET.encode(), respond=answer) as double:
        yield double


@pytest.fixture
def relay(agent_socket_dir: Path, server: tac.TacacsDouble) -> Iterator[Path]:
    socket_path = agent_socket_dir / "relay.sock"
    agent = start_agent(socket_path, server.address)
    try:
        yield socket_path
    finally:
        agent.terminate()
        agent.wait(timeout=10)


def authorizations(server: tac.TacacsDouble) -> list[tuple[str, ...]]:
    return [r.args for r in server.received if r.packet_type == tac.AUTHOR]


@pytest.mark.timeout(30)
def test_allow_and_deny_through_the_relay(
    relay: Path, server: tac.TacacsDouble, run_wrapper: RunWrapper
) -> None:
    result = run_wrapper(
        "/bin/bash",
        "-c",
        "/usr/bin/echo through the relay; whoami; /usr/bin/echo still here",
        endpoint=str(relay),
    )
    assert result.stdout == "through the relay\nstill here\n"
    assert (
        "session-wrapper: /usr/bin/whoami: denied by TACACS+ (server: "
        f"{server.address}): no whoami through the relay" in result.stderr
    )
    assert result.returncode == 0
    asked = authorizations(server)
    assert asked[0] == ("service=shell", "cmd=")
    assert (
        "service=shell",
        "cmd=/usr/bin/echo",
        "cmd-arg=through",
        "cmd-arg=the",
        "cmd-arg=relay",
    ) in asked
    assert ("service=shell", "cmd=/usr/bin/whoami") in asked
    session = next(r for r in server.received if r.packet_type == tac.AUTHOR)
    assert (session.user, session.port, session.rem_addr) == ("alice", "pts/test", "192.0.2.7")
    # Accounting went through the relay too, flushed before the wrapper exited: the session
    # record and the two allowed echos in order, none for the denied whoami. The first two
    # args are task_id and start_time.
    accounted = [r.args[2:] for r in server.received if r.packet_type == tac.ACCT]
    assert [args[:2] for args in accounted] == [
        ("service=shell", "cmd="),
        ("service=shell", "cmd=/usr/bin/echo"),
        ("service=shell", "cmd=/usr/bin/echo"),
    ], accounted
    assert accounted[1][2:] == ("cmd-arg=through", "cmd-arg=the", "cmd-arg=relay")
    assert accounted[2][2:] == ("cmd-arg=still", "cmd-arg=here")


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("fail_policy", "status"), [("closed", 1), ("open", 0)])
def test_server_down_follows_the_fail_policy(
    agent_socket_dir: Path, run_wrapper: RunWrapper, fail_policy: str, status: int
) -> None:
    # A port that was just free: nothing answers there.
    with tac.TacacsDouble(SECRET.encode()) as gone:
        address = gone.address
    agent = start_agent(agent_socket_dir / "relay.sock", address)
    try:
        result = run_wrapper(
            "/bin/bash",
            "-c",
            "/usr/bin/echo ran",
            endpoint=str(agent_socket_dir / "relay.sock"),
            fail_policy=fail_policy,
        )
    finally:
        agent.terminate()
        agent.wait(timeout=10)
    assert result.returncode == status
    if fail_policy == "closed":
        assert "authorization service unreachable at" in result.stderr
        assert "(service error)" in result.stderr
        assert result.stdout == ""
    else:
        assert result.stdout == "ran\n"
        assert "allowed by fail policy open" in result.stderr
