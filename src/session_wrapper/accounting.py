"""Command accounting: a bounded queue of AccountingRecords and the one thread that sends them.

An exec is never held for accounting: the supervisor queues the record and answers the kernel
at once. One sender thread, started after the fork (gRPC is not fork-safe), delivers records in
order, retrying a transport error or a retriable ServiceError with backoff. At session end the
queue is flushed for a bounded time, and every record that was not delivered is written to the
audit log as an ``accounting_failure`` line, so none is lost silently. This module does not
speak gRPC itself: it is handed a send function (agent_sender builds the real one).
"""

from __future__ import annotations

import collections
import enum
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from session_wrapper import audit
from session_wrapper.decision import ExecRequest, Identity, escape_arg

if TYPE_CHECKING:
    from session_wrapper.agent_client import AccountingRecord, AgentClient

logger = logging.getLogger(__name__)

# Records waiting for the agent. Each is a few hundred bytes; an interactive session stays far
# below this, and a script that outruns an agent that is down spills to the audit log instead.
CAPACITY = 4096
# How long the end of a session waits for the queue to empty.
FLUSH_DEADLINE_S = 5.0
# During the flush, an agent that still fails this many times in a row is taken to be down:
# the rest goes to the audit log at once rather than after the whole deadline.
FLUSH_ATTEMPTS = 3


class Outcome(enum.Enum):
    """What one attempt to send a record came to."""

    DELIVERED = "delivered"
    RETRIABLE = "retriable failure"
    FAILED = "failed"


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    detail: str = ""


Send = Callable[["AccountingRecord"], SendResult]


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff between attempts: initial_s, then doubled, never above max_s."""

    initial_s: float = 0.1
    max_s: float = 5.0

    def delay_s(self, failures: int) -> float:
        """The wait after the ``failures``-th failure in a row (counted from 1)."""
        return float(min(self.max_s, self.initial_s * 2 ** min(failures - 1, 32)))


@dataclass(frozen=True)
class AccountingSummary:
    """What became of the session's records; logged as ``accounting_summary``."""

    queued: int
    delivered: int
    failed: int
    overflowed: int


def session_start_record(
    identity: Identity, command: Sequence[str], environ: Mapping[str, str]
) -> AccountingRecord:
    """The record of the session itself: an empty command, as in the session authorization
    request, and the initial command line as the arguments.

    sshd puts a non-interactive login's command in SSH_ORIGINAL_COMMAND; it is the one argument
    then. Otherwise the arguments are the session command's argv. The shell is allowlisted, so
    without this record a ``ssh host CMD`` would leave no trace of CMD at the agent.
    """
    from session_wrapper.agent_client import AccountingRecord

    original = environ.get("SSH_ORIGINAL_COMMAND")
    if original is not None:
        arguments: tuple[str, ...] = (_as_arg(original),)
    else:
        arguments = tuple(_as_arg(word) for word in command)
    return AccountingRecord(identity.user, identity.port, identity.rem_addr, "", arguments)


def exec_record(identity: Identity, request: ExecRequest) -> AccountingRecord:
    """The record of an allowed exec: the canonical path and argv[1:], escaped as the
    authorization request escaped them."""
    from session_wrapper.agent_client import AccountingRecord

    return AccountingRecord(
        identity.user,
        identity.port,
        identity.rem_addr,
        escape_arg(request.path),
        tuple(escape_arg(arg) for arg in request.argv[1:]),
    )


def _as_arg(text: str) -> str:
    # A str from the environment or the command line holds undecodable bytes as surrogates.
    return escape_arg(text.encode("utf-8", "surrogateescape"))


