"""The relay behind the fake agent's real gRPC servicer, asked by the wrapper's own agent client.

The chain is the wrapper's AgentClient, gRPC on a Unix socket, TacacsAgentServicer, RelayBackend
and a TACACS+ server double. FakeAgent itself builds its PolicyBackend internally, so the test
assembles the same gRPC server around the servicer with the relay as its backend.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from fakeagent.connections import ListenAddress
from fakeagent.recording import Recorder
from fakeagent.relay import RelayBackend
from fakeagent.servicer import TacacsAgentServicer
from session_wrapper.agent_client import AccountingRecord, AgentClient
from session_wrapper.decision import (
    AgentAnswer,
    AgentUnavailable,
    AuthorizationStatus,
    ExecRequest,
    Identity,
    Outage,
    exec_query,
)
from session_wrapper.rpc import tacacsrs_agent_pb2 as pb
from session_wrapper.rpc import tacacsrs_agent_pb2_grpc as pb_grpc

# tests/ is not a package and pytest puts only this file's directory on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tacacs_double as tac

SECRET = b"grpc-relay-secret-51d0"
IDENTITY = Identity(user="alice", port="ssh:pts/0", rem_addr="192.0.2.7", priv_lvl=1)


def serve_relay(backend: RelayBackend, path: str) -> grpc.Server:
    server = grpc.server(futures.ThreadPoolExecutor(4))
    servicer = TacacsAgentServicer(backend, Recorder(), ListenAddress(path=path))
    pb_grpc.add_TacacsAgentServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    assert server.add_insecure_port(f"unix:{path}") != 0
    server.start()
    return server


@pytest.fixture
def socket_path(tmp_path: Path) -> str:
    return str(tmp_path / "agent.sock")


@pytest.fixture
def double() -> Iterator[tac.TacacsDouble]:
    with tac.TacacsDouble(SECRET) as server:
        yield server


def refused_port() -> tuple[str, int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        host, port = sock.getsockname()[:2]
    return str(host), int(port)


@pytest.mark.timeout(30)
def test_wrapper_client_gets_the_servers_verdict_through_the_relay(
    double: tac.TacacsDouble, socket_path: str
) -> None:
    double.push(tac.Reply(tac.FAIL, server_msg="ip route is not for you"))
    backend = RelayBackend([double.upstream], SECRET, 2.0, 2.0, 30.0)
    server = serve_relay(backend, socket_path)
    client = AgentClient(f"unix:{socket_path}", timeout_s=10)
    try:
        query = exec_query(IDENTITY, ExecRequest(b"/usr/bin/ip", (b"ip", b"route")))
        verdict = client.authorize(query)
        reply = client.account(
            AccountingRecord("alice", "ssh:pts/0", "192.0.2.7", "/usr/bin/ip", ("route",))
        )
    finally:
        client.close()
        server.stop(grace=None)

    assert verdict == AgentAnswer(
        status=AuthorizationStatus.FAIL,
        server=double.address,
        server_message="ip route is not for you",
    )
    assert reply.response.status == pb.ACCOUNTING_STATUS_SUCCESS
    author, acct = double.received
    assert (author.user, author.port, author.rem_addr, author.priv_lvl) == (
        "alice",
        "ssh:pts/0",
        "192.0.2.7",
        1,
    )
    assert author.args == ("service=shell", "cmd=/usr/bin/ip", "cmd-arg=route")
    assert acct.acct_flags == 0x04
    assert acct.args[2:] == ("service=shell", "cmd=/usr/bin/ip", "cmd-arg=route")


@pytest.mark.timeout(30)
def test_no_server_reachable_reaches_the_wrapper_as_a_service_error(socket_path: str) -> None:
    dead = refused_port()
    backend = RelayBackend([dead], SECRET, 2.0, 2.0, 30.0)
    server = serve_relay(backend, socket_path)
    client = AgentClient(f"unix:{socket_path}", timeout_s=10)
    try:
        verdict = client.authorize(exec_query(IDENTITY, ExecRequest(b"/bin/ls", (b"ls",))))
    finally:
        client.close()
        server.stop(grace=None)

    assert isinstance(verdict, AgentUnavailable)
    assert verdict.outage is Outage.SERVICE_ERROR
    assert f"{dead[0]}:{dead[1]}" in verdict.detail
    assert "(retriable)" in verdict.detail
