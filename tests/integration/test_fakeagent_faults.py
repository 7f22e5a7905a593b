"""The fake agent over a real Unix socket, asked with the generated tacacsrs.agent.v1 client.

Covers every answer a policy can give (each status, reply args, ServiceError, delay, hang,
drop, both malformed variants), the health and control services, the journal, the socket's
mode and clean-up, and the CLI as a subprocess.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fakeagent import ControlClient, FakeAgent, ListenError, StartError
from session_wrapper.rpc import tacacsrs_agent_pb2 as pb
from session_wrapper.rpc import tacacsrs_agent_pb2_grpc as pb_grpc

EXAMPLE_POLICY = Path(__file__).resolve().parents[2] / "examples" / "policy.toml"
TIMEOUT_S = 10.0

# The signatures of the conftest fixtures of the same names.
FakeAgentFactory = Callable[..., FakeAgent]
WritePolicy = Callable[..., Path]


@pytest.fixture
def channel(fake_agent: FakeAgent) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(fake_agent.endpoint) as chan:
        yield chan


@pytest.fixture
def stub(channel: grpc.Channel) -> pb_grpc.TacacsAgentStub:
    return pb_grpc.TacacsAgentStub(channel)  # type: ignore[no-untyped-call]


def exec_request(
    cmd: str, *cmd_args: str, user: str = "alice", priv_lvl: int = 1
) -> pb.AuthorizationRequest:
    args = [pb.AuthorizationArg(name="service", value="shell", mandatory=True)]
    args.append(pb.AuthorizationArg(name="cmd", value=cmd, mandatory=True))
    args += [pb.AuthorizationArg(name="cmd-arg", value=a, mandatory=True) for a in cmd_args]
    return pb.AuthorizationRequest(
        user=user,
        port="pts/3",
        remote_address="192.0.2.7",
        privilege_level=priv_lvl,
        args=args,
        authentication_context=pb.AUTHORIZATION_AUTHENTICATION_CONTEXT_TACACS_PAP,
    )


def authorize(
    stub: pb_grpc.TacacsAgentStub, cmd: str, *cmd_args: str, timeout: float = TIMEOUT_S
) -> pb.AuthorizationReply:
    reply: pb.AuthorizationReply = stub.Authorization(
        exec_request(cmd, *cmd_args), timeout=timeout
    )
    return reply


# --- statuses and reply fields -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("PASS_ADD", pb.AUTHORIZATION_STATUS_PASS_ADD),
        ("PASS_REPL", pb.AUTHORIZATION_STATUS_PASS_REPL),
        ("FAIL", pb.AUTHORIZATION_STATUS_FAIL),
        ("ERROR", pb.AUTHORIZATION_STATUS_ERROR),
        ("FOLLOW", pb.AUTHORIZATION_STATUS_FOLLOW),
    ],
)
def test_each_authorization_status(
    fake_agent: FakeAgent, stub: pb_grpc.TacacsAgentStub, status: str, expected: int
) -> None:
    fake_agent.load_policy(
        f'[[rule]]\nstatus = "{status}"\nserver = "tac-{status}"\nserver_message = "m {status}"\n'
    )
    reply = authorize(stub, "/usr/bin/ls")
    assert reply.WhichOneof("result") == "response"
    assert reply.response.status == expected
    assert reply.response.server == f"tac-{status}"
    assert reply.response.server_message == f"m {status}"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("SUCCESS", pb.ACCOUNTING_STATUS_SUCCESS),
        ("ERROR", pb.ACCOUNTING_STATUS_ERROR),
        ("FOLLOW", pb.ACCOUNTING_STATUS_FOLLOW),
    ],
)
def test_each_accounting_status(
    fake_agent: FakeAgent, stub: pb_grpc.TacacsAgentStub, status: str, expected: int
) -> None:
    fake_agent.load_policy(f'[[rule]]\nrpc = "accounting"\nstatus = "{status}"\ndata = "d"\n')
    reply = stub.Accounting(
        pb.AccountingRequest(user="alice", command="/usr/bin/ls", command_arguments=["-l"]),
        timeout=TIMEOUT_S,
    )
    assert reply.response.status == expected
    assert reply.response.data == "d"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("PASS", pb.AUTHENTICATION_STATUS_PASS),
        ("FAIL", pb.AUTHENTICATION_STATUS_FAIL),
        ("ERROR", pb.AUTHENTICATION_STATUS_ERROR),
    ],
)
def test_each_pap_status_and_the_password_is_never_recorded(
    fake_agent_factory: FakeAgentFactory,
    agent_socket_dir: Path,
    status: str,
    expected: int,
) -> None:
    journal = agent_socket_dir / "journal.jsonl"
    agent = fake_agent_factory(
        f'[[rule]]\nrpc = "authenticate_pap"\nuser = "bob"\nstatus = "{status}"\n',
        journal=journal,
    )
    with grpc.insecure_channel(agent.endpoint) as chan:
        reply = pb_grpc.TacacsAgentStub(chan).AuthenticatePap(  # type: ignore[no-untyped-call]
            pb.PapAuthenticationRequest(user="bob", password=b"hunter2-secret", privilege_level=1),
            timeout=TIMEOUT_S,
        )
    assert reply.response.status == expected

    (record,) = agent.requests
    assert (record.rpc, record.user, record.password_length) == ("authenticate_pap", "bob", 14)
    with ControlClient(agent.endpoint) as control:
        served = control.requests()
    agent.stop()
    assert "hunter2" not in journal.read_text()
    assert "hunter2" not in served[0].to_json()
    assert "hunter2" not in repr(record)


def test_reply_args_mandatory_and_optional(
    fake_agent: FakeAgent, stub: pb_grpc.TacacsAgentStub
) -> None:
    fake_agent.load_policy(
        """
        [[rule]]
        cmd = ""
        status = "PASS_ADD"
        reply_args = [
          { name = "priv-lvl", value = "15", mandatory = true },
          { name = "idletime", value = "10", mandatory = false },
        ]
        """
    )
    reply = authorize(stub, "")
    assert [(a.name, a.value, a.mandatory) for a in reply.response.args] == [
        ("priv-lvl", "15", True),
        ("idletime", "10", False),
    ]


@pytest.mark.parametrize("retriable", [True, False])
def test_service_error(
    fake_agent: FakeAgent, stub: pb_grpc.TacacsAgentStub, retriable: bool
) -> None:
    fake_agent.load_policy(
        f"""
        [[rule]]
        error = {{ message = "no TACACS+ server reachable", retriable = {str(retriable).lower()},
                   server = "10.0.0.9" }}
        """.replace("\n                   ", " ")
    )
    reply = authorize(stub, "/usr/bin/ls")
    assert reply.WhichOneof("result") == "error"
    assert reply.error.message == "no TACACS+ server reachable"
    assert reply.error.retriable is retriable
    assert reply.error.server == "10.0.0.9"


# --- faults --------------------------------------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.fake_agent_policy('[[rule]]\ndelay_ms = 2000\nstatus = "PASS_ADD"\n')
def test_delay_longer_than_the_deadline_times_out(
    fake_agent: FakeAgent, stub: pb_grpc.TacacsAgentStub
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        authorize(stub, "/usr/bin/ls", timeout=0.3)
    assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.mark.timeout(20)
@pytest.mark.fake_agent_policy('[[rule]]\ndelay_ms = 200\nstatus = "PASS_REPL"\n')
def test_delay_then_answer(fake_agent: FakeAgent, stub: pb_grpc.TacacsAgentStub) -> None:
    assert authorize(stub, "/usr/bin/ls").response.status == pb.AUTHORIZATION_STATUS_PASS_REPL


@pytest.mark.timeout(20)
@pytest.mark.fake_agent_policy('[[rule]]\ncmd = "/usr/bin/sleep"\nhang = true\n')
def test_hang_ends_with_the_clients_deadline(
    fake_agent: FakeAgent, stub: pb_grpc.TacacsAgentStub
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        authorize(stub, "/usr/bin/sleep", "100", timeout=0.5)
    assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert [(r.cmd, r.cmd_args) for r in fake_agent.requests] == [("/usr/bin/sleep", ("100",))]
    # The agent still answers other requests (the built-in default here).
    assert authorize(stub, "/usr/bin/ls").response.server_message == "no rule matched"


@pytest.mark.timeout(30)
def test_hung_rpcs_free_their_server_thread_when_the_deadline_passes(
    fake_agent_factory: FakeAgentFactory,
) -> None:
    # Two server threads only: if a hang kept its thread past the client's deadline, the
    # third hang would leave no thread for the final request, which would then time out.
    agent = fake_agent_factory(
        '[[rule]]\ncmd = "/usr/bin/sleep"\nhang = true\n[default]\nstatus = "PASS_ADD"\n',
        max_workers=2,
    )
    with grpc.insecure_channel(agent.endpoint) as chan:
        stub = pb_grpc.TacacsAgentStub(chan)  # type: ignore[no-untyped-call]
        for _ in range(5):
            with pytest.raises(grpc.RpcError) as raised:
                authorize(stub, "/usr/bin/sleep", timeout=0.3)
            assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert authorize(stub, "/usr/bin/ls").response.status == pb.AUTHORIZATION_STATUS_PASS_ADD


@pytest.mark.timeout(20)
def test_a_hang_without_deadline_ends_when_the_agent_stops(
    fake_agent_factory: FakeAgentFactory,
) -> None:
    agent = fake_agent_factory("[default]\nhang = true\n")
    outcome: list[grpc.StatusCode] = []
    with grpc.insecure_channel(agent.endpoint) as chan:
        stub = pb_grpc.TacacsAgentStub(chan)  # type: ignore[no-untyped-call]

        def call_without_deadline() -> None:
            try:
                stub.Authorization(exec_request("/usr/bin/ls"))
            except grpc.RpcError as exc:
                outcome.append(exc.code())

        caller = threading.Thread(target=call_without_deadline)
        caller.start()
        agent.wait_for_requests(1)
        agent.stop()
        caller.join(timeout=10)
    assert not caller.is_alive()
    assert outcome and outcome[0] in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)


@pytest.mark.timeout(20)
@pytest.mark.fake_agent_policy(
    '[[rule]]\ncmd = "/usr/bin/ls"\ndrop = true\n[default]\nstatus = "PASS_ADD"\n'
)
def test_drop_closes_the_connection(fake_agent: FakeAgent, channel: grpc.Channel) -> None:
    stub = pb_grpc.TacacsAgentStub(channel)  # type: ignore[no-untyped-call]
    assert authorize(stub, "/usr/bin/id").response.status == pb.AUTHORIZATION_STATUS_PASS_ADD
    connection_lost = watch_connection_loss(channel)

    with pytest.raises(grpc.RpcError) as raised:
        authorize(stub, "/usr/bin/ls")
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    # A status sent by the server would carry the agent's own text; a closed socket does not.
    assert "fake agent" not in (raised.value.details() or "")
    # The channel saw its connection go: it left READY without being asked to.
    assert connection_lost.wait(timeout=5)
    # Received once: gRPC did not retry the request behind the client's back.
    assert [r.cmd for r in fake_agent.requests] == ["/usr/bin/id", "/usr/bin/ls"]

    # The client reconnects for its next request.
    reply = stub.Authorization(exec_request("/usr/bin/id"), timeout=TIMEOUT_S, wait_for_ready=True)
    assert reply.response.status == pb.AUTHORIZATION_STATUS_PASS_ADD


def watch_connection_loss(channel: grpc.Channel) -> threading.Event:
    """An event set when the connected channel leaves READY; call it while connected."""
    ready = threading.Event()
    lost = threading.Event()

    def watch(state: grpc.ChannelConnectivity) -> None:
        if state is grpc.ChannelConnectivity.READY:
            ready.set()
        elif ready.is_set():
            lost.set()

    channel.subscribe(watch, try_to_connect=False)
    # States arrive on gRPC's own thread: wait until READY has been seen, so that a loss is
    # not mistaken for the state the channel started in.
    assert ready.wait(timeout=5)
    return lost


@pytest.mark.timeout(20)
@pytest.mark.fake_agent_policy(
    '[[rule]]\nuser = "carol"\ndrop = true\n[default]\nstatus = "PASS_ADD"\n'
)
def test_known_limit_drop_on_a_unix_socket_closes_every_connection(fake_agent: FakeAgent) -> None:
    # Known limit (fakeagent/connections.py): gRPC names no peer for a Unix socket connection,
    # so a drop closes all client connections open at that moment, not only the caller's.
    with (
        grpc.insecure_channel(fake_agent.endpoint) as bystander,
        grpc.insecure_channel(fake_agent.endpoint) as dropped,
    ):
        bystander_stub = pb_grpc.TacacsAgentStub(bystander)  # type: ignore[no-untyped-call]
        dropped_stub = pb_grpc.TacacsAgentStub(dropped)  # type: ignore[no-untyped-call]
        assert (
            authorize(bystander_stub, "/usr/bin/id").response.status
            == pb.AUTHORIZATION_STATUS_PASS_ADD
        )
        bystander_lost = watch_connection_loss(bystander)

        with pytest.raises(grpc.RpcError) as raised:
            dropped_stub.Authorization(exec_request("/usr/bin/id", user="carol"), timeout=5)
        assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
        assert bystander_lost.wait(timeout=5)


@pytest.mark.timeout(20)
def test_known_limit_a_hang_without_deadline_ends_at_the_hang_cap(
    fake_agent_factory: FakeAgentFactory,
) -> None:
    # Known limit (fakeagent/policy_backend.py): a hang is not endless when the client set no
    # deadline; it ends after hang_cap_s (300 s by default) so no server thread is pinned.
    agent = fake_agent_factory("[default]\nhang = true\n", hang_cap_s=0.5)
    with grpc.insecure_channel(agent.endpoint) as chan:
        stub = pb_grpc.TacacsAgentStub(chan)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as raised:
            stub.Authorization(exec_request("/usr/bin/ls"))
    assert raised.value.code() is grpc.StatusCode.CANCELLED
    assert raised.value.details() == "fake agent: no reply (hang ended)"


@pytest.mark.timeout(20)
def test_drop_on_tcp_closes_the_connection(fake_agent_factory: FakeAgentFactory) -> None:
    agent = fake_agent_factory("[default]\ndrop = true\n", listen="127.0.0.1:0")
    with grpc.insecure_channel(agent.endpoint) as chan:
        stub = pb_grpc.TacacsAgentStub(chan)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as raised:
            authorize(stub, "/usr/bin/ls")
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "fake agent" not in (raised.value.details() or "")


@pytest.mark.parametrize("rpc", ["authorization", "accounting", "authenticate_pap"])
def test_malformed_unspecified_status(
    fake_agent: FakeAgent, channel: grpc.Channel, rpc: str
) -> None:
    fake_agent.load_policy(
        f'[[rule]]\nrpc = "{rpc}"\nmalformed = "unspecified"\nserver_message = "odd"\n'
    )
    reply = _call(channel, rpc)
    assert reply.WhichOneof("result") == "response"
    assert reply.response.status == 0  # every *_STATUS_UNSPECIFIED is 0
    assert reply.response.server_message == "odd"


@pytest.mark.parametrize("rpc", ["authorization", "accounting", "authenticate_pap"])
def test_malformed_empty_reply(fake_agent: FakeAgent, channel: grpc.Channel, rpc: str) -> None:
    fake_agent.load_policy(f'[[rule]]\nrpc = "{rpc}"\nmalformed = "empty"\n')
    reply = _call(channel, rpc)
    assert reply.WhichOneof("result") is None


def _call(
    channel: grpc.Channel, rpc: str
) -> pb.AuthorizationReply | pb.AccountingReply | pb.PapAuthenticationReply:
    stub = pb_grpc.TacacsAgentStub(channel)  # type: ignore[no-untyped-call]
    if rpc == "authorization":
        reply: pb.AuthorizationReply = stub.Authorization(
            exec_request("/usr/bin/ls"), timeout=TIMEOUT_S
        )
        return reply
    if rpc == "accounting":
        accounting: pb.AccountingReply = stub.Accounting(
            pb.AccountingRequest(user="alice", command="/usr/bin/ls"), timeout=TIMEOUT_S
        )
        return accounting
    pap: pb.PapAuthenticationReply = stub.AuthenticatePap(
        pb.PapAuthenticationRequest(user="alice", password=b"pw"), timeout=TIMEOUT_S
    )
    return pap


# --- recording ----------------------------------------------------------------------------------


def test_requests_are_recorded_with_their_fields(
    fake_agent: FakeAgent, stub: pb_grpc.TacacsAgentStub
) -> None:
    authorize(stub, "")
    authorize(stub, "/usr/bin/rm", "-rf", "/srv/data")
    stub.Accounting(
        pb.AccountingRequest(
            user="alice",
            port="pts/3",
            remote_address="192.0.2.7",
            command="/usr/bin/ls",
            command_arguments=["-l", "/srv"],
        ),
        timeout=TIMEOUT_S,
    )

    session, rm, accounting = fake_agent.requests
    assert (session.rpc, session.cmd, session.cmd_args) == ("authorization", "", ())
    assert rm.rpc == "authorization"
    assert (rm.user, rm.port, rm.remote_address) == ("alice", "pts/3", "192.0.2.7")
    assert (rm.privilege_level, rm.authentication_context) == (1, "TACACS_PAP")
    assert rm.args == (
        ("service", "shell", True),
        ("cmd", "/usr/bin/rm", True),
        ("cmd-arg", "-rf", True),
        ("cmd-arg", "/srv/data", True),
    )
    assert (rm.cmd, rm.cmd_args, rm.arg("service")) == (
        "/usr/bin/rm",
        ("-rf", "/srv/data"),
        "shell",
    )
    assert accounting.rpc == "accounting"
    assert (accounting.command, accounting.command_arguments) == ("/usr/bin/ls", ("-l", "/srv"))
    assert (accounting.cmd, accounting.cmd_args) == ("/usr/bin/ls", ("-l", "/srv"))
    assert accounting.privilege_level is None
    assert session.time <= rm.time <= accounting.time

    fake_agent.reset()
    assert fake_agent.requests == []


def test_load_policy_from_a_path_and_from_text(
    fake_agent: FakeAgent, stub: pb_grpc.TacacsAgentStub, write_policy: WritePolicy
) -> None:
    assert authorize(stub, "/usr/bin/ls").response.status == pb.AUTHORIZATION_STATUS_PASS_ADD
    fake_agent.load_policy(write_policy('[[rule]]\nstatus = "FOLLOW"\n'))
    assert authorize(stub, "/usr/bin/ls").response.status == pb.AUTHORIZATION_STATUS_FOLLOW
    fake_agent.load_policy('[default]\nstatus = "PASS_REPL"\n')
    assert authorize(stub, "/usr/bin/ls").response.status == pb.AUTHORIZATION_STATUS_PASS_REPL


def test_journal_has_one_json_line_per_request_like_get_requests(
    fake_agent_factory: FakeAgentFactory, agent_socket_dir: Path
) -> None:
    journal = agent_socket_dir / "journal.jsonl"
    agent = fake_agent_factory(EXAMPLE_POLICY, journal=journal)
    with grpc.insecure_channel(agent.endpoint) as chan:
        stub = pb_grpc.TacacsAgentStub(chan)  # type: ignore[no-untyped-call]
        authorize(stub, "")
        authorize(stub, "/usr/bin/cat", "/etc/hostname")
    # Flushed per line: readable while the agent still runs.
    lines = journal.read_text().splitlines()
    with ControlClient(agent.endpoint) as control:
        served = [r.to_json() for r in control.requests()]
    assert lines == served
    second = json.loads(lines[1])
    assert second["rpc"] == "authorization"
    assert second["cmd"] == "/usr/bin/cat"
    assert second["cmd_args"] == ["/etc/hostname"]
    assert second["args"][1] == ["cmd", "/usr/bin/cat", True]
    assert isinstance(second["time"], float)

    # Reset forgets the in-memory record, not the journal.
    agent.reset()
    assert len(journal.read_text().splitlines()) == 2


# --- health and control services -----------------------------------------------------------------


@pytest.mark.parametrize("service", ["", "tacacsrs.agent.v1.TacacsAgent"])
def test_health_service_reports_serving(channel: grpc.Channel, service: str) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT_S)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_control_service_load_policy_get_requests_reset(
    fake_agent: FakeAgent, stub: pb_grpc.TacacsAgentStub
) -> None:
    with ControlClient(fake_agent.endpoint) as control:
        control.load_policy('[[rule]]\nuser = "alice"\nstatus = "PASS_REPL"\n')
        assert authorize(stub, "/usr/bin/id").response.status == pb.AUTHORIZATION_STATUS_PASS_REPL

        (recorded,) = control.requests()
        assert (recorded.rpc, recorded.user, recorded.cmd) == (
            "authorization",
            "alice",
            "/usr/bin/id",
        )
        assert recorded == fake_agent.requests[0]

        control.reset()
        assert control.requests() == []
        assert fake_agent.requests == []


def test_control_service_refuses_a_bad_policy_and_keeps_the_old_one(
    fake_agent: FakeAgent, stub: pb_grpc.TacacsAgentStub
) -> None:
    with ControlClient(fake_agent.endpoint) as control, pytest.raises(grpc.RpcError) as raised:
        control.load_policy('[[rule]]\nname = "typo"\nstatus = "PASS_ADDD"\n')
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == (
        "<LoadPolicy>: rule 1 ('typo'): unknown status 'PASS_ADDD' (known: ERROR, FAIL, "
        "FOLLOW, PASS, PASS_ADD, PASS_REPL, SUCCESS)"
    )
    reply = authorize(stub, "/usr/bin/whoami")
    assert reply.response.server_message == "whoami is not allowed on this device"


# --- the Unix socket ----------------------------------------------------------------------------


def test_socket_mode_is_0660_and_removed_at_stop(fake_agent_factory: FakeAgentFactory) -> None:
    agent = fake_agent_factory(None)
    path = agent.endpoint.removeprefix("unix:")
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    agent.stop()
    assert not os.path.exists(path)


def test_parent_directory_is_created(
    fake_agent_factory: FakeAgentFactory, agent_socket_dir: Path
) -> None:
    fake_agent_factory(None, listen=f"unix:{agent_socket_dir}/run/tacacs/a.sock")
    assert (agent_socket_dir / "run" / "tacacs" / "a.sock").is_socket()


def test_stale_socket_is_replaced(
    fake_agent_factory: FakeAgentFactory, agent_socket_dir: Path
) -> None:
    path = agent_socket_dir / "stale.sock"
    with socket.socket(socket.AF_UNIX) as left_behind:
        left_behind.bind(str(path))  # closed without unlink: what a killed agent leaves
    agent = fake_agent_factory(EXAMPLE_POLICY, listen=f"unix:{path}")
    with grpc.insecure_channel(agent.endpoint) as chan:
        stub = pb_grpc.TacacsAgentStub(chan)  # type: ignore[no-untyped-call]
        assert authorize(stub, "").response.status == pb.AUTHORIZATION_STATUS_PASS_ADD


def test_a_live_socket_is_not_taken_over(
    fake_agent_factory: FakeAgentFactory, agent_socket_dir: Path
) -> None:
    first = fake_agent_factory(None)
    second = FakeAgent(listen=first.endpoint)
    with pytest.raises(StartError) as raised:
        second.start()
    second.stop()
    assert str(raised.value) == (
        f"cannot listen on {first.endpoint}: another process is listening on it"
    )


def test_a_file_that_is_not_a_socket_is_left_alone(agent_socket_dir: Path) -> None:
    path = agent_socket_dir / "precious.txt"
    path.write_text("keep me")
    agent = FakeAgent(listen=f"unix:{path}")
    with pytest.raises(StartError, match="it exists and is not a socket"):
        agent.start()
    agent.stop()
    assert path.read_text() == "keep me"


@pytest.mark.parametrize(
    "listen", ["0.0.0.0:0", "192.0.2.1:50051", "[::]:0", "localhost:0", "example.org:1"]
)
def test_non_loopback_addresses_are_refused_in_process(listen: str) -> None:
    with pytest.raises(ListenError, match=r"^--listen "):
        FakeAgent(listen=listen)


# --- the CLI -------------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fakeagent", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture
def cli_agent() -> Iterator[list[subprocess.Popen[str]]]:
    """Agents started as subprocesses; each is sent SIGTERM and reaped after the test."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def start_cli(
    started: list[subprocess.Popen[str]], *args: str
) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "fakeagent", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started.append(process)
    assert process.stdout is not None
    return process, process.stdout.readline().rstrip("\n")


