"""Command accounting of real wrapped sessions: what the fake agent records, and what syslog gets
when the agent cannot take it.

N execs the agent allowed must give exactly N exec records, in order, after the session's own
record: with a healthy agent, a slow one, one that fails and then recovers, and one that never
takes a record (then N syslog lines instead). Allowlisted and denied execs give none.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from syslog_receiver import SyslogReceiver, events
from wrapper_runner import wrapper_argv

from fakeagent import FakeAgent, RecordedRequest

N = 6
# N execs the agent is asked about, one the agent denies and one on the allowlist between them.
SCRIPT = (
    f"for i in $(seq 1 {N // 2}); do /usr/bin/echo $i; done; "
    "/usr/bin/whoami; /usr/bin/id -u >/dev/null; "
    f"for i in $(seq {N // 2 + 1} {N}); do /usr/bin/echo $i; done"
)
# seq is asked about too, once per loop.
EXPECTED_EXECS = [
    ("/usr/bin/seq", ("1", str(N // 2))),
    *(("/usr/bin/echo", (str(i),)) for i in range(1, N // 2 + 1)),
    ("/usr/bin/seq", (str(N // 2 + 1), str(N))),
    *(("/usr/bin/echo", (str(i),)) for i in range(N // 2 + 1, N + 1)),
]
SESSION_RECORD = ("", ("/bin/bash", "-c", SCRIPT))

AUTHORIZATION = """
[[rule]]
name = "whoami is denied"
rpc = "authorization"
cmd = "/usr/bin/whoami"
status = "FAIL"