class AccountingQueue:
    """Records in order, sent by one thread; submit never blocks on the agent."""

    def __init__(
        self,
        send: Send,
        capacity: int = CAPACITY,
        backoff: Backoff = Backoff(),
        flush_attempts: int = FLUSH_ATTEMPTS,
    ) -> None:
        self._send = send
        self.capacity = capacity
        self._backoff = backoff
        self._flush_attempts = flush_attempts
        self._records: collections.deque[AccountingRecord] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._stopped = False
        self._gave_up = False
        self._flush_failures = 0
        self._last_failure = ""
        self._queued = 0
        self._delivered = 0
        self._failed = 0
        self._overflowed = 0
        self._thread = threading.Thread(target=self._run, name="accounting", daemon=True)

    def start(self) -> None:
        """Starts the sender thread; call it after the fork."""
        self._thread.start()

    def submit(self, record: AccountingRecord) -> None:
        """Queues a record; a full or closed queue writes it to the audit log instead."""
        with self._cond:
            if self._stopped:
                reason = "queued after the session's accounting was closed"
            elif len(self._records) >= self.capacity:
                self._overflowed += 1
                reason = f"queue full ({self.capacity} records waiting)"
                if self._overflowed == 1:
                    audit.record(
                        logging.WARNING,
                        "accounting_queue_full",
                        capacity=self.capacity,
                        waiting=len(self._records),
                        queued=self._queued,
                        delivered=self._delivered,
                    )
            else:
                self._records.append(record)
                self._queued += 1
                self._cond.notify_all()
                return
            self._failed += 1
        _record_failure(record, reason)

    def close(self, deadline_s: float = FLUSH_DEADLINE_S) -> AccountingSummary:
        """Flushes for at most ``deadline_s``, writes what is left to the audit log and stops
        the sender. A record still being sent then is logged as a failure even if the agent
        gets it later: a failure line means delivery was not confirmed."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: not self._records or self._gave_up, deadline_s)
            self._stopped = True
            left = list(self._records)
            self._records.clear()
            self._failed += len(left)
            last_failure = self._last_failure
            self._cond.notify_all()
        reason = "not delivered by the end of the session"
        if last_failure:
            reason += f" (last failure: {last_failure})"
        for record in left:
            _record_failure(record, reason)
        summary = AccountingSummary(self._queued, self._delivered, self._failed, self._overflowed)
        audit.record(
            logging.WARNING if summary.failed else logging.INFO,
            "accounting_summary",
            queued=summary.queued,
            delivered=summary.delivered,
            failed=summary.failed,
            overflowed=summary.overflowed,
        )
        return summary

    def _run(self) -> None:
        failures = 0
        while (record := self._next()) is not None:
            result = self._send(record)
            with self._cond:
                if self._stopped:
                    return
                if result.outcome is Outcome.RETRIABLE:
                    failures += 1
                    if not self._retry_later(failures, result.detail):
                        return
                    continue
                self._records.popleft()
                if failures:
                    audit.record(logging.INFO, "accounting_recovery", failed_attempts=failures)
                    failures = 0
                if result.outcome is Outcome.DELIVERED:
                    self._delivered += 1
                else:
                    self._failed += 1
                self._cond.notify_all()
            if result.outcome is Outcome.FAILED:
                _record_failure(record, result.detail)

    def _next(self) -> AccountingRecord | None:
        """The oldest record, left in the queue until it is delivered; None once stopped."""
        with self._cond:
            self._cond.wait_for(lambda: self._records or self._closing or self._stopped)
            if self._stopped or not self._records:
                return None
            return self._records[0]

    def _retry_later(self, failures: int, detail: str) -> bool:
        """Waits out the backoff (close() cuts it short); False when the flush gives up.
        Called with the lock held."""
        self._last_failure = detail
        if failures == 1:
            audit.record(logging.WARNING, "accounting_outage", detail=detail)
        if self._closing:
            self._flush_failures += 1
            if self._flush_failures >= self._flush_attempts:
                self._gave_up = True
                self._cond.notify_all()
                return False
            delay = self._backoff.delay_s(self._flush_failures)
        else:
            delay = self._backoff.delay_s(failures)
        closing = self._closing
        self._cond.wait_for(lambda: self._stopped or self._closing != closing, delay)
        return not self._stopped


def _record_failure(record: AccountingRecord, reason: str) -> None:
    audit.record(
        logging.WARNING,
        "accounting_failure",
        rem_addr=record.rem_addr,
        port=record.port,
        command=record.command,
        command_arguments=" ".join(record.command_arguments),
        argc=len(record.command_arguments),
        reason=reason,
    )


def agent_sender(client: AgentClient) -> Send:
    """The send function over the agent's Accounting RPC.

    Transport errors that a later attempt may not meet (UNAVAILABLE, DEADLINE_EXCEEDED,
    RESOURCE_EXHAUSTED, ABORTED) and a ServiceError marked retriable are retried. A
    non-retriable ServiceError, a status other than SUCCESS (RFC 8907 section 7.3: ERROR means
    the server did not commit the record) and a malformed reply are failures.
    """
    import grpc

    from session_wrapper.rpc import tacacsrs_agent_pb2 as pb

    retriable_codes = {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }

    def send(record: AccountingRecord) -> SendResult:
        try:
            reply = client.account(record)
        except grpc.RpcError as error:
            code = error.code() if isinstance(error, grpc.Call) else None
            details = error.details() if isinstance(error, grpc.Call) else ""
            outcome = Outcome.RETRIABLE if code in retriable_codes else Outcome.FAILED
            return SendResult(outcome, f"gRPC {code.name if code else 'error'}: {details}")
        which = reply.WhichOneof("result")
        if which == "error":
            service_error = reply.error
            outcome = Outcome.RETRIABLE if service_error.retriable else Outcome.FAILED
            server = f" (server: {service_error.server})" if service_error.server else ""
            return SendResult(outcome, f"service error{server}: {service_error.message}")
        if which != "response":
            return SendResult(Outcome.FAILED, "malformed reply: neither response nor error")
        response = reply.response
        if response.status == pb.ACCOUNTING_STATUS_SUCCESS:
            return SendResult(Outcome.DELIVERED)
        status = pb.AccountingStatus.Name(response.status).removeprefix("ACCOUNTING_STATUS_")
        message = f": {response.server_message}" if response.server_message else ""
        return SendResult(
            Outcome.FAILED, f"status {status} (server: {response.server or 'unknown'}){message}"
        )

    return send