@pytest.mark.timeout(30)
def test_cli_prints_the_tcp_endpoint_first_and_stops_on_sigterm(
    cli_agent: list[subprocess.Popen[str]],
) -> None:
    process, endpoint = start_cli(
        cli_agent, "--listen", "127.0.0.1:0", "--policy", str(EXAMPLE_POLICY)
    )
    assert re.fullmatch(r"127\.0\.0\.1:\d+", endpoint), endpoint
    assert endpoint != "127.0.0.1:0"
    with grpc.insecure_channel(endpoint) as chan:
        stub = pb_grpc.TacacsAgentStub(chan)  # type: ignore[no-untyped-call]
        assert authorize(stub, "").response.server_message == "welcome to the demo"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0


@pytest.mark.timeout(30)
def test_cli_on_a_unix_socket_with_journal(
    cli_agent: list[subprocess.Popen[str]], agent_socket_dir: Path
) -> None:
    path = agent_socket_dir / "sub" / "agent.sock"
    journal = agent_socket_dir / "journal.jsonl"
    process, endpoint = start_cli(
        cli_agent,
        "--listen",
        f"unix:{path}",
        "--policy",
        str(EXAMPLE_POLICY),
        "--journal",
        str(journal),
    )
    assert endpoint == f"unix:{path}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    with grpc.insecure_channel(endpoint) as chan:
        stub = pb_grpc.TacacsAgentStub(chan)  # type: ignore[no-untyped-call]
        assert authorize(stub, "/usr/bin/whoami").response.status == pb.AUTHORIZATION_STATUS_FAIL
    with ControlClient(endpoint) as control:
        (recorded,) = control.requests()
    assert recorded.cmd == "/usr/bin/whoami"
    assert [json.loads(line)["cmd"] for line in journal.read_text().splitlines()] == [
        "/usr/bin/whoami"
    ]

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 0
    assert not path.exists()
    assert process.stderr is not None
    assert "Traceback" not in process.stderr.read()


