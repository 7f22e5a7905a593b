"""The relay backend against TACACS+ server doubles on 127.0.0.1: fields, statuses, failover."""

from __future__ import annotations

import logging
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakeagent.backend import NoReply, rpc_ended
from fakeagent.relay import RelayBackend
from session_wrapper.rpc import tacacsrs_agent_pb2 as pb

# tests/ is not a package and pytest puts only this file's directory on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tacacs_double as tac

SECRET = b"relay-test-secret-7c1f"
PASSWORD = b"pap-password-93be"


class FakeClock:
    """A monotonic clock the test moves by hand, so hold-down tests do not sleep."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def relay(
    *servers: tuple[str, int],
    timeout_s: float = 2.0,
    hold_down_s: float = 30.0,
    clock: FakeClock | None = None,
    secret: bytes = SECRET,
) -> RelayBackend:
    return RelayBackend(
        list(servers),
        secret,
        connect_timeout_s=timeout_s,
        timeout_s=timeout_s,
        hold_down_s=hold_down_s,
        clock=clock or time.monotonic,
    )


def refused_port() -> tuple[str, int]:
    """A 127.0.0.1 port with no listener: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        host, port = sock.getsockname()[:2]
    return str(host), int(port)


def authorization_request(
    context: pb.AuthorizationAuthenticationContext = (
        pb.AUTHORIZATION_AUTHENTICATION_CONTEXT_TACACS_ASCII
    ),
) -> pb.AuthorizationRequest:
    return pb.AuthorizationRequest(
        user="alice",
        port="ssh:pts/3",
        remote_address="192.0.2.7",
        privilege_level=1,
        authentication_context=context,
        args=[
            pb.AuthorizationArg(name="service", mandatory=True, value="shell"),
            pb.AuthorizationArg(name="cmd", mandatory=True, value="/usr/bin/ip"),
            pb.AuthorizationArg(name="cmd-arg", mandatory=True, value="route"),
            pb.AuthorizationArg(name="cmd-arg", mandatory=False, value="show"),
        ],
    )


@pytest.fixture
def server() -> Iterator[tac.TacacsDouble]:
    with tac.TacacsDouble(SECRET) as double:
        yield double


@pytest.fixture
def second() -> Iterator[tac.TacacsDouble]:
    with tac.TacacsDouble(SECRET) as double:
        yield double


def test_authorization_request_fields_reach_the_server(server: tac.TacacsDouble) -> None:
    relay(server.upstream).authorization(authorization_request())

    [got] = server.received
    assert got.decoded
    assert got.packet_type == tac.AUTHOR
    assert got.version == 0xC0
    assert (got.user, got.port, got.rem_addr, got.priv_lvl) == (
        "alice",
        "ssh:pts/3",
        "192.0.2.7",
        1,
    )
    # TACACS_ASCII: authen_method TACACSPLUS, authen_type ASCII, authen_service LOGIN.
    assert (got.authen_method, got.authen_type, got.authen_service) == (0x06, 0x01, 0x01)
    assert got.args == ("service=shell", "cmd=/usr/bin/ip", "cmd-arg=route", "cmd-arg*show")


@pytest.mark.parametrize(
    ("context", "method", "authen_type"),
    [
        (pb.AUTHORIZATION_AUTHENTICATION_CONTEXT_TACACS_PAP, 0x06, 0x02),
        (pb.AUTHORIZATION_AUTHENTICATION_CONTEXT_UNAUTHENTICATED, 0x01, 0x00),
    ],
)
def test_authentication_context_reaches_the_server(
    server: tac.TacacsDouble,
    context: pb.AuthorizationAuthenticationContext,
    method: int,
    authen_type: int,
) -> None:
    relay(server.upstream).authorization(authorization_request(context))

    [got] = server.received
    assert (got.authen_method, got.authen_type, got.authen_service) == (method, authen_type, 0x01)


@pytest.mark.parametrize(
    ("wire_status", "status"),
    [
        (tac.PASS_ADD, pb.AUTHORIZATION_STATUS_PASS_ADD),
        (tac.PASS_REPL, pb.AUTHORIZATION_STATUS_PASS_REPL),
        (tac.FAIL, pb.AUTHORIZATION_STATUS_FAIL),
        (tac.ERROR, pb.AUTHORIZATION_STATUS_ERROR),
        (tac.FOLLOW, pb.AUTHORIZATION_STATUS_FOLLOW),
    ],
)
def test_authorization_status_comes_back_unchanged(
    server: tac.TacacsDouble, wire_status: int, status: int
) -> None:
    server.push(tac.Reply(wire_status, server_msg="said the server", data="some data"))

    reply = relay(server.upstream).authorization(authorization_request())

    assert reply.WhichOneof("result") == "response"
    assert reply.response.status == status
    assert reply.response.server == server.address
    assert reply.response.server_message == "said the server"
    assert reply.response.data == "some data"


