"""Shared pieces of the attack suite: the agent policy, the helper paths, request readers."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from fakeagent import FakeAgent

CSRC = Path(__file__).resolve().parent / "csrc"

POLICY = """
[[rule]]
name = "session"
cmd = ""
status = "PASS_ADD"

[[rule]]
name = "no whoami"
cmd = "/usr/bin/whoami"
status = "FAIL"
server_message = "whoami is not for you"

[[rule]]
name = "forbidden helper"
cmd = "*/forbidden"
status = "FAIL"
server_message = "forbidden"

[[rule]]
name = "no loader"
cmd = "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
status = "FAIL"
server_message = "run programs directly"

[[rule]]
name = "recorder, not evil"
cmd = "*/recorder"
args = "evil"
status = "FAIL"
server_message = "evil argument"

[default]
status = "PASS_ADD"
"""


@dataclass(frozen=True)
class Helpers:
    """Paths of the compiled helpers."""

    dir: Path
    forbidden: Path
    recorder: Path
    foreign_abi: Path
    foreign_abi_m32: Path
    execat: Path
    race: Path
    procmem: Path
    victim: Path


def gcc(source: str, out: Path, *flags: str) -> Path:
    subprocess.run(
        ["gcc", "-O1", "-Wall", *flags, "-o", str(out), str(CSRC / source)],
        check=True,
        capture_output=True,
    )
    return out


def commands(agent: FakeAgent) -> list[tuple[str, tuple[str, ...]]]:
    """(cmd, cmd-args) of every exec authorization the agent saw, in order."""
    return [
        (r.cmd, tuple(r.cmd_args)) for r in agent.requests if r.rpc == "authorization" and r.cmd
    ]


def cmds(agent: FakeAgent) -> list[str]:
    return [cmd for cmd, _args in commands(agent)]
