"""The accounting queue with a scripted send function: order, retry, overflow and the flush.

No agent and no network: each test hands the queue a send function that answers from a script
and notes what it was given, and reads the audit lines the queue wrote.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator

import grpc
import pytest

from session_wrapper import audit
from session_wrapper.accounting import (
    AccountingQueue,
    Backoff,
    Outcome,
    SendResult,
    agent_sender,
    exec_record,
    session_start_record,
)
from session_wrapper.agent_client import AccountingRecord
from session_wrapper.decision import (
    AgentAnswer,
    AgentUnavailable,
    AuthorizationStatus,
    ExecRequest,
    Identity,
    Outage,
    Verdict,
)
from session_wrapper.logsetup import AUDIT_LOGGER
from session_wrapper.rpc import tacacsrs_agent_pb2 as pb

IDENTITY = Identity("alice", "pts/3", "192.0.2.7", 1)
QUICK = Backoff(initial_s=0.001, max_s=0.004)

DELIVERED = SendResult(Outcome.DELIVERED)
DOWN = SendResult(Outcome.RETRIABLE, "gRPC UNAVAILABLE: connection refused")
REFUSED = SendResult(Outcome.FAILED, "service error: record rejected")


def record(n: int) -> AccountingRecord:
    return AccountingRecord("alice", "pts/3", "192.0.2.7", "/usr/bin/echo", (str(n),))


class ScriptedSend:
    """Answers from ``script`` in order, then with ``then``; keeps every record it was given.

    With ``gate``, every call first waits for the gate to open.
    """

    def __init__(
        self,
        script: Iterable[SendResult] = (),
        then: SendResult = DELIVERED,
        gate: threading.Event | None = None,
    ) -> None:
        self._script: Iterator[SendResult] = iter(script)
        self._then = then
        self._gate = gate
        self.sent: list[AccountingRecord] = []
        self.lock = threading.Lock()

    def __call__(self, rec: AccountingRecord) -> SendResult:
        if self._gate is not None:
            self._gate.wait()
        with self.lock:
            self.sent.append(rec)
            return next(self._script, self._then)


@pytest.fixture
def audit_lines(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger=AUDIT_LOGGER)
    return caplog


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"event={name} ")]


@pytest.mark.timeout(10)
def test_records_are_delivered_once_each_in_order(audit_lines: pytest.LogCaptureFixture) -> None:
    send = ScriptedSend()
    queue = AccountingQueue(send, backoff=QUICK)
    queue.start()
    for n in range(50):
        queue.submit(record(n))

    summary = queue.close(deadline_s=5)

    assert send.sent == [record(n) for n in range(50)]
    assert (summary.queued, summary.delivered, summary.failed, summary.overflowed) == (
        50,
        50,
        0,
        0,
    )
    assert events(audit_lines, "accounting_failure") == []
    assert events(audit_lines, "accounting_summary") == [
        "event=accounting_summary queued=50 delivered=50 failed=0 overflowed=0"
    ]


@pytest.mark.timeout(10)
def test_two_failures_then_recovery_keeps_order(audit_lines: pytest.LogCaptureFixture) -> None:
    send = ScriptedSend([DOWN, DOWN])
    queue = AccountingQueue(send, backoff=QUICK)
    for n in range(5):
        queue.submit(record(n))
    queue.start()

    summary = queue.close(deadline_s=5)

    assert send.sent == [record(0), record(0), record(0), *(record(n) for n in range(1, 5))]
    assert summary.delivered == 5
    assert events(audit_lines, "accounting_failure") == []
    assert events(audit_lines, "accounting_outage") == [
        'event=accounting_outage detail="gRPC UNAVAILABLE: connection refused"'
    ]
    assert events(audit_lines, "accounting_recovery") == [
        "event=accounting_recovery failed_attempts=2"
    ]


@pytest.mark.timeout(10)
def test_a_refused_record_is_logged_and_the_rest_still_delivered(
    audit_lines: pytest.LogCaptureFixture,
) -> None:
    send = ScriptedSend([DELIVERED, REFUSED])
    queue = AccountingQueue(send, backoff=QUICK)
    queue.start()
    for n in range(4):
        queue.submit(record(n))

    summary = queue.close(deadline_s=5)

    assert send.sent == [record(n) for n in range(4)]
    assert (summary.delivered, summary.failed) == (3, 1)
    assert events(audit_lines, "accounting_failure") == [
        "event=accounting_failure rem_addr=192.0.2.7 port=pts/3 command=/usr/bin/echo "
        'command_arguments=1 argc=1 reason="service error: record rejected"'
    ]


@pytest.mark.timeout(10)
def test_agent_down_for_the_whole_session_logs_every_record(
    audit_lines: pytest.LogCaptureFixture,
) -> None:
    send = ScriptedSend(then=DOWN)
    queue = AccountingQueue(send, backoff=QUICK, flush_attempts=3)
    queue.start()
    for n in range(6):
        queue.submit(record(n))

    summary = queue.close(deadline_s=30)

    failures = events(audit_lines, "accounting_failure")
    assert [line.split(" command_arguments=")[1].split(" ")[0] for line in failures] == [
        str(n) for n in range(6)
    ]
    assert all("not delivered by the end of the session" in line for line in failures)
    assert all("connection refused" in line for line in failures)
    assert (summary.delivered, summary.failed) == (0, 6)
    # Only the oldest record is ever tried: order is kept even while the agent is down.
    assert set(send.sent) == {record(0)}
    assert len(events(audit_lines, "accounting_outage")) == 1


@pytest.mark.timeout(10)
def test_flush_deadline_ends_a_send_that_never_returns(
    audit_lines: pytest.LogCaptureFixture,
) -> None:
    gate = threading.Event()
    send = ScriptedSend(gate=gate)
    queue = AccountingQueue(send, backoff=QUICK)
    queue.start()
    for n in range(3):
        queue.submit(record(n))

    summary = queue.close(deadline_s=0.2)
    gate.set()

    assert (summary.delivered, summary.failed) == (0, 3)
    assert len(events(audit_lines, "accounting_failure")) == 3


@pytest.mark.timeout(10)
def test_full_queue_is_logged_once_and_nothing_is_lost(
    audit_lines: pytest.LogCaptureFixture,
) -> None:
    gate = threading.Event()
    send = ScriptedSend(gate=gate)
    queue = AccountingQueue(send, capacity=3, backoff=QUICK)
    queue.start()
    for n in range(7):
        queue.submit(record(n))
    gate.set()

    summary = queue.close(deadline_s=5)

    assert send.sent == [record(0), record(1), record(2)]
    assert (summary.queued, summary.delivered, summary.failed, summary.overflowed) == (3, 3, 4, 4)
    full = events(audit_lines, "accounting_queue_full")
    assert full == ["event=accounting_queue_full capacity=3 waiting=3 queued=3 delivered=0"]
    failures = events(audit_lines, "accounting_failure")
    assert [line.split(" command_arguments=")[1].split(" ")[0] for line in failures] == [
        "3",
        "4",
        "5",
        "6",
    ]
    assert all('reason="queue full (3 records waiting)"' in line for line in failures)


@pytest.mark.timeout(10)
def test_record_after_close_goes_to_the_audit_log(audit_lines: pytest.LogCaptureFixture) -> None:
    send = ScriptedSend()
    queue = AccountingQueue(send, backoff=QUICK)
    queue.start()
    queue.close(deadline_s=5)

    queue.submit(record(9))

    assert send.sent == []
    assert "closed" in events(audit_lines, "accounting_failure")[0]


def test_backoff_doubles_up_to_its_maximum() -> None:
    backoff = Backoff(initial_s=0.1, max_s=1.0)
    assert [backoff.delay_s(n) for n in range(1, 7)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    )
    assert backoff.delay_s(10_000) == 1.0


def test_session_start_record_of_a_non_interactive_login() -> None:
    rec = session_start_record(
        IDENTITY, ("/bin/bash", "-c", "show run"), {"SSH_ORIGINAL_COMMAND": "show run"}
    )
    assert rec == AccountingRecord("alice", "pts/3", "192.0.2.7", "", ("show run",))


def test_session_start_record_of_an_interactive_login() -> None:
    rec = session_start_record(IDENTITY, ("/bin/bash", "-l"), {})
    assert rec == AccountingRecord("alice", "pts/3", "192.0.2.7", "", ("/bin/bash", "-l"))


def test_exec_record_escapes_like_the_authorization_request() -> None:
    request = ExecRequest(b"/usr/bin/pr\\intf", (b"printf", b"a\\b", b"\xff\xfe", b"caf\xc3\xa9"))
    rec = exec_record(IDENTITY, request)
    assert rec.command == "/usr/bin/pr\\\\intf"
    assert rec.command_arguments == ("a\\\\b", "\\xff\\xfe", "café")


class FakeCallError(grpc.RpcError, grpc.Call):
    """What a failed unary call raises: an RpcError that is also a Call."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def initial_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return ()

    # grpc.RpcError and grpc.Call declare this with different metadata types in the stubs.
    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:  # type: ignore[override]
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float:
        return 0.0

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: object) -> bool:
        return False