def test_reply_args_round_trip_mandatory_and_optional(server: tac.TacacsDouble) -> None:
    server.push(
        tac.Reply(tac.PASS_REPL, args=("priv-lvl=15", "idletime*30", "cmd-arg=a=b*c", "acl="))
    )

    reply = relay(server.upstream).authorization(authorization_request())

    got = [(a.name, a.mandatory, a.value) for a in reply.response.args]
    assert got == [
        ("priv-lvl", True, "15"),
        ("idletime", False, "30"),
        ("cmd-arg", True, "a=b*c"),
        ("acl", True, ""),
    ]


def test_a_pass_with_a_low_priv_lvl_arg_stays_a_pass(server: tac.TacacsDouble) -> None:
    # tacacs_plus's TACACSClient.authorize would turn this into FAIL; the relay must not.
    server.push(tac.Reply(tac.PASS_ADD, args=("priv-lvl=1",)))
    req = authorization_request()
    req.privilege_level = 15

    reply = relay(server.upstream).authorization(req)

    assert reply.response.status == pb.AUTHORIZATION_STATUS_PASS_ADD


def test_accounting_record_fields_and_flags(server: tac.TacacsDouble) -> None:
    server.push(tac.Reply(tac.ACCT_SUCCESS, server_msg="logged"))
    before = int(time.time())

    reply = relay(server.upstream).accounting(
        pb.AccountingRequest(
            user="alice",
            port="ssh:pts/3",
            remote_address="192.0.2.7",
            command="/usr/bin/ip",
            command_arguments=["route", "show"],
        )
    )

    after = int(time.time())
    assert reply.response.status == pb.ACCOUNTING_STATUS_SUCCESS
    assert reply.response.server == server.address
    assert reply.response.server_message == "logged"
    [got] = server.received
    assert got.packet_type == tac.ACCT
    # RFC 8907 section 7.2: START|STOP (0x06) is INVALID, so the record is STOP (0x04) alone.
    assert got.acct_flags == 0x04
    assert (got.user, got.port, got.rem_addr) == ("alice", "ssh:pts/3", "192.0.2.7")
    task_id, start_time, *rest = got.args
    assert task_id.startswith("task_id=")
    assert len(task_id) > len("task_id=")
    assert start_time.startswith("start_time=")
    assert before <= int(start_time.removeprefix("start_time=")) <= after
    assert rest == ["service=shell", "cmd=/usr/bin/ip", "cmd-arg=route", "cmd-arg=show"]


def test_each_accounting_record_has_its_own_task_id(server: tac.TacacsDouble) -> None:
    backend = relay(server.upstream)
    for _ in range(3):
        backend.accounting(pb.AccountingRequest(user="alice", command="/bin/true"))

    task_ids = {got.args[0] for got in server.received}
    assert len(task_ids) == 3


def test_accounting_error_status_comes_back(server: tac.TacacsDouble) -> None:
    server.push(tac.Reply(tac.ACCT_ERROR, server_msg="disk full"))

    reply = relay(server.upstream).accounting(pb.AccountingRequest(user="alice", command="/x"))

    assert reply.response.status == pb.ACCOUNTING_STATUS_ERROR
    assert reply.response.server_message == "disk full"


@pytest.mark.parametrize(
    ("wire_status", "status"),
    [
        (tac.AUTHEN_PASS, pb.AUTHENTICATION_STATUS_PASS),
        (tac.AUTHEN_FAIL, pb.AUTHENTICATION_STATUS_FAIL),
    ],
)
def test_pap_login(server: tac.TacacsDouble, wire_status: int, status: int) -> None:
    server.push(tac.Reply(wire_status, server_msg="welcome"))

    reply = relay(server.upstream).authenticate_pap(
        pb.PapAuthenticationRequest(
            user="alice",
            password=PASSWORD,
            port="ssh:pts/3",
            remote_address="192.0.2.7",
            privilege_level=1,
        )
    )

    assert reply.response.status == status
    assert reply.response.server == server.address
    assert reply.response.server_message == "welcome"
    [got] = server.received
    # RFC 8907 section 5.4.2.2: PAP uses minor version 1, action LOGIN, authen_type PAP.
    assert got.version == 0xC1
    assert (got.authen_action, got.authen_type, got.authen_service) == (0x01, 0x02, 0x01)
    assert (got.user, got.port, got.rem_addr, got.priv_lvl) == (
        "alice",
        "ssh:pts/3",
        "192.0.2.7",
        1,
    )
    assert got.authen_data == PASSWORD


