"""The backend that answers from a policy, including its faults: delay, hang, drop, malformed.

It turns a protobuf request into a policy Query, takes the first matching rule's Answer and
builds the protobuf reply. Hangs and delays wait on the RPC's end event (see backend.rpc_ended)
so a thread is freed as soon as the client gives up or the agent stops, and never waits longer
than the hang cap.
"""

from __future__ import annotations

import logging
import threading

from fakeagent.backend import DropConnection, NoReply, rpc_ended
from fakeagent.policy import EMPTY_POLICY, Answer, Fault, Policy, Query, Rpc
from fakeagent.recording import (
    RecordedRequest,
    accounting_record,
    authorization_record,
    pap_record,
)
from session_wrapper.rpc import tacacsrs_agent_pb2 as pb

logger = logging.getLogger(__name__)

# Known limit: a hung RPC whose client set no deadline is ended after this long, so that a
# forgotten test cannot pin a server thread for the rest of the run.
HANG_CAP_S = 300.0


class PolicyBackend:
    """A Backend whose answers come from a Policy that can be swapped at any time."""

    def __init__(self, policy: Policy = EMPTY_POLICY, *, hang_cap_s: float = HANG_CAP_S) -> None:
        self._lock = threading.Lock()
        self._policy = policy
        self._hang_cap_s = hang_cap_s
        self._closed = False
        self._waiting: set[threading.Event] = set()

    @property
    def policy(self) -> Policy:
        """The policy in force."""
        with self._lock:
            return self._policy

    def set_policy(self, policy: Policy) -> None:
        """Replaces the policy; RPCs already answering keep the answer they have."""
        with self._lock:
            self._policy = policy
        logger.info("policy %s loaded: %d rules", policy.source, len(policy.rules))

    def close(self) -> None:
        """Ends every delay and hang now; later ones end at once."""
        with self._lock:
            self._closed = True
            waiting = list(self._waiting)
        for event in waiting:
            event.set()

    def authorization(self, req: pb.AuthorizationRequest) -> pb.AuthorizationReply:
        """Answers an Authorization request from the policy."""
        answer = self._carry_out(authorization_record(req))
        if answer.error is not None:
            return pb.AuthorizationReply(error=_service_error(answer))
        if answer.fault is Fault.MALFORMED_EMPTY:
            return pb.AuthorizationReply()
        response = pb.AuthorizationResponse(
            server=answer.server,
            server_message=answer.server_message,
            data=answer.data,
            status=_status_name("AUTHORIZATION_STATUS_", answer),
            args=[
                pb.AuthorizationArg(name=a.name, value=a.value, mandatory=a.mandatory)
                for a in answer.reply_args
            ],
        )
        return pb.AuthorizationReply(response=response)

    def accounting(self, req: pb.AccountingRequest) -> pb.AccountingReply:
        """Answers an Accounting request from the policy."""
        answer = self._carry_out(accounting_record(req))
        if answer.error is not None:
            return pb.AccountingReply(error=_service_error(answer))
        if answer.fault is Fault.MALFORMED_EMPTY:
            return pb.AccountingReply()
        response = pb.AccountingResponse(
            server=answer.server,
            server_message=answer.server_message,
            data=answer.data,
            status=_status_name("ACCOUNTING_STATUS_", answer),
        )
        return pb.AccountingReply(response=response)

    def authenticate_pap(self, req: pb.PapAuthenticationRequest) -> pb.PapAuthenticationReply:
        """Answers an AuthenticatePap request from the policy."""
        answer = self._carry_out(pap_record(req))
        if answer.error is not None:
            return pb.PapAuthenticationReply(error=_service_error(answer))
        if answer.fault is Fault.MALFORMED_EMPTY:
            return pb.PapAuthenticationReply()
        response = pb.PapAuthenticationResponse(
            server=answer.server,
            server_message=answer.server_message,
            data=answer.data.encode(),
            status=_status_name("AUTHENTICATION_STATUS_", answer),
        )
        return pb.PapAuthenticationReply(response=response)

    def _carry_out(self, record: RecordedRequest) -> Answer:
        """Finds the answer and performs its delay, hang or drop; returns it to be sent."""
        query = Query(
            rpc=Rpc(record.rpc),
            user=record.user,
            cmd=record.cmd,
            cmd_args=record.cmd_args,
            priv_lvl=record.privilege_level,
        )
        answer = self.policy.answer(query)
        logger.debug(
            "%s user=%r cmd=%r: %s answers %s",
            record.rpc,
            record.user,
            record.cmd,
            answer.origin,
            answer.fault.value if answer.fault else answer.status or "a service error",
        )

        if answer.fault is Fault.HANG:
            self._wait(self._hang_cap_s)
            raise NoReply("hang ended")
        if answer.delay_ms and self._wait(answer.delay_ms / 1000):
            raise NoReply("the RPC ended during the delay")
        if answer.fault is Fault.DROP:
            raise DropConnection(answer.origin)
        return answer

    def _wait(self, seconds: float) -> bool:
        """Sleeps up to ``seconds``; True when the RPC ended or the backend closed first."""
        event = rpc_ended.get() or threading.Event()
        with self._lock:
            if self._closed:
                return True
            self._waiting.add(event)
        try:
            return event.wait(seconds)
        finally:
            with self._lock:
                self._waiting.discard(event)


def _status_name(prefix: str, answer: Answer) -> str:
    # An answer without status is malformed = "unspecified": the enum's zero value is sent.
    return prefix + (answer.status or "UNSPECIFIED")


def _service_error(answer: Answer) -> pb.ServiceError:
    assert answer.error is not None
    return pb.ServiceError(
        message=answer.error.message,
        server=answer.error.server,
        retriable=answer.error.retriable,
    )