class FakeClient:
    def __init__(self, answer: pb.AccountingReply | Exception) -> None:
        self.answer = answer

    def account(self, rec: AccountingRecord) -> pb.AccountingReply:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.mark.parametrize(
    ("answer", "outcome", "detail"),
    [
        (
            pb.AccountingReply(
                response=pb.AccountingResponse(status=pb.ACCOUNTING_STATUS_SUCCESS)
            ),
            Outcome.DELIVERED,
            "",
        ),
        (
            pb.AccountingReply(
                response=pb.AccountingResponse(
                    status=pb.ACCOUNTING_STATUS_ERROR, server="tac1", server_message="disk full"
                )
            ),
            Outcome.FAILED,
            "status ERROR (server: tac1): disk full",
        ),
        (
            pb.AccountingReply(error=pb.ServiceError(message="no server", retriable=True)),
            Outcome.RETRIABLE,
            "service error: no server",
        ),
        (
            pb.AccountingReply(error=pb.ServiceError(message="bad record", retriable=False)),
            Outcome.FAILED,
            "service error: bad record",
        ),
        (pb.AccountingReply(), Outcome.FAILED, "malformed reply: neither response nor error"),
        (
            FakeCallError(grpc.StatusCode.UNAVAILABLE, "connect failed"),
            Outcome.RETRIABLE,
            "gRPC UNAVAILABLE: connect failed",
        ),
        (
            FakeCallError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline"),
            Outcome.RETRIABLE,
            "gRPC DEADLINE_EXCEEDED: deadline",
        ),
        (
            FakeCallError(grpc.StatusCode.UNIMPLEMENTED, "no such method"),
            Outcome.FAILED,
            "gRPC UNIMPLEMENTED: no such method",
        ),
    ],
)
def test_agent_sender_maps_replies_and_errors(
    answer: pb.AccountingReply | Exception, outcome: Outcome, detail: str
) -> None:
    send = agent_sender(FakeClient(answer))  # type: ignore[arg-type]
    assert send(record(1)) == SendResult(outcome, detail)


