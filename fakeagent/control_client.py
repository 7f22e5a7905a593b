"""A client of the fake agent's control service, for tests and demos in another process.

It reads the requests a running ``fake-tacacsrs-agentd`` recorded, resets them and loads a new
policy, over the same endpoint the agent serves tacacsrs.agent.v1 on.
"""

from __future__ import annotations

from types import TracebackType

import grpc

from fakeagent.control import fakeagent_control_pb2 as control_pb
from fakeagent.control import fakeagent_control_pb2_grpc as control_grpc
from fakeagent.recording import RecordedRequest

DEFAULT_TIMEOUT_S = 10.0


class ControlClient:
    """Talks to the control service at ``endpoint`` (``unix:PATH``, a PATH or ``HOST:PORT``).

    Each call raises grpc.RpcError when the agent cannot be reached; load_policy raises it with
    code INVALID_ARGUMENT and the policy error as details when the policy is bad.
    """

    def __init__(self, endpoint: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        target = "unix:" + endpoint if endpoint.startswith("/") else endpoint
        self._channel = grpc.insecure_channel(target)
        self._stub = control_grpc.FakeAgentControlStub(self._channel)  # type: ignore[no-untyped-call]
        self._timeout_s = timeout_s

    def requests(self) -> list[RecordedRequest]:
        """Every request recorded since the agent started or was last reset, oldest first."""
        reply = self._stub.GetRequests(
            control_pb.GetRequestsRequest(), timeout=self._timeout_s, wait_for_ready=True
        )
        return [RecordedRequest.from_json(r.json) for r in reply.requests]

    def reset(self) -> None:
        """Makes the agent forget its recorded requests."""
        self._stub.Reset(control_pb.ResetRequest(), timeout=self._timeout_s, wait_for_ready=True)

    def load_policy(self, policy_toml: str) -> None:
        """Replaces the agent's policy with this TOML text."""
        self._stub.LoadPolicy(
            control_pb.LoadPolicyRequest(policy_toml=policy_toml),
            timeout=self._timeout_s,
            wait_for_ready=True,
        )

    def close(self) -> None:
        """Closes the channel."""
        self._channel.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