def test_cli_refuses_a_non_loopback_address() -> None:
    result = run_cli("--listen", "0.0.0.0:50051", "--policy", str(EXAMPLE_POLICY))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "fake-tacacsrs-agentd: --listen '0.0.0.0:50051': 0.0.0.0 is not a loopback address; "
        "the fake agent only listens on 127.0.0.0/8, ::1 or a Unix socket\n"
    )


def test_cli_bad_policy_file_is_one_line_naming_file_and_rule(write_policy: WritePolicy) -> None:
    policy = write_policy(
        '[[rule]]\ncmd = "/usr/bin/ls"\nstatus = "PASS_ADD"\n'
        '[[rule]]\nname = "deny rm"\ncmd = "/usr/bin/rm"\nstatus = "FAIL"\nmesage = "no"\n'
    )
    result = run_cli("--listen", "127.0.0.1:0", "--policy", str(policy))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(
        f"fake-tacacsrs-agentd: {policy}: rule 2 ('deny rm'): unknown key 'mesage' (known: "
    )


def test_cli_missing_policy_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    result = run_cli("--listen", "127.0.0.1:0", "--policy", str(missing))
    assert result.returncode == 2
    assert result.stderr == (
        f"fake-tacacsrs-agentd: {missing}: cannot read policy: No such file or directory\n"
    )


def test_cli_port_in_use_is_a_runtime_error(fake_agent_factory: FakeAgentFactory) -> None:
    taken = fake_agent_factory(None, listen="127.0.0.1:0")
    result = run_cli("--listen", taken.endpoint, "--policy", str(EXAMPLE_POLICY))
    assert result.returncode == 1
    assert result.stderr == (
        f"fake-tacacsrs-agentd: cannot listen on {taken.endpoint}: Address already in use\n"
    )


@pytest.mark.parametrize("workers", ["0", "-3", "many"])
def test_cli_max_workers_must_be_a_positive_number(workers: str) -> None:
    result = run_cli(
        "--listen", "127.0.0.1:0", "--policy", str(EXAMPLE_POLICY), "--max-workers", workers
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"fake-tacacsrs-agentd: error: argument --max-workers: {workers!r} is not a positive "
        "whole number\n"
    )