def test_agent_health_logs_one_outage_and_one_recovery(
    audit_lines: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    health = audit.AgentHealth("/run/tacacs/tacacs.sock", clock=lambda: now[0])
    good = AgentAnswer(AuthorizationStatus.PASS_ADD, server="tac1")
    down = AgentUnavailable(Outage.CONNECT, "connection refused")

    steps: list[tuple[Verdict, float]] = [
        (good, 100),
        (down, 101),
        (down, 102),
        (down, 103),
        (good, 104.5),
    ]
    for verdict, at in steps:
        now[0] = at
        health.observe(verdict)
    health.observe(good)

    assert events(audit_lines, "agent_outage") == [
        'event=agent_outage endpoint=/run/tacacs/tacacs.sock outage="cannot connect" '
        'detail="connection refused" server=""'
    ]
    assert events(audit_lines, "agent_recovery") == [
        "event=agent_recovery endpoint=/run/tacacs/tacacs.sock server=tac1 outage_s=3.500"
    ]


def test_unspecified_status_counts_as_an_outage(audit_lines: pytest.LogCaptureFixture) -> None:
    health = audit.AgentHealth("agent")
    health.observe(AgentAnswer(AuthorizationStatus.UNSPECIFIED, server="tac1"))
    assert len(events(audit_lines, "agent_outage")) == 1


def test_audit_values_escape_control_characters() -> None:
    line = audit.format_event(
        "exec_denied", {"path": "/srv/a\nevent=forged", "server_message": "red\x1b[31m\x9b"}
    )
    assert "\n" not in line and "\x1b" not in line and "\x9b" not in line
    assert line == (
        'event=exec_denied path="/srv/a\\\\x0aevent=forged" server_message=red\\x1b[31m\\x9b'
    )
