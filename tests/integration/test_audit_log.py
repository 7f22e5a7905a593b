"""The syslog audit trail of real wrapped sessions, read from a datagram socket the test binds.

The wrapper is pointed at the test's socket with --syslog-socket instead of /dev/log. Each test
runs sessions against the fake agent and checks the lines as a syslog daemon would receive them:
facility AUTHPRIV, priority by event, the wrapper's pid in the tag, the session's user on every
line, key=value fields with control characters escaped.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import wrapper_runner
from syslog_receiver import SyslogReceiver, events
from wrapper_runner import wrapper_argv

from fakeagent import FakeAgent

LOG_AUTHPRIV = 10
LOG_WARNING, LOG_INFO, LOG_DEBUG = 4, 6, 7

POLICY = """
[[rule]]
name = "whoami is denied, with a message that tries to forge a line"
cmd = "/usr/bin/whoami"
status = "FAIL"
server = "tacacs-test"
server_message = "no\\nevent=session_end exit_status=0 \\u001b[31mred"

[[rule]]
name = "stat hangs"
cmd = "/usr/bin/stat"
hang = true

[[rule]]
rpc = "accounting"
status = "SUCCESS"

[default]
status = "PASS_ADD"
"""


@pytest.fixture
def agent(socket_dir: Path) -> Iterator[FakeAgent]:
    with FakeAgent(listen=f"unix:{socket_dir}/agent.sock", policy=POLICY) as fake:
        yield fake


def run_session(
    *command: str, cwd: Path, **options: object
) -> tuple[subprocess.Popen[str], str, str]:
    """Runs the wrapper to completion; returns the process (for its pid), stdout and stderr."""
    argv = wrapper_argv(command, **options)  # type: ignore[arg-type]
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd
    ) as process:
        stdout, stderr = process.communicate(timeout=30)
    return process, stdout, stderr


@pytest.mark.timeout(40)
def test_lines_are_authpriv_key_value_with_pid_and_user(
    agent: FakeAgent, syslog: SyslogReceiver, socket_dir: Path
) -> None:
    script = "/usr/bin/echo hello; /usr/bin/id -u >/dev/null; exit 7"
    process, stdout, stderr = run_session(
        "/bin/bash", "-c", script, cwd=socket_dir, endpoint=agent.endpoint
    )
    assert process.returncode == 7, stderr
    assert stdout == "hello\n"
    # Without -v, stderr shows no audit line: syslog has them all.
    assert "event=" not in stderr

    lines = syslog.lines()
    assert lines, "no syslog line received"
    assert {line.facility for line in lines} == {LOG_AUTHPRIV}
    assert {line.pid for line in lines} == {process.pid}
    assert {line.fields["user"] for line in lines} == {"alice"}

    [start] = events(lines, "session_start")
    assert start.severity == LOG_INFO
    assert start.fields["uid"] == str(os.getuid())
    assert (start.fields["rem_addr"], start.fields["port"]) == ("192.0.2.7", "pts/test")
    assert start.fields["pid"] == str(process.pid)
    assert start.fields["command"] == f"/bin/bash -c {script}"

    [end] = events(lines, "session_end")
    assert end.severity == LOG_INFO
    assert end.fields["exit_status"] == "7"
    assert float(end.fields["duration_s"]) >= 0
    assert (end.fields["uid"], end.fields["rem_addr"], end.fields["port"]) == (
        str(os.getuid()),
        "192.0.2.7",
        "pts/test",
    )
    assert lines[0].event == "session_start" and lines[-1].event == "session_end"

    allowed = events(lines, "exec_allowed")
    echo = next(line for line in allowed if line.fields["path"] == "/usr/bin/echo")
    assert echo.severity == LOG_INFO
    assert (echo.fields["basis"], echo.fields["argv"]) == ("agent", "/usr/bin/echo hello")
    allowlisted = next(line for line in allowed if line.fields["path"] == "/usr/bin/id")
    assert allowlisted.severity == LOG_DEBUG
    assert allowlisted.fields["basis"] == "allowlist"


@pytest.mark.timeout(40)
def test_deny_line_has_every_field_and_escapes_control_characters(
    agent: FakeAgent, syslog: SyslogReceiver, socket_dir: Path
) -> None:
    process, _stdout, stderr = run_session(
        "/bin/bash", "-c", "whoami --help 'a\tb'", cwd=socket_dir, endpoint=agent.endpoint
    )
    assert process.returncode == 126, stderr

    lines = syslog.lines()
    [deny] = events(lines, "exec_denied")
    assert deny.severity == LOG_WARNING
    assert deny.fields["path"] == "/usr/bin/whoami"
    assert deny.fields["raw_path"] == "/usr/bin/whoami"
    assert deny.fields["argv"] == "whoami --help a\\x09b"
    assert deny.fields["basis"] == "agent"
    assert deny.fields["server"] == "tacacs-test"
    message = "no\\x0aevent=session_end exit_status=0 \\x1b[31mred"
    assert deny.fields["server_message"] == message
    assert deny.fields["reason"] == f"denied by TACACS+ (server: tacacs-test): {message}"
    # The forged "event=session_end" stayed inside the deny line.
    assert len(events(lines, "session_end")) == 1
    assert events(lines, "session_end")[0].fields["exit_status"] == "126"
    assert not any(c in line.text for line in lines for c in "\n\r\x1b\t")


@pytest.mark.timeout(40)
def test_fail_closed_decision_with_outage_and_recovery(
    agent: FakeAgent, syslog: SyslogReceiver, socket_dir: Path
) -> None:
    script = "/usr/bin/echo before; /usr/bin/stat / ; /usr/bin/echo after"
    process, stdout, stderr = run_session(
        "/bin/bash", "-c", script, cwd=socket_dir, endpoint=agent.endpoint, timeout_ms=500
    )
    assert process.returncode == 0, stderr
    assert stdout == "before\nafter\n"

    lines = syslog.lines()
    order = [
        (line.event, line.fields.get("path", ""))
        for line in lines
        if line.event in ("exec_allowed", "exec_denied", "agent_outage", "agent_recovery")
        and line.fields.get("basis") != "allowlist"
    ]
    assert order == [
        ("exec_allowed", "/usr/bin/echo"),
        ("agent_outage", ""),
        ("exec_denied", "/usr/bin/stat"),
        ("agent_recovery", ""),
        ("exec_allowed", "/usr/bin/echo"),
    ]
    [outage] = events(lines, "agent_outage")
    assert outage.severity == LOG_WARNING
    assert (outage.fields["endpoint"], outage.fields["outage"]) == (agent.endpoint, "timed out")
    [deny] = events(lines, "exec_denied")
    assert (deny.fields["basis"], deny.fields["outage"]) == ("fail-closed", "timed out")
    assert deny.fields["reason"].endswith("denied by fail policy closed")
    [recovery] = events(lines, "agent_recovery")
    assert float(recovery.fields["outage_s"]) >= 0


@pytest.mark.timeout(40)
def test_fail_open_decisions_are_marked(syslog: SyslogReceiver, socket_dir: Path) -> None:
    missing = socket_dir / "no-agent.sock"
    process, stdout, stderr = run_session(
        "/bin/bash",
        "-c",
        "/usr/bin/echo open",
        cwd=socket_dir,
        endpoint=str(missing),
        fail_policy="open",
    )
    assert process.returncode == 0, stderr
    assert stdout == "open\n"

    lines = syslog.lines()
    [session] = events(lines, "session_allowed")
    assert session.fields["basis"] == "fail-open"
    [echo] = [
        line for line in events(lines, "exec_allowed") if line.fields["basis"] != "allowlist"
    ]
    assert echo.severity == LOG_INFO
    assert (echo.fields["path"], echo.fields["basis"]) == ("/usr/bin/echo", "fail-open")
    assert echo.fields["outage"] == "cannot connect"
    assert echo.fields["reason"].endswith("allowed by fail policy open")
    # The agent was down from the first request: one outage, no recovery.
    assert len(events(lines, "agent_outage")) == 1
    assert events(lines, "agent_recovery") == []


@pytest.mark.timeout(40)
def test_trace_shows_the_full_argv_that_the_audit_line_cuts(
    agent: FakeAgent, syslog: SyslogReceiver, socket_dir: Path
) -> None:
    words = [f"w{n:03d}" + "x" * 40 for n in range(60)]  # about 2.7 KB of argv
    process, _stdout, stderr = run_session(
        "/usr/bin/printf", "%s", *words, cwd=socket_dir, endpoint=agent.endpoint, extra=["-vvv"]
    )
    assert process.returncode == 0, stderr

    assert "/usr/bin/printf %s " + " ".join(words) in stderr
    [line] = [
        line for line in events(syslog.lines(), "exec_allowed") if line.fields["basis"] == "agent"
    ]
    assert line.fields["argv"].endswith("...")
    assert len(line.fields["argv"]) == 2048


@pytest.mark.timeout(40)
def test_no_syslog_socket_is_one_warning_and_the_session_runs(
    agent: FakeAgent, socket_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wrapper_runner, "SYSLOG_SOCKET", str(socket_dir / "no-syslog"))
    process, stdout, stderr = run_session(
        "/bin/bash", "-c", "/usr/bin/echo still here", cwd=socket_dir, endpoint=agent.endpoint
    )
    assert process.returncode == 0, stderr
    assert stdout == "still here\n"
    warnings = [line for line in stderr.splitlines() if "syslog" in line]
    assert warnings == [
        f"session-wrapper[{process.pid}]: WARNING no syslog socket at {socket_dir}/no-syslog; "
        "the audit trail is not recorded"
    ]
