"""The seam between the fake agent's gRPC servicer and whatever produces its answers.

A backend turns a tacacsrs.agent.v1 request into its reply. The policy backend answers from a
TOML policy; a relay to a real TACACS+ server can implement the same Protocol. The servicer
records every request before it calls the backend, so backends do not record.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from typing import Protocol

from session_wrapper.rpc import tacacsrs_agent_pb2 as pb

# Set by the servicer around each backend call: an event that is set when the client's RPC
# ends (deadline passed, cancelled, agent stopping). A backend that waits should watch it so
# that no thread outlives the RPC it serves; a backend that does not wait can ignore it.
rpc_ended: ContextVar[threading.Event | None] = ContextVar("rpc_ended", default=None)


class DropConnection(Exception):
    """Raised by a backend to have the servicer close the client's connection unanswered."""


class NoReply(Exception):
    """Raised by a backend that has no reply to give (the RPC ended while it waited)."""


class Backend(Protocol):
    """Answers the three rpcs of tacacsrs.agent.v1.TacacsAgent; called from many threads."""

    def authorization(self, req: pb.AuthorizationRequest) -> pb.AuthorizationReply: ...

    def accounting(self, req: pb.AccountingRequest) -> pb.AccountingReply: ...

    def authenticate_pap(self, req: pb.PapAuthenticationRequest) -> pb.PapAuthenticationReply: ...
