"""A fake tacacsrs.agent.v1 agent whose answers, faults included, come from a TOML policy.

Tests start it in-process with FakeAgent; other processes run ``fake-tacacsrs-agentd`` and read
what it was asked with fakeagent.control_client. It is a test tool, not an agent to deploy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fakeagent.control_client import ControlClient
    from fakeagent.policy import Policy, PolicyError, load_policy_file, parse_policy
    from fakeagent.recording import RecordedRequest
    from fakeagent.server import FakeAgent, ListenError, StartError

# Imported on first use, not here: the CLI must set GRPC_VERBOSITY before grpc is imported,
# and ``python -m fakeagent`` imports this package first.
_EXPORTS = {
    "ControlClient": "fakeagent.control_client",
    "FakeAgent": "fakeagent.server",
    "ListenError": "fakeagent.server",
    "Policy": "fakeagent.policy",
    "PolicyError": "fakeagent.policy",
    "RecordedRequest": "fakeagent.recording",
    "StartError": "fakeagent.server",
    "load_policy_file": "fakeagent.policy",
    "parse_policy": "fakeagent.policy",
}

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


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fakeagent' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
