"""SSH sessions through a real sshd whose ForceCommand shim starts session-wrapper.

Each scenario runs on both targets of conftest.py (a private sshd on this host, and the e2e
image under Docker). The tests look only at what an SSH user and an operator can observe: the
client's output and exit status, files the session wrote, the processes left in the target, and
the requests the fake agent recorded.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pexpect
import pytest
from pexpect.popen_spawn import PopenSpawn
from syslog_receiver import SyslogReceiver, events

from fakeagent.recording import RecordedRequest
from fakeagent.server import FakeAgent

if TYPE_CHECKING:
    from tests.e2e.conftest import Target

DENY_LINE = re.compile(
    r"^session-wrapper: \S*/whoami: denied by TACACS\+ \(server: [^)]*\): "
    r"whoami is not for e2e users\r?$",
    re.MULTILINE,
)
PROMPT = "e2e-ready> "
# Typed as two quoted halves, so that the terminal's echo of this line never matches PROMPT.
SET_PROMPT = "PS1='e2e''-ready> '"


def session_requests(agent: FakeAgent) -> list[RecordedRequest]:
    """The session requests: authorization with an empty ``cmd``."""
    return [r for r in agent.requests if r.rpc == "authorization" and not r.cmd]


def exec_requests(agent: FakeAgent, program: str) -> list[RecordedRequest]:
    """Authorization requests for execs of a program of this name, whatever its folder."""
    return [
        r
        for r in agent.requests
        if r.rpc == "authorization" and r.cmd and r.cmd.rsplit("/", 1)[-1] == program
    ]


def eventually(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Polls ``check`` until it is true or ``timeout`` seconds have passed; its last answer."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return check()
        time.sleep(0.2)
    return True


def spawn_ssh(target: Target, command: str | None = None) -> PopenSpawn:
    """ssh -tt, driven like a person at a terminal: the remote side gets a pseudo-terminal.

    PopenSpawn rather than pexpect.spawn: spawn forks this process, whose fake agent has gRPC
    threads running, and gRPC's fork handlers then sometimes break the child before its exec.
    """
    return PopenSpawn(
        target.ssh_argv(command, tty=True), timeout=20, encoding="utf-8", codec_errors="replace"
    )


def stop(child: PopenSpawn) -> None:
    """Kills the ssh client if it still runs, so a failed test leaves no client behind."""
    if child.proc.poll() is None:
        child.proc.kill()
        child.proc.wait()


def finish(child: PopenSpawn) -> int | None:
    """Waits for the ssh client to exit (bounded by the test's timeout); its exit status."""
    child.expect(pexpect.EOF)
    return child.wait()


@pytest.mark.timeout(60)
def test_command_runs_as_the_user_after_the_session_request(
    target: Target, agent: FakeAgent
) -> None:
    done = target.ssh("/usr/bin/id -u")

    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode() == f"{target.uid}\n"
    [session] = session_requests(agent)
    assert session.user == target.user
    assert session.port == "ssh"
    assert session.remote_address == target.rem_addr
    assert session.arg("service") == "shell"


@pytest.mark.timeout(60)
def test_denied_command_prints_the_deny_line_and_fails(target: Target, agent: FakeAgent) -> None:
    done = target.ssh("whoami")

    assert done.returncode != 0
    assert DENY_LINE.search(done.stderr.decode()), done.stderr.decode()
    assert target.user not in done.stdout.decode()
    assert len(exec_requests(agent, "whoami")) == 1


@pytest.mark.timeout(60)
def test_exit_status_of_the_command_reaches_the_client(target: Target, agent: FakeAgent) -> None:
    done = target.ssh("exit 7")

    assert done.returncode == 7, done.stderr.decode()
    assert len(session_requests(agent)) == 1


@pytest.mark.timeout(90)
def test_interactive_shell_runs_typed_commands_and_survives_a_deny(
    target: Target, agent: FakeAgent
) -> None:
    child = spawn_ssh(target)
    try:
        child.sendline(SET_PROMPT)
        child.expect_exact(PROMPT)
        child.sendline("/bin/echo typed-$((6*7))")
        child.expect_exact("typed-42")
        child.expect_exact(PROMPT)
        child.sendline("whoami")
        child.expect(r"session-wrapper: \S*/whoami: denied by TACACS\+")
        child.expect_exact(PROMPT)
        child.sendline("/bin/echo still-here-$((1+2))")
        child.expect_exact("still-here-3")
        child.expect_exact(PROMPT)
        child.sendline("exit 0")
        status = finish(child)
    finally:
        stop(child)

    assert status == 0
    [session] = session_requests(agent)
    assert session.port.startswith("/dev/pts/"), session.port
    assert session.remote_address == target.rem_addr
    [echo_typed] = [r for r in exec_requests(agent, "echo") if r.cmd_args == ("typed-42",)]
    assert echo_typed.port == session.port
    assert len(exec_requests(agent, "whoami")) == 1


@pytest.mark.timeout(60)
def test_session_waits_for_a_background_job_that_outlives_the_shell(
    target: Target, agent: FakeAgent
) -> None:
    marker = f"drain-{secrets.token_hex(4)}"
    # The job lets go of the session's stdio, so only the wrapper's draining keeps the
    # connection open until it ends; it runs its exec two seconds after the shell has exited.
    job = f"(/bin/sleep 2; /bin/echo drained > ~/{marker}) </dev/null >/dev/null 2>&1 & exit 0"

    done = target.ssh(job)

    assert done.returncode == 0, done.stderr.decode()
    # Read as soon as ssh returned: the file is there only if the session ended after the job.
    assert target.read_home_file(marker) == "drained\n"
    assert [r.cmd_args for r in exec_requests(agent, "echo")] == [("drained",)]
    assert eventually(lambda: target.user_processes() == []), target.user_processes()


@pytest.mark.timeout(60)
def test_fail_closed_refuses_the_session_when_the_agent_is_down(
    target: Target, agent: FakeAgent
) -> None:
    target.set_shim_flags("--fail-policy", "closed", "--authorization-timeout-ms", "2000")
    agent.stop()

    done = target.ssh("/bin/echo must-not-run")

    assert done.returncode != 0
    assert b"must-not-run" not in done.stdout
    stderr = done.stderr.decode()
    assert f"authorization service unreachable at {target.endpoint}" in stderr, stderr


@pytest.mark.timeout(60)
def test_fail_open_lets_the_session_run_when_the_agent_is_down(
    target: Target, agent: FakeAgent
) -> None:
    target.set_shim_flags("--fail-policy", "open", "--authorization-timeout-ms", "2000")
    agent.stop()

    done = target.ssh("/bin/echo ran-$((2*21))")

    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b"ran-42\n"


@pytest.mark.timeout(90)
def test_killed_client_hangs_up_the_session_and_leaves_no_process(
    target: Target, agent: FakeAgent
) -> None:
    marker = f"hup-{secrets.token_hex(4)}"
    # The trap uses the shell's builtin echo: it shows the signal arrived, whatever the wrapper
    # does with execs while it winds the session down.
    command = (
        f"trap 'echo hup > ~/{marker}; exit 1' HUP; "
        "/bin/echo ready-$((3*3)); /bin/sleep 300 & wait"
    )
    child = spawn_ssh(target, command)
    try:
        child.expect_exact("ready-9")
        assert eventually(lambda: any("sleep 300" in p for p in target.user_processes()))
        # SIGKILL: the client vanishes without a word, as when a laptop's network goes away.
        child.proc.kill()
        child.proc.wait()
    finally:
        stop(child)

    assert eventually(lambda: target.user_processes() == []), target.user_processes()
    assert target.read_home_file(marker) == "hup\n"
    assert len(session_requests(agent)) == 1


@pytest.mark.timeout(60)
def test_pipeline_in_the_command_keeps_its_output(target: Target, agent: FakeAgent) -> None:
    done = target.ssh("echo data | cat")

    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b"data\n"
    assert len(exec_requests(agent, "cat")) == 1


@pytest.mark.timeout(60)
def test_stdin_reaches_the_command_unchanged(target: Target, agent: FakeAgent) -> None:
    payload = os.urandom(256 * 1024)

    done = target.ssh("cat", input=payload)

    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == payload
    assert len(session_requests(agent)) == 1


# The login-shell shim, in the e2e image only: that is where it is installed as a login shell.


@pytest.mark.docker
@pytest.mark.timeout(60)
def test_login_shell_shim_wraps_a_command_without_forcecommand(
    login_shell_users: dict[str, Target], login_shell_agent: FakeAgent
) -> None:
    user = login_shell_users["shell_only"]

    done = user.ssh("/bin/echo via-login-shell-$((5*5)); exit 3")

    assert done.returncode == 3, done.stderr.decode()
    assert done.stdout == b"via-login-shell-25\n"
    [session] = session_requests(login_shell_agent)
    assert (session.user, session.port) == (user.user, "ssh")
    assert [r.cmd_args for r in exec_requests(login_shell_agent, "echo")] == [
        ("via-login-shell-25",)
    ]


@pytest.mark.docker
@pytest.mark.timeout(60)
def test_login_shell_shim_wraps_an_interactive_login(
    login_shell_users: dict[str, Target], login_shell_agent: FakeAgent
) -> None:
    child = spawn_ssh(login_shell_users["shell_only"])
    try:
        child.sendline(SET_PROMPT)
        child.expect_exact(PROMPT)
        child.sendline("whoami")
        child.expect(r"session-wrapper: \S*/whoami: denied by TACACS\+")
        child.expect_exact(PROMPT)
        child.sendline("exit 0")
        status = finish(child)
    finally:
        stop(child)

    assert status == 0
    [session] = session_requests(login_shell_agent)
    assert session.port.startswith("/dev/pts/"), session.port


@pytest.mark.docker
@pytest.mark.timeout(60)
def test_login_shell_shim_under_forcecommand_starts_one_session(
    login_shell_users: dict[str, Target], login_shell_agent: FakeAgent
) -> None:
    done = login_shell_users["member"].ssh("exit 5")

    assert done.returncode == 5, done.stderr.decode()
    # A second session request would mean the shim ran inside a session of its own.
    assert len(session_requests(login_shell_agent)) == 1


@pytest.mark.timeout(60)
def test_accounting_record_and_syslog_deny_line_of_a_login(
    target: Target, agent: FakeAgent
) -> None:
    # The receiver stands in for /dev/log; it sits beside the agent socket, in the folder the
    # container sees as /run/tacacs. Mode 0666, as /dev/log is: the wrapper runs as the user.
    folder_in_target = target.endpoint.rsplit("/", 1)[0]
    receiver = SyslogReceiver(target.agent_socket.parent / "log.sock")
    receiver.path.chmod(0o666)
    try:
        target.set_shim_flags(
            "--fail-policy",
            "closed",
            "--authorization-timeout-ms",
            "3000",
            "--syslog-socket",
            f"{folder_in_target}/log.sock",
        )
        done = target.ssh("/usr/bin/echo accounted; whoami")
        lines = receiver.lines()
    finally:
        receiver.close()
        receiver.path.unlink()

    assert done.stdout.decode() == "accounted\n"
    accounting = [r for r in agent.requests if r.rpc == "accounting" and r.command]
    assert [(r.command, r.command_arguments) for r in accounting] == [
        ("/usr/bin/echo", ("accounted",))
    ]
    assert accounting[0].user == target.user
    [denied] = events(lines, "exec_denied")
    assert denied.fields["path"] == "/usr/bin/whoami"
    assert denied.fields["user"] == target.user
    assert "whoami is not for e2e users" in denied.fields["reason"]


# Known limits of the sshd side: what runs before the ForceCommand, shown as it is today.


@pytest.mark.timeout(60)
def test_user_rc_file_does_not_run_before_the_wrapper(target: Target, agent: FakeAgent) -> None:
    marker = f"{target.home}/rc-ran"
    rc = f"{target.home}/.ssh/rc"
    status, output = target.root(
        "sh",
        "-c",
        'printf "/usr/bin/touch %s\\n" "$1" > "$2" && chown "$3" "$2"',
        "sh",
        marker,
        rc,
        target.user,
    )
    assert status == 0, output
    try:
        done = target.ssh("/usr/bin/true")
        assert done.returncode == 0, done.stderr.decode()
        # PermitUserRC no in docker/sshd_config: sshd never ran the user's rc file.
        assert target.root("test", "-e", marker)[0] != 0
    finally:
        target.root("rm", "-f", rc, marker)


@pytest.mark.docker
@pytest.mark.timeout(60)
def test_bash_login_shell_runs_bashrc_before_the_wrapper_known_limit(
    container_user_factory: Callable[[str, str], Target], login_shell_agent: FakeAgent
) -> None:
    # sshd runs the ForceCommand as `SHELL -c FORCECOMMAND`; Debian's bash then reads ~/.bashrc,
    # a file the user can write, before the shim starts the wrapper. The deployment section says
    # to give such users /bin/sh or the login-shell shim; this shows what happens otherwise.
    # The rc file uses only builtins and records which `bash -c` read it.
    bash_user = container_user_factory("/bin/bash", "session-wrapper")
    home = bash_user.home
    status, output = bash_user.root(
        "sh",
        "-c",
        'printf "%s\\n" "echo \\"read by: \\$BASH_EXECUTION_STRING\\" >> $1/bashrc-ran" '
        '> "$1/.bashrc" && chown "$2" "$1/.bashrc"',
        "sh",
        home,
        bash_user.user,
    )
    assert status == 0, output

    done = bash_user.ssh("/usr/bin/true")

    assert done.returncode == 0, done.stderr.decode()
    status, readers = bash_user.root("cat", f"{home}/bashrc-ran")
    assert status == 0, readers
    # The outer bash, started by sshd to run the ForceCommand, ran the user's file before the
    # wrapper existed. (The session's own `bash -c` reads it again, inside the wrapper.)
    assert "read by: /usr/local/libexec/session-wrapper-shim" in readers.splitlines()
    assert len(session_requests(login_shell_agent)) == 1
