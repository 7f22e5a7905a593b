"""The fake agent's gRPC servicers: tacacsrs.agent.v1.TacacsAgent and the control service.

The agent servicer is thin: it records each request, hands it to a Backend and sends back what
the backend returns. It only turns the backend's two instructions into gRPC terms: DropConnection
closes the client's connection, NoReply ends the RPC without a reply.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import NoReturn, TypeVar

import grpc

from fakeagent.backend import Backend, DropConnection, NoReply, rpc_ended
from fakeagent.connections import ListenAddress, peer_of, shut_down_connections
from fakeagent.control import fakeagent_control_pb2 as control_pb
from fakeagent.control import fakeagent_control_pb2_grpc as control_grpc
from fakeagent.policy import PolicyError
from fakeagent.recording import (
    RecordedRequest,
    Recorder,
    accounting_record,
    authorization_record,
    pap_record,
)
from session_wrapper.rpc import tacacsrs_agent_pb2 as pb
from session_wrapper.rpc import tacacsrs_agent_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

_Reply = TypeVar("_Reply")


class TacacsAgentServicer(pb_grpc.TacacsAgentServicer):
    """Records every request, then answers it with the backend.

    ``listen_address`` is where the server listens, used to find a connection to drop; set it
    again once a TCP port 0 has become a real port.
    """

    def __init__(self, backend: Backend, recorder: Recorder, listen: ListenAddress) -> None:
        self._backend = backend
        self._recorder = recorder
        self.listen_address = listen

    def Authorization(
        self, request: pb.AuthorizationRequest, context: grpc.ServicerContext
    ) -> pb.AuthorizationReply:
        return self._answer(
            authorization_record(request), lambda: self._backend.authorization(request), context
        )

    def Accounting(
        self, request: pb.AccountingRequest, context: grpc.ServicerContext
    ) -> pb.AccountingReply:
        return self._answer(
            accounting_record(request), lambda: self._backend.accounting(request), context
        )

    def AuthenticatePap(
        self, request: pb.PapAuthenticationRequest, context: grpc.ServicerContext
    ) -> pb.PapAuthenticationReply:
        return self._answer(
            pap_record(request), lambda: self._backend.authenticate_pap(request), context
        )

    def _answer(
        self,
        record: RecordedRequest,
        call_backend: Callable[[], _Reply],
        context: grpc.ServicerContext,
    ) -> _Reply:
        self._recorder.record(record)

        ended = threading.Event()
        if not context.add_callback(ended.set):
            ended.set()  # the RPC is already over
        token = rpc_ended.set(ended)
        try:
            return call_backend()
        except DropConnection:
            self._drop(context)
        except NoReply as exc:
            context.abort(grpc.StatusCode.CANCELLED, f"fake agent: no reply ({exc})")
        finally:
            rpc_ended.reset(token)

    def _drop(self, context: grpc.ServicerContext) -> NoReturn:
        count = shut_down_connections(self.listen_address, peer_of(context.peer()))
        logger.info("dropped %d connection(s) instead of answering", count)
        # The client no longer hears this; it only ends the handler. If no connection was
        # found, it is what the client sees, and the code is still UNAVAILABLE.
        context.abort(grpc.StatusCode.UNAVAILABLE, "fake agent: connection dropped")


class ControlServicer(control_grpc.FakeAgentControlServicer):
    """fakeagent.control.v1: load a policy, read and forget the recorded requests."""

    def __init__(self, recorder: Recorder, load_policy: Callable[[str], object] | None) -> None:
        self._recorder = recorder
        self._load_policy = load_policy

    def LoadPolicy(
        self, request: control_pb.LoadPolicyRequest, context: grpc.ServicerContext
    ) -> control_pb.LoadPolicyReply:
        if self._load_policy is None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "this agent has no policy")
        try:
            self._load_policy(request.policy_toml)
        except PolicyError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return control_pb.LoadPolicyReply()

    def GetRequests(
        self, request: control_pb.GetRequestsRequest, context: grpc.ServicerContext
    ) -> control_pb.GetRequestsReply:
        return control_pb.GetRequestsReply(
            requests=[
                control_pb.RecordedRequest(json=r.to_json()) for r in self._recorder.requests
            ]
        )

    def Reset(
        self, request: control_pb.ResetRequest, context: grpc.ServicerContext
    ) -> control_pb.ResetReply:
        self._recorder.reset()
        return control_pb.ResetReply()