def test_pap_reply_the_agent_cannot_carry_is_a_final_error(
    server: tac.TacacsDouble, second: tac.TacacsDouble
) -> None:
    server.push(tac.Reply(tac.AUTHEN_GETPASS))

    reply = relay(server.upstream, second.upstream).authenticate_pap(
        pb.PapAuthenticationRequest(user="alice", password=PASSWORD)
    )

    assert reply.error.retriable is False
    assert "GETPASS" in reply.error.message
    assert second.connections == 0


def test_failover_to_the_second_server_when_the_first_refuses(
    second: tac.TacacsDouble,
) -> None:
    reply = relay(refused_port(), second.upstream).authorization(authorization_request())

    assert reply.response.status == pb.AUTHORIZATION_STATUS_PASS_ADD
    assert reply.response.server == second.address


def test_failover_when_the_first_closes_without_answering(
    server: tac.TacacsDouble, second: tac.TacacsDouble
) -> None:
    server.push(tac.Close())

    reply = relay(server.upstream, second.upstream).authorization(authorization_request())

    assert reply.response.server == second.address
    assert len(server.received) == 1


@pytest.mark.timeout(15)
def test_failover_when_the_first_never_answers(
    server: tac.TacacsDouble, second: tac.TacacsDouble
) -> None:
    server.push(tac.Hang())

    reply = relay(server.upstream, second.upstream, timeout_s=0.3).authorization(
        authorization_request()
    )

    assert reply.response.server == second.address


def test_a_slow_answer_within_the_timeout_is_taken(server: tac.TacacsDouble) -> None:
    server.push(tac.Delay(0.1, tac.Reply(tac.FAIL)))

    reply = relay(server.upstream, timeout_s=5.0).authorization(authorization_request())

    assert reply.response.status == pb.AUTHORIZATION_STATUS_FAIL


def test_hold_down_skips_a_dead_server_until_it_expires(second: tac.TacacsDouble) -> None:
    clock = FakeClock()
    with tac.TacacsDouble(SECRET, default=tac.Close()) as dead:
        backend = relay(dead.upstream, second.upstream, hold_down_s=30, clock=clock)

        backend.authorization(authorization_request())
        assert dead.connections == 1

        clock.now += 29
        reply = backend.authorization(authorization_request())
        assert reply.response.server == second.address
        assert dead.connections == 1

        clock.now += 2
        backend.authorization(authorization_request())
        assert dead.connections == 2
    assert len(second.received) == 3


def test_every_server_held_down_is_still_tried(server: tac.TacacsDouble) -> None:
    clock = FakeClock()
    server.push(tac.Close())
    backend = relay(server.upstream, hold_down_s=30, clock=clock)

    first = backend.authorization(authorization_request())
    assert first.WhichOneof("result") == "error"

    second_try = backend.authorization(authorization_request())
    assert second_try.response.status == pb.AUTHORIZATION_STATUS_PASS_ADD
    assert server.connections == 2


@pytest.mark.parametrize("wire_status", [tac.FAIL, tac.ERROR])
def test_an_answer_is_authoritative_the_next_server_is_not_asked(
    server: tac.TacacsDouble, second: tac.TacacsDouble, wire_status: int
) -> None:
    server.push(tac.Reply(wire_status, server_msg="no"))

    reply = relay(server.upstream, second.upstream).authorization(authorization_request())

    assert reply.response.status == wire_status
    assert reply.response.server == server.address
    assert second.connections == 0


def test_all_servers_down_is_a_retriable_error_naming_them() -> None:
    first, other = refused_port(), refused_port()

    reply = relay(first, other).authorization(authorization_request())

    assert reply.WhichOneof("result") == "error"
    assert reply.error.retriable is True
    for host, port in (first, other):
        assert f"{host}:{port}" in reply.error.message
    assert "cannot connect" in reply.error.message


