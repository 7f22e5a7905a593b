"""Fixtures that run the fake TACACS+ agent in the test process, on a real Unix socket.

- ``fake_agent``: a started FakeAgent; its policy is ``examples/policy.toml`` unless the test
  says otherwise with ``@pytest.mark.fake_agent_policy(TEXT_OR_PATH)``.
- ``fake_agent_factory``: starts more agents, each with its own policy, listen address, journal.
- ``write_policy``: writes policy TOML to a file and returns its Path.
- ``agent_socket_dir``: a short directory for Unix sockets (sun_path holds only 108 bytes, and
  pytest's tmp_path can be longer than that).
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fakeagent import FakeAgent
from fakeagent.server import PolicySource

EXAMPLE_POLICY = Path(__file__).resolve().parents[2] / "examples" / "policy.toml"

FakeAgentFactory = Callable[..., FakeAgent]
WritePolicy = Callable[..., Path]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "fake_agent_policy(policy): the fake_agent fixture's policy, as TOML text (str) or a "
        "Path to a TOML file",
    )


@pytest.fixture
def agent_socket_dir() -> Iterator[Path]:
    """A fresh directory with a short path under /tmp, removed after the test."""
    path = Path(tempfile.mkdtemp(prefix="fa-", dir="/tmp"))
    # Searchable by all, so a wrapper that dropped privileges can still reach a socket in it;
    # the socket's own mode (0660) decides who may connect.
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def write_policy(tmp_path: Path) -> WritePolicy:
    """``write_policy(text, name="policy.toml") -> Path``: the TOML text written to tmp_path."""

    def write(text: str, name: str = "policy.toml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def fake_agent_factory(agent_socket_dir: Path) -> Iterator[FakeAgentFactory]:
    """``fake_agent_factory(policy=None, *, listen=None, **options) -> FakeAgent``, started.

    ``policy`` is TOML text, a Path or None (built-in default only: everything FAIL). ``listen``
    defaults to a new Unix socket in agent_socket_dir; other keyword arguments (journal,
    max_workers, hang_cap_s, backend) go to FakeAgent. Every agent is stopped after the test.
    """
    agents: list[FakeAgent] = []
    numbers = itertools.count(1)

    def start(
        policy: PolicySource = None, *, listen: str | None = None, **options: object
    ) -> FakeAgent:
        if listen is None:
            listen = f"unix:{agent_socket_dir}/agent{next(numbers)}.sock"
        agent = FakeAgent(listen=listen, policy=policy, **options)  # type: ignore[arg-type]
        agents.append(agent)
        return agent.start()

    yield start
    for agent in agents:
        agent.stop()


@pytest.fixture
def fake_agent(request: pytest.FixtureRequest, fake_agent_factory: FakeAgentFactory) -> FakeAgent:
    """A started FakeAgent on a Unix socket; point the client at ``fake_agent.endpoint``.

    Its policy is examples/policy.toml, or the argument of ``@pytest.mark.fake_agent_policy``
    (TOML text or a Path). Read what it was asked from ``fake_agent.requests`` (a list of
    fakeagent.RecordedRequest: ``.rpc``, ``.user``, ``.cmd``, ``.cmd_args``, ``.args``, ...);
    change its answers mid-test with ``fake_agent.load_policy(...)``, forget requests with
    ``fake_agent.reset()``.
    """
    marker = request.node.get_closest_marker("fake_agent_policy")
    policy: PolicySource = EXAMPLE_POLICY if marker is None else marker.args[0]
    return fake_agent_factory(policy)
