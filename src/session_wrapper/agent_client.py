"""The client of the local TACACS+ agent (tacacsrs.agent.v1 over gRPC).

Turns decision-core queries into protobuf requests and replies (or their absence) into verdicts.
It holds one persistent channel. It decides nothing: the decision core does. gRPC is not
fork-safe, so this module is imported and the channel built only after the session's child has
been forked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc

from session_wrapper.decision import (
    AgentAnswer,
    AgentUnavailable,
    AuthorizationQuery,
    AuthorizationStatus,
    AvPair,
    Outage,
    Verdict,
)
from session_wrapper.rpc import tacacsrs_agent_pb2 as pb
from session_wrapper.rpc import tacacsrs_agent_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

# Short reconnect backoff: with the defaults (1 s growing to 120 s) a restarted agent would be
# ignored for minutes, and every exec in between would go to the fail policy.
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_retries", 0),
]


@dataclass(frozen=True)
class AccountingRecord:
    """One accounting record: what ran, as the agent's Accounting RPC carries it."""

    user: str
    port: str
    rem_addr: str
    command: str
    command_arguments: tuple[str, ...]


class AgentClient:
    """One channel to the agent, shared by every worker thread (gRPC channels are thread-safe)."""

    def __init__(self, target: str, timeout_s: float) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self._channel = grpc.insecure_channel(target, options=_CHANNEL_OPTIONS)
        # The generated gRPC module has no type hints.
        self._stub = pb_grpc.TacacsAgentStub(self._channel)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self._channel.close()

    def authorize(self, query: AuthorizationQuery) -> Verdict:
        """Asks the agent; never raises for anything the agent or the transport does."""
        request = pb.AuthorizationRequest(
            user=query.identity.user,
            port=query.identity.port,
            remote_address=query.identity.rem_addr,
            privilege_level=query.identity.priv_lvl,
            args=[
                pb.AuthorizationArg(name=a.name, value=a.value, mandatory=a.mandatory)
                for a in query.args
            ],
            authentication_context=pb.AUTHORIZATION_AUTHENTICATION_CONTEXT_TACACS_ASCII,
        )
        try:
            # wait_for_ready stays False: an agent that is down fails at once and the fail
            # policy answers, instead of every exec waiting out the whole timeout.
            reply = self._stub.Authorization(request, timeout=self.timeout_s)
        except grpc.RpcError as error:
            return _rpc_error_verdict(error)
        return _verdict(reply)

    def account(self, record: AccountingRecord) -> pb.AccountingReply:
        """Sends one accounting record; raises grpc.RpcError on transport failure."""
        request = pb.AccountingRequest(
            user=record.user,
            port=record.port,
            remote_address=record.rem_addr,
            command=record.command,
            command_arguments=list(record.command_arguments),
        )
        reply: pb.AccountingReply = self._stub.Accounting(request, timeout=self.timeout_s)
        return reply


def _rpc_error_verdict(error: grpc.RpcError) -> AgentUnavailable:
    code = error.code() if isinstance(error, grpc.Call) else None
    details = (error.details() if isinstance(error, grpc.Call) else None) or str(code)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return AgentUnavailable(Outage.TIMEOUT, details)
    if code is grpc.StatusCode.UNAVAILABLE:
        return AgentUnavailable(Outage.CONNECT, details)
    return AgentUnavailable(Outage.RPC_ERROR, f"{code}: {details}")


def _verdict(reply: pb.AuthorizationReply) -> Verdict:
    which = reply.WhichOneof("result")
    if which == "error":
        error = reply.error
        retry = "retriable" if error.retriable else "not retriable"
        return AgentUnavailable(
            Outage.SERVICE_ERROR, f"{error.message} ({retry})", server=error.server
        )
    if which != "response":
        return AgentUnavailable(Outage.MALFORMED, "reply holds neither response nor error")
    response = reply.response
    try:
        status = AuthorizationStatus(response.status)
    except ValueError:
        return AgentUnavailable(
            Outage.MALFORMED, f"unknown status {response.status}", server=response.server
        )
    return AgentAnswer(
        status=status,
        server=response.server,
        server_message=response.server_message,
        args=tuple(AvPair(a.name, a.value, a.mandatory) for a in response.args),
    )
