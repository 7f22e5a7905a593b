"""Fixtures of the attack suite: C helpers compiled once, and an agent whose policy denies.

The helpers are built with gcc (gcc-multilib for ``-m32``) into a session-scoped directory. The
policy (attack_support.POLICY) denies ``/usr/bin/whoami``, the ``forbidden`` helper (which writes
``$MARKER`` the moment it runs), ld.so, and the ``recorder`` helper with the argument ``evil``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from attack_support import POLICY, Helpers, gcc

from fakeagent import FakeAgent


@pytest.fixture(scope="session")
def helpers() -> Iterator[Helpers]:
    """The C helpers, compiled into a short directory under /tmp, searchable by everyone."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed to build the attack helpers (apt-get install gcc-multilib)")
    build = Path(tempfile.mkdtemp(prefix="attacks-", dir="/tmp"))
    build.chmod(0o755)
    yield Helpers(
        dir=build,
        forbidden=gcc("forbidden.c", build / "forbidden"),
        recorder=gcc("recorder.c", build / "recorder"),
        foreign_abi=gcc("foreign_abi.c", build / "foreign_abi", "-no-pie", "-static"),
        foreign_abi_m32=gcc("foreign_abi.c", build / "foreign_abi32", "-m32", "-static"),
        execat=gcc("execat.c", build / "execat"),
        race=gcc("race.c", build / "race", "-pthread"),
        procmem=gcc("procmem.c", build / "procmem"),
        victim=gcc("victim.c", build / "victim"),
    )
    shutil.rmtree(build, ignore_errors=True)


@pytest.fixture
def agent(agent_socket_dir: Path) -> Iterator[FakeAgent]:
    """The fake agent with the attack policy, on a Unix socket."""
    with FakeAgent(listen=f"unix:{agent_socket_dir}/agent.sock", policy=POLICY) as fake:
        yield fake