@pytest.mark.parametrize("rpc", ["authorization", "accounting", "authenticate_pap"])
def test_wrong_secret_is_a_clear_error(rpc: str) -> None:
    with tac.TacacsDouble(b"the-server-has-another-key") as server:
        backend = relay(server.upstream)
        request = {
            "authorization": authorization_request(),
            "accounting": pb.AccountingRequest(user="alice", command="/bin/true"),
            "authenticate_pap": pb.PapAuthenticationRequest(user="alice", password=PASSWORD),
        }[rpc]

        reply = getattr(backend, rpc)(request)

    assert reply.WhichOneof("result") == "error"
    assert f"bad secret or garbled reply from {server.address}" in reply.error.message
    assert reply.error.retriable is True
    # The double could not read the request either: the keys really differ.
    assert [got.decoded for got in server.received] == [False]


def test_a_non_tacacs_answer_is_a_garbled_reply(server: tac.TacacsDouble) -> None:
    server.push(tac.Garbage())

    reply = relay(server.upstream).authorization(authorization_request())

    assert f"bad secret or garbled reply from {server.address}" in reply.error.message


@pytest.mark.parametrize(
    "answer",
    [tac.Reply(0x03), tac.Reply(tac.PASS_ADD, args=("no-separator",))],
    ids=["unknown-status", "arg-without-separator"],
)
def test_a_reply_outside_rfc_8907_is_garbled_and_fails_over(
    server: tac.TacacsDouble, second: tac.TacacsDouble, answer: tac.Reply
) -> None:
    server.push(answer)

    reply = relay(server.upstream, second.upstream).authorization(authorization_request())

    assert reply.response.server == second.address


@pytest.mark.parametrize(
    "body",
    [
        struct.pack("!BBHH", tac.PASS_ADD, 0, 10, 0) + b"abc",
        struct.pack("!BBHH", tac.PASS_ADD, 0, 3, 0) + b"abc" + b"trailing",
        struct.pack("!BB", tac.PASS_ADD, 0),
    ],
    ids=["fields-longer-than-body", "body-longer-than-fields", "body-shorter-than-header"],
)
def test_a_reply_whose_lengths_do_not_add_up_is_garbled(
    server: tac.TacacsDouble, body: bytes
) -> None:
    # RFC 8907 section 4.5: such a packet is discarded, not read as a truncated PASS.
    server.push(tac.RawBody(body))

    reply = relay(server.upstream).authorization(authorization_request())

    assert f"bad secret or garbled reply from {server.address}" in reply.error.message


@pytest.mark.timeout(15)
def test_a_server_that_never_answers_times_out(server: tac.TacacsDouble) -> None:
    server.push(tac.Hang())

    reply = relay(server.upstream, timeout_s=0.3).authorization(authorization_request())

    assert reply.error.retriable is True
    assert f"no reply from {server.address} within 0.3 s" in reply.error.message


def test_a_request_rfc_8907_cannot_carry_is_not_sent(server: tac.TacacsDouble) -> None:
    req = authorization_request()
    req.args.append(pb.AuthorizationArg(name="cmd-arg", mandatory=True, value="x" * 300))

    reply = relay(server.upstream).authorization(req)

    assert reply.error.retriable is False
    assert "over RFC 8907's limit" in reply.error.message
    assert server.connections == 0


@pytest.mark.timeout(20)
def test_the_secret_is_never_in_logs_errors_or_repr(
    server: tac.TacacsDouble, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_text = SECRET.decode()
    errors: list[str] = []
    with tac.TacacsDouble(b"another-key") as wrong:
        backend = relay(server.upstream, wrong.upstream, refused_port(), timeout_s=0.3)
        server.push(tac.Close(), tac.Hang(), tac.Garbage())
        for _ in range(3):
            errors.append(backend.authorization(authorization_request()).error.message)
        server.push(tac.Reply(tac.AUTHEN_PASS))
        backend.authenticate_pap(pb.PapAuthenticationRequest(user="alice", password=PASSWORD))
        backend.accounting(pb.AccountingRequest(user="alice", command="/bin/true"))

    assert all(errors), "every one of the three requests should have failed"
    assert "bad secret or garbled reply" in " ".join(errors)
    for text in [*errors, caplog.text, repr(backend), str(backend)]:
        assert secret_text not in text
        assert SECRET.hex() not in text
    assert PASSWORD.decode() not in caplog.text


def test_no_server_is_asked_once_the_rpc_has_ended(
    server: tac.TacacsDouble, second: tac.TacacsDouble
) -> None:
    ended = threading.Event()
    ended.set()
    token = rpc_ended.set(ended)
    try:
        with pytest.raises(NoReply, match="RPC ended"):
            relay(server.upstream, second.upstream).authorization(authorization_request())
    finally:
        rpc_ended.reset(token)

    assert server.connections == second.connections == 0
