"""Attack 5: the argv and path rewrite race during a delayed round trip.

A second thread, or the parent of a CLONE_VM|CLONE_VFORK child, flips the exec's path from an
allowed program to a forbidden one, or its argument from "safe" to "evil", while the agent takes
its time. Each run counts what stopped each try: the agent seeing the forbidden value, the
re-read before CONTINUE, or the post-exec check of /proc/PID/exe, and what got through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from attack_support import Helpers
from wrapper_runner import RunWrapper

from fakeagent import FakeAgent

TRIES = 60

RACE_POLICY = """
[[rule]]
cmd = ""
status = "PASS_ADD"

[[rule]]
name = "forbidden helper"
cmd = "*/forbidden"
status = "FAIL"
server_message = "forbidden"

[[rule]]
name = "recorder, not evil"
cmd = "*/recorder"
args = "evil"
status = "FAIL"
server_message = "evil argument"

[[rule]]
name = "recorder, slowly"
cmd = "*/recorder"
status = "PASS_ADD"
delay_ms = 15

[default]
status = "PASS_ADD"
"""


@dataclass(frozen=True)
class RaceFigures:
    tries: int
    agent_saw_forbidden: int
    caught_before_continue: int
    killed_after_exec: int
    forbidden_ran: int
    evil_argv_ran: int
    allowed_ran: int
    # How long after CONTINUE each kill came, from the user's "killed after N us" lines.
    kill_delays_us: tuple[int, ...] = ()


def _race(
    run_wrapper: RunWrapper,
    agent: FakeAgent,
    helpers: Helpers,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    target: str,
) -> RaceFigures:
    base = tmp_path / "r"
    base.mkdir()
    (base / "xa").symlink_to(helpers.recorder)
    (base / "xb").symlink_to(helpers.forbidden)
    marker = tmp_path / "marker"
    record = tmp_path / "record"
    monkeypatch.setenv("MARKER", str(marker))
    monkeypatch.setenv("RECORD", str(record))
    result = run_wrapper(
        str(helpers.race),
        mode,
        target,
        str(TRIES),
        str(base),
        endpoint=agent.endpoint,
        timeout=100,
    )
    assert result.returncode == 0, result.stderr
    assert len(re.findall(r"^try \d+ status", result.stdout, re.M)) == TRIES
    err = result.stderr
    runs = record.read_text().splitlines() if record.exists() else []
    figures = RaceFigures(
        tries=TRIES,
        agent_saw_forbidden=len(re.findall(r"denied by TACACS\+", err)),
        caught_before_continue=len(re.findall(r"changed during authorization", err)),
        killed_after_exec=len(re.findall(r"exec verification failed", err)),
        forbidden_ran=len(marker.read_text().splitlines()) if marker.exists() else 0,
        evil_argv_ran=sum("evil" in line for line in runs),
        allowed_ran=sum("safe" in line for line in runs),
        kill_delays_us=tuple(int(us) for us in re.findall(r"killed after (\d+) us", err)),
    )
    # The figures go to the test log, and the README quotes a run of them.
    print(f"race {mode}/{target}: {figures}")
    return figures


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["thread", "vfork"])
def test_path_flip_is_caught_or_killed_known_limit(
    run_wrapper: RunWrapper,
    helpers: Helpers,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    agent_socket_dir: Path,
    mode: str,
) -> None:
    with FakeAgent(listen=f"unix:{agent_socket_dir}/race.sock", policy=RACE_POLICY) as agent:
        figures = _race(run_wrapper, agent, helpers, tmp_path, monkeypatch, mode, "path")
        asked = [r.cmd for r in agent.requests if r.rpc == "authorization" and r.cmd][1:]
    # Every request named a real file: the recorder or, when the flip was seen, the forbidden
    # helper itself.
    assert set(asked) <= {str(helpers.recorder), str(helpers.forbidden)}
    assert figures.caught_before_continue > 0, figures
    # Known limit: a flip after the last re-read wins the kernel's read. The post-exec check
    # kills such a process when it sees it, but a program that acts at once can act (and even
    # exit) first. The forbidden program ran only on tries that passed every check and did not
    # run the allowed one.
    passed = TRIES - figures.caught_before_continue - figures.agent_saw_forbidden
    assert figures.forbidden_ran <= passed - figures.allowed_ran, figures


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["thread", "vfork"])
def test_argv_flip_is_caught_before_continue_or_runs(
    run_wrapper: RunWrapper,
    helpers: Helpers,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    agent_socket_dir: Path,
    mode: str,
) -> None:
    with FakeAgent(listen=f"unix:{agent_socket_dir}/race.sock", policy=RACE_POLICY) as agent:
        figures = _race(run_wrapper, agent, helpers, tmp_path, monkeypatch, mode, "argv")
        asked = [r.cmd_args for r in agent.requests if r.rpc == "authorization" and r.cmd][1:]
    assert set(asked) <= {("safe",), ("evil",)}, asked
    # Known limit: the same file runs with other arguments, so /proc/PID/exe cannot tell; only
    # the re-read before CONTINUE stands between a late flip and the kernel's read.
    assert figures.caught_before_continue + figures.agent_saw_forbidden > 0, figures
    assert figures.killed_after_exec == 0, figures


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["thread", "vfork"])
def test_path_flip_that_wins_is_killed_before_a_slower_program_acts(
    run_wrapper: RunWrapper,
    helpers: Helpers,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    agent_socket_dir: Path,
    mode: str,
) -> None:
    """Post-exec verification: a forbidden program that waits 200 ms before acting never acts.

    The same race as above; the only difference is that the forbidden program sleeps first, so
    every flip that wins the kernel's read must end in a kill before the marker is written.
    """
    monkeypatch.setenv("FORBIDDEN_DELAY_MS", "200")
    with FakeAgent(listen=f"unix:{agent_socket_dir}/race.sock", policy=RACE_POLICY) as agent:
        figures = _race(run_wrapper, agent, helpers, tmp_path, monkeypatch, mode, "path")
    assert figures.forbidden_ran == 0, figures
    if figures.kill_delays_us:
        delays = sorted(figures.kill_delays_us)
        print(f"kill delays {mode}: median {delays[len(delays) // 2]} us, max {delays[-1]} us")
        assert delays[-1] < 200_000, figures
