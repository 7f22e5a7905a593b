"""A fake tacacsrs.agent.v1 agent whose answers, faults included, come from a TOML policy.

Tests start it in-process with FakeAgent; other processes run ``fake-tacacsrs-agentd`` and read
what it was asked with fakeagent.control_client. It is a test tool, not an agent to deploy.
"""

from fakeagent.control_client import ControlClient
from fakeagent.policy import Policy, PolicyError, load_policy_file, parse_policy
from fakeagent.recording import RecordedRequest
from fakeagent.server import FakeAgent, ListenError, StartError

__all__ = [
    "ControlClient",
    "FakeAgent",
    "ListenError",
    "Policy",
    "PolicyError",
    "RecordedRequest",
    "StartError",
    "load_policy_file",
    "parse_policy",
]