[[rule]]
rpc = "authorization"
status = "PASS_ADD"
"""
ACCOUNTING_OK = """
[[rule]]
rpc = "accounting"
status = "SUCCESS"
"""
ACCOUNTING_SLOW = """
[[rule]]
rpc = "accounting"
status = "SUCCESS"
delay_ms = 150
"""
ACCOUNTING_DOWN = """
[[rule]]
rpc = "accounting"
error = { message = "no TACACS+ server reachable", retriable = true }
"""


@pytest.fixture
def agent(socket_dir: Path) -> Iterator[FakeAgent]:
    with FakeAgent(listen=f"unix:{socket_dir}/agent.sock") as fake:
        yield fake


def accounting(agent: FakeAgent) -> list[tuple[str, tuple[str, ...]]]:
    return [
        (r.command or "", r.command_arguments or ())
        for r in agent.requests
        if r.rpc == "accounting"
    ]


def check_identity(requests: list[RecordedRequest]) -> None:
    for request in requests:
        assert (request.user, request.port, request.remote_address) == (
            "alice",
            "pts/test",
            "192.0.2.7",
        )


def run(agent_endpoint: str, cwd: Path, script: str = SCRIPT, **options: object) -> str:
    """Runs the session; returns its stdout after checking its exit status."""
    argv = wrapper_argv(("/bin/bash", "-c", script), endpoint=agent_endpoint, **options)  # type: ignore[arg-type]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=40, cwd=cwd, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def echoed() -> str:
    return "".join(f"{i}\n" for i in range(1, N + 1))


@pytest.mark.timeout(50)
def test_n_execs_give_n_records_in_order(
    agent: FakeAgent, syslog: SyslogReceiver, socket_dir: Path
) -> None:
    agent.load_policy(AUTHORIZATION + ACCOUNTING_OK)
    assert run(agent.endpoint, socket_dir) == echoed()

    assert accounting(agent) == [SESSION_RECORD, *EXPECTED_EXECS]
    check_identity([r for r in agent.requests if r.rpc == "accounting"])
    lines = syslog.lines()
    assert events(lines, "accounting_failure") == []
    [summary] = events(lines, "accounting_summary")
    assert (summary.fields["delivered"], summary.fields["failed"]) == (str(N + 3), "0")


@pytest.mark.timeout(50)
def test_session_record_holds_ssh_original_command(
    agent: FakeAgent, syslog: SyslogReceiver, socket_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent.load_policy(AUTHORIZATION + ACCOUNTING_OK)
    monkeypatch.setenv("SSH_ORIGINAL_COMMAND", "show running-config")
    run(agent.endpoint, socket_dir, script="exit 0")

    assert accounting(agent) == [("", ("show running-config",))]
    [start] = events(syslog.lines(), "session_start")
    assert start.fields["ssh_original_command"] == "show running-config"


@pytest.mark.timeout(50)
def test_slow_agent_gets_every_record_in_order(
    agent: FakeAgent, syslog: SyslogReceiver, socket_dir: Path
) -> None:
    agent.load_policy(AUTHORIZATION + ACCOUNTING_SLOW)
    assert run(agent.endpoint, socket_dir) == echoed()

    assert accounting(agent) == [SESSION_RECORD, *EXPECTED_EXECS]
    assert events(syslog.lines(), "accounting_failure") == []


@pytest.mark.timeout(50)
def test_agent_that_fails_then_recovers_gets_every_record_once(
    agent: FakeAgent, syslog: SyslogReceiver, socket_dir: Path
) -> None:
    agent.load_policy(AUTHORIZATION + ACCOUNTING_DOWN)
    gate = socket_dir / "gate"
    os.mkfifo(gate)
    # The session waits on the fifo (read is a bash builtin: no exec, no record) until the test
    # has seen two failed attempts and made the agent healthy again.
    script = f"read go < {gate}; {SCRIPT}"
    argv = wrapper_argv(("/bin/bash", "-c", script), endpoint=agent.endpoint)
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=socket_dir
    ) as process:
        try:
            deadline = time.monotonic() + 20
            while len(accounting(agent)) < 2:
                assert time.monotonic() < deadline, "the wrapper did not retry its record"
                assert process.poll() is None, process.communicate()
                time.sleep(0.01)
            agent.load_policy(AUTHORIZATION + ACCOUNTING_OK)
            with gate.open("w") as writer:
                writer.write("go\n")
            stdout, stderr = process.communicate(timeout=40)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, stderr
    assert stdout == echoed()

    records = accounting(agent)
    attempts = records.index(EXPECTED_EXECS[0])
    full_script = ("", ("/bin/bash", "-c", script))
    # At least two failed attempts and one that got through, all of the same first record; then
    # every exec record exactly once.
    assert attempts >= 3
    assert records[:attempts] == [full_script] * attempts
    assert records[attempts:] == EXPECTED_EXECS
    lines = syslog.lines()
    assert events(lines, "accounting_failure") == []
    assert len(events(lines, "accounting_outage")) == 1
    [recovery] = events(lines, "accounting_recovery")
    assert int(recovery.fields["failed_attempts"]) == attempts - 1


@pytest.mark.timeout(50)
def test_agent_that_never_takes_a_record_gives_one_syslog_line_each(
    agent: FakeAgent, syslog: SyslogReceiver, socket_dir: Path
) -> None:
    agent.load_policy(AUTHORIZATION + ACCOUNTING_DOWN)
    assert run(agent.endpoint, socket_dir) == echoed()

    failures = events(syslog.lines(), "accounting_failure")
    assert [
        (line.fields["command"], tuple(line.fields["command_arguments"].split(" ")))
        for line in failures
    ] == [("", ("/bin/bash", "-c", *SCRIPT.split(" "))), *EXPECTED_EXECS]
    for line in failures:
        assert line.fields["user"] == "alice"
        assert (line.fields["port"], line.fields["rem_addr"]) == ("pts/test", "192.0.2.7")
        assert "no TACACS+ server reachable" in line.fields["reason"]
    # The agent only ever saw the first record: order is never traded for delivery.
    assert set(accounting(agent)) == {SESSION_RECORD}


@pytest.mark.timeout(50)
def test_no_agent_with_fail_open_logs_every_record(
    syslog: SyslogReceiver, socket_dir: Path
) -> None:
    script = "/usr/bin/echo 1; /usr/bin/echo 2; /usr/bin/id -u >/dev/null"
    assert (
        run(str(socket_dir / "no-agent.sock"), socket_dir, script=script, fail_policy="open")
        == "1\n2\n"
    )

    lines = syslog.lines()
    failures = events(lines, "accounting_failure")
    assert [(f.fields["command"], f.fields["command_arguments"]) for f in failures] == [
        ("", f"/bin/bash -c {script}"),
        ("/usr/bin/echo", "1"),
        ("/usr/bin/echo", "2"),
    ]
    opened = [
        line for line in events(lines, "exec_allowed") if line.fields["basis"] == "fail-open"
    ]
    assert [line.fields["argv"] for line in opened] == ["/usr/bin/echo 1", "/usr/bin/echo 2"]


@pytest.mark.timeout(50)
def test_records_are_sent_while_the_session_runs(
    agent: FakeAgent, syslog: SyslogReceiver, socket_dir: Path
) -> None:
    """Accounting happens during the session, not only in the flush at its end."""
    agent.load_policy(AUTHORIZATION + ACCOUNTING_OK)
    gate = socket_dir / "gate"
    os.mkfifo(gate)
    argv = wrapper_argv(
        ("/bin/bash", "-c", f"/usr/bin/echo first; read go < {gate}"), endpoint=agent.endpoint
    )
    seen: list[tuple[str, tuple[str, ...]]] = []
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=socket_dir
    ) as process:
        try:
            deadline = time.monotonic() + 20
            while ("/usr/bin/echo", ("first",)) not in accounting(agent):
                assert time.monotonic() < deadline, f"no record while running: {accounting(agent)}"
                time.sleep(0.01)
            seen = accounting(agent)
            assert process.poll() is None
            threading.Thread(target=lambda: gate.write_text("go\n"), daemon=True).start()
            process.communicate(timeout=40)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0
    assert seen[-1] == ("/usr/bin/echo", ("first",))


def test_records_queued_when_the_wrapper_is_killed_are_lost_known_limit(
    agent: FakeAgent, syslog: SyslogReceiver, socket_dir: Path
) -> None:
    """Known limit: SIGKILL leaves no time to flush, nor to log what was never sent."""
    # The session-start record (empty command) is never answered, so the exec record queues
    # behind it: records go out one at a time, in order.
    agent.load_policy(
        AUTHORIZATION + '[[rule]]\nrpc = "accounting"\ncmd = ""\nhang = true\n' + ACCOUNTING_OK
    )
    marker = socket_dir / "ran"
    argv = wrapper_argv(
        ("/bin/bash", "-c", f"/usr/bin/touch {marker}; read -t 20 <> <(:)"),
        endpoint=agent.endpoint,
    )
    with subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=socket_dir,
        start_new_session=True,
    ) as process:
        try:
            deadline = time.monotonic() + 20
            while not (marker.exists() and accounting(agent)):
                assert time.monotonic() < deadline, "the session never ran its command"
                time.sleep(0.01)
            process.kill()
            process.wait()
        finally:
            # The session's own processes outlive the killed wrapper; end them too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    assert accounting(agent) == [("", ("/bin/bash", "-c", argv[-1]))]
    assert events(syslog.lines(), "accounting_failure") == []
