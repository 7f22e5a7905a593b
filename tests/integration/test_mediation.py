"""Every exec of a wrapped session is mediated: real kernel filter, fake agent on a Unix socket.

Each test runs the wrapper as a user's login would and asserts what that user, or the agent,
sees: exit status, stdout and stderr, files written, and the requests the agent recorded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from wrapper_runner import RunWrapper, wrapper_argv

from fakeagent import FakeAgent

POLICY = """
[[rule]]
name = "whoami is denied"
cmd = "/usr/bin/whoami"
status = "FAIL"
server = "tacacs-test"
server_message = "whoami is not for you"

[[rule]]
name = "date is slow"
cmd = "/usr/bin/date"
status = "PASS_ADD"
delay_ms = 2000

[[rule]]
name = "stat hangs"
cmd = "/usr/bin/stat"
hang = true

[default]
status = "PASS_ADD"
"""


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[FakeAgent]:
    with FakeAgent(listen=f"unix:{tmp_path}/agent/tacacs.sock", policy=POLICY) as fake:
        yield fake


def commands(agent: FakeAgent) -> list[str | None]:
    """The cmd of every exec authorization the agent saw, in order (the session request,
    whose cmd is empty, left out)."""
    return [r.cmd for r in agent.requests if r.rpc == "authorization" and r.cmd]


def request_for(agent: FakeAgent, cmd: str) -> tuple[str, ...]:
    """The cmd-args of the first authorization for ``cmd``."""
    for request in agent.requests:
        if request.rpc == "authorization" and request.cmd == cmd:
            return request.cmd_args
    raise AssertionError(f"the agent was never asked about {cmd}: {commands(agent)}")


def test_session_request_carries_identity(agent: FakeAgent, run_wrapper: RunWrapper) -> None:
    result = run_wrapper("/bin/bash", "-c", "exit 0", endpoint=agent.endpoint)
    assert result.returncode == 0, result.stderr
    session = agent.requests[0]
    assert session.rpc == "authorization"
    assert session.arg("service") == "shell"
    assert session.cmd == ""
    assert (session.user, session.port, session.remote_address) == (
        "alice",
        "pts/test",
        "192.0.2.7",
    )
    assert session.privilege_level == 1
    assert session.authentication_context == "TACACS_ASCII"


def test_allowlisted_shell_needs_no_round_trip(agent: FakeAgent, run_wrapper: RunWrapper) -> None:
    result = run_wrapper("/bin/bash", "-c", "/usr/bin/id -u", endpoint=agent.endpoint)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(os.getuid())
    assert commands(agent) == []


def test_nested_shells_are_mediated(agent: FakeAgent, run_wrapper: RunWrapper) -> None:
    script = "bash -c \"sh -c '/usr/bin/echo nested deep'\""
    result = run_wrapper("/bin/bash", "-c", script, endpoint=agent.endpoint)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "nested deep\n"
    assert request_for(agent, "/usr/bin/echo") == ("nested", "deep")


def test_script_and_its_commands_are_mediated(
    agent: FakeAgent, run_wrapper: RunWrapper, tmp_path: Path
) -> None:
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\n/usr/bin/echo from script\nwhoami\n/usr/bin/echo after\n")
    script.chmod(0o755)
    result = run_wrapper(str(script), "arg1", endpoint=agent.endpoint)
    assert result.stdout == "from script\nafter\n"
    assert request_for(agent, str(script)) == ("arg1",)
    assert "/usr/bin/whoami" in commands(agent)
    assert result.returncode == 0


def test_pipeline_subshell_find_xargs(
    agent: FakeAgent, run_wrapper: RunWrapper, tmp_path: Path
) -> None:
    (tmp_path / "needle").write_text("")
    script = (
        "echo a b c | /usr/bin/tr a-z A-Z | /usr/bin/cat; "
        "( /usr/bin/echo in subshell ); "
        f"/usr/bin/find {tmp_path} -name needle -exec /usr/bin/echo found {{}} \\; ; "
        "printf 'x\\ny\\n' | /usr/bin/xargs /usr/bin/echo xargs"
    )
    result = run_wrapper("/bin/bash", "-c", script, endpoint=agent.endpoint)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "A B C",
        "in subshell",
        f"found {tmp_path}/needle",
        "xargs x y",
    ]
    seen = commands(agent)
    for cmd in ("/usr/bin/tr", "/usr/bin/cat", "/usr/bin/find", "/usr/bin/xargs"):
        assert cmd in seen
    assert request_for(agent, "/usr/bin/tr") == ("a-z", "A-Z")
    echoes = [r.cmd_args for r in agent.requests if r.cmd == "/usr/bin/echo"]
    assert ("found", f"{tmp_path}/needle") in echoes
    assert ("xargs", "x", "y") in echoes


def test_exec_from_python_is_mediated(
    agent: FakeAgent, run_wrapper: RunWrapper, tmp_path: Path
) -> None:
    script = tmp_path / "exec.py"
    script.write_text(
        "import os, subprocess, sys\n"
        "subprocess.run(['/usr/bin/echo', 'via subprocess'], check=True)\n"
        "try:\n"
        "    subprocess.run(['/usr/bin/whoami'])\n"
        "except PermissionError as error:\n"
        "    print(type(error).__name__, file=sys.stderr)\n"
        "os.execv('/usr/bin/echo', ['echo', 'via execv'])\n"
    )
    result = run_wrapper(sys.executable, str(script), endpoint=agent.endpoint)
    assert result.stdout == "via subprocess\nvia execv\n"
    assert "PermissionError" in result.stderr
    assert request_for(agent, "/usr/bin/whoami") == ()
    assert result.returncode == 0


def test_denied_command_mid_script_and_the_script_goes_on(
    agent: FakeAgent, run_wrapper: RunWrapper
) -> None:
    result = run_wrapper(
        "/bin/bash", "-c", "/usr/bin/echo one; whoami; /usr/bin/echo two", endpoint=agent.endpoint
    )
    assert result.stdout == "one\ntwo\n"
    assert (
        "session-wrapper: /usr/bin/whoami: denied by TACACS+ (server: tacacs-test): "
        "whoami is not for you\n" in result.stderr
    )
    assert "Permission denied" in result.stderr
    assert result.returncode == 0
    assert "/usr/bin/whoami" in commands(agent)


@pytest.mark.parametrize(("script", "status"), [("exit 7", 7), ("kill -KILL $$", 128 + 9)])
def test_exit_status_carried_through(
    agent: FakeAgent, run_wrapper: RunWrapper, script: str, status: int
) -> None:
    result = run_wrapper("/bin/bash", "-c", script, endpoint=agent.endpoint)
    assert result.returncode == status


def test_missing_command_is_127(agent: FakeAgent, run_wrapper: RunWrapper) -> None:
    result = run_wrapper("/no/such/program", endpoint=agent.endpoint)
    assert result.returncode == 127
    assert "session-wrapper: child setup failed: exec: No such file or directory" in result.stderr
    assert commands(agent) == []


def test_denied_initial_command_is_126(agent: FakeAgent, run_wrapper: RunWrapper) -> None:
    result = run_wrapper("/usr/bin/whoami", endpoint=agent.endpoint)
    assert result.returncode == 126
    assert "session-wrapper: /usr/bin/whoami: denied by TACACS+" in result.stderr
    assert "child setup failed: exec: Permission denied" in result.stderr


def test_path_search_misses_cost_no_round_trip(agent: FakeAgent, run_wrapper: RunWrapper) -> None:
    result = run_wrapper(
        "/usr/bin/env",
        "PATH=/nonexistent:/also/missing:/usr/bin",
        "echo",
        "found",
        endpoint=agent.endpoint,
    )
    assert result.stdout == "found\n", result.stderr
    assert commands(agent) == ["/usr/bin/echo"]


@pytest.mark.timeout(30)
def test_background_job_outliving_the_shell_keeps_the_session(
    agent: FakeAgent, run_wrapper: RunWrapper, tmp_path: Path
) -> None:
    marker = tmp_path / "late"
    script = f"( /usr/bin/sleep 1; /usr/bin/touch {marker} ) </dev/null >/dev/null 2>&1 & exit 3"
    result = run_wrapper("/bin/bash", "-c", script, endpoint=agent.endpoint)
    # The wrapper returned only after the job ended: its late exec already happened.
    assert marker.exists()
    assert result.returncode == 3
    assert request_for(agent, "/usr/bin/touch") == (str(marker),)


@pytest.mark.timeout(30)
def test_slow_authorization_does_not_block_another_exec(
    agent: FakeAgent, run_wrapper: RunWrapper, tmp_path: Path
) -> None:
    date_out = tmp_path / "date.out"
    script = (
        f"/usr/bin/date > {date_out} & "
        "read -t 0.3 <> <(:); "
        "/usr/bin/echo fast; "
        f"if [ -s {date_out} ]; then echo date-done; else echo date-held; fi; wait"
    )
    result = run_wrapper("/bin/bash", "-c", script, endpoint=agent.endpoint, timeout_ms=6000)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "fast\ndate-held\n"
    assert date_out.read_text().strip()


@pytest.mark.timeout(20)
def test_fail_closed_without_agent(run_wrapper: RunWrapper, tmp_path: Path) -> None:
    endpoint = str(tmp_path / "absent.sock")
    result = run_wrapper("/bin/bash", "-c", f"/usr/bin/touch {tmp_path}/ran", endpoint=endpoint)
    assert result.returncode == 1
    assert f"session-wrapper: authorization service unreachable at {endpoint}" in result.stderr
    assert not (tmp_path / "ran").exists()


@pytest.mark.timeout(20)
def test_fail_open_without_agent(run_wrapper: RunWrapper, tmp_path: Path) -> None:
    endpoint = str(tmp_path / "absent.sock")
    result = run_wrapper(
        "/bin/bash",
        "-c",
        f"/usr/bin/touch {tmp_path}/ran",
        endpoint=endpoint,
        fail_policy="open",
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ran").exists()
    assert "allowed by fail policy open" in result.stderr


@pytest.mark.timeout(20)
def test_hung_agent_honours_the_timeout_fail_closed(
    tmp_path: Path, run_wrapper: RunWrapper
) -> None:
    with FakeAgent(listen=f"unix:{tmp_path}/hung.sock", policy="[default]\nhang = true\n") as hung:
        result = run_wrapper(
            "/bin/bash",
            "-c",
            f"/usr/bin/touch {tmp_path}/ran",
            endpoint=hung.endpoint,
            timeout_ms=500,
        )
        assert [r.cmd for r in hung.requests] == [""]
    assert result.returncode == 1
    assert "authorization service unreachable" in result.stderr
    assert "(timed out)" in result.stderr
    assert not (tmp_path / "ran").exists()


@pytest.mark.timeout(20)
def test_hung_exec_authorization_fail_open_and_closed(
    agent: FakeAgent, run_wrapper: RunWrapper, tmp_path: Path
) -> None:
    closed = run_wrapper(
        "/bin/bash", "-c", f"/usr/bin/stat {tmp_path}", endpoint=agent.endpoint, timeout_ms=400
    )
    assert "/usr/bin/stat: authorization service unavailable (timed out)" in closed.stderr
    assert closed.returncode == 126
    opened = run_wrapper(
        "/bin/bash",
        "-c",
        f"/usr/bin/stat -c %n {tmp_path}",
        endpoint=agent.endpoint,
        timeout_ms=400,
        fail_policy="open",
    )
    assert opened.stdout == f"{tmp_path}\n"
    assert opened.returncode == 0


SYSCALL_PROBE = r"""
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
def probe(name, number, *args):
    result = libc.syscall(number, *[ctypes.c_long(a) for a in args])
    print(name, "ok" if result >= 0 else errno.errorcode[ctypes.get_errno()])
parent = os.getppid()
probe("ptrace", 101, 16, parent, 0, 0)             # PTRACE_ATTACH to the supervisor
probe("process_vm_writev", 311, parent, 0, 0, 0, 0, 0)
probe("process_vm_readv", 310, parent, 0, 0, 0, 0, 0)
probe("userfaultfd", 323, 0)
probe("unshare", 272, 0x10000000)                  # CLONE_NEWUSER
probe("setns", 308, 0, 0)
probe("chroot", 161, ctypes.addressof(ctypes.create_string_buffer(b"/tmp")))
probe("pidfd_getfd", 438, 0, 0, 0)
probe("mount", 165, 0, 0, 0, 0, 0)
probe("clone_newns", 56, 0x00020000 | 17, 0, 0, 0, 0)
probe("clone3", 435, 0, 0)
"""


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="syscall numbers are x86_64's")
def test_tampering_syscalls_get_eperm(
    agent: FakeAgent, run_wrapper: RunWrapper, tmp_path: Path
) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(SYSCALL_PROBE)
    result = run_wrapper(sys.executable, str(probe), endpoint=agent.endpoint)
    assert result.returncode == 0, result.stderr
    outcome = dict(line.split() for line in result.stdout.splitlines())
    for name in (
        "ptrace",
        "process_vm_writev",
        "process_vm_readv",
        "userfaultfd",
        "unshare",
        "setns",
        "chroot",
        "pidfd_getfd",
        "mount",
        "clone_newns",
    ):
        assert outcome[name] == "EPERM", (name, outcome)
    assert outcome["clone3"] == "ENOSYS"


def test_second_listener_in_the_session_is_refused(
    agent: FakeAgent, run_wrapper: RunWrapper
) -> None:
    code = (
        "from session_wrapper.kernel import seccomp_filter as f\n"
        "f.set_no_new_privs()\n"
        "try:\n"
        "    f.load(f.build_bpf())\n"
        "except OSError as error:\n"
        "    print('refused', error.strerror)\n"
    )
    result = run_wrapper(sys.executable, "-c", code, endpoint=agent.endpoint)
    assert result.stdout == "refused Device or resource busy\n", result.stderr


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x32 exists only on x86_64")
def test_foreign_abi_syscall_kills_the_process(agent: FakeAgent, run_wrapper: RunWrapper) -> None:
    # x32 execve: 59 | __X32_SYSCALL_BIT. The filter's arch check kills the whole process.
    code = (
        "import ctypes\n"
        "libc = ctypes.CDLL(None)\n"
        "libc.syscall(ctypes.c_long(0x40000000 | 59), b'/usr/bin/whoami', 0, 0)\n"
        "print('survived')\n"
    )
    result = run_wrapper(sys.executable, "-c", code, endpoint=agent.endpoint)
    assert result.returncode == 128 + signal.SIGSYS
    assert "survived" not in result.stdout
    assert "/usr/bin/whoami" not in commands(agent)


@pytest.mark.timeout(30)
def test_killed_wrapper_leaves_no_exec_able_to_run(agent: FakeAgent, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    marker = tmp_path / "marker"
    status = tmp_path / "status"
    script = f"echo > {ready}; read -t 3 <> <(:); /usr/bin/touch {marker}; echo $? > {status}"
    argv = wrapper_argv(["/bin/bash", "-c", script], endpoint=agent.endpoint)
    wrapper = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path
    )
    deadline = time.monotonic() + 15
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists(), "the session never started"
    wrapper.kill()
    wrapper.wait()
    while not status.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    # bash reports 126 when the exec fails: the kernel answered ENOSYS, nothing ran.
    assert status.read_text().strip() == "126"
    assert not marker.exists()
    assert "/usr/bin/touch" not in commands(agent)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("number", [signal.SIGHUP, signal.SIGTERM])
def test_hangup_or_term_reaches_every_process_and_the_wrapper_exits(
    agent: FakeAgent, tmp_path: Path, number: signal.Signals
) -> None:
    pids = tmp_path / "pids"
    script = (
        f"/usr/bin/sleep 60 </dev/null >/dev/null 2>&1 & echo $! >> {pids}; "
        f"setsid /usr/bin/sleep 60 </dev/null >/dev/null 2>&1 & echo $! >> {pids}; "
        f"echo $$ >> {pids}; wait"
    )
    argv = wrapper_argv(["/bin/bash", "-c", script], endpoint=agent.endpoint)
    wrapper = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path, text=True
    )
    deadline = time.monotonic() + 15
    while len(_lines(pids)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    session_pids = [int(pid) for pid in _lines(pids)]
    assert len(session_pids) == 3
    wrapper.send_signal(number)
    # The wrapper exits with the status of its command, which the forwarded signal killed.
    assert wrapper.wait(timeout=15) == 128 + number
    for pid in session_pids:
        assert not Path(f"/proc/{pid}").exists(), f"session process {pid} survived"


@pytest.mark.timeout(30)
def test_process_ignoring_sighup_is_killed_after_the_grace_period(
    agent: FakeAgent, tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    script = f"trap '' HUP; echo > {ready}; while :; do read -t 1 <> <(:); done"
    argv = wrapper_argv(["/bin/bash", "-c", script], endpoint=agent.endpoint)
    wrapper = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path
    )
    deadline = time.monotonic() + 15
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    wrapper.send_signal(signal.SIGHUP)
    # SIGHUP is ignored; the SIGKILL after the grace period is not.
    assert wrapper.wait(timeout=15) == 128 + signal.SIGKILL


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("number", "trap"),
    [(signal.SIGINT, "INT"), (signal.SIGQUIT, "QUIT"), (signal.SIGTSTP, "TSTP")],
)
def test_keyboard_signals_reach_the_session_not_the_wrapper(
    agent: FakeAgent, tmp_path: Path, number: signal.Signals, trap: str
) -> None:
    ready = tmp_path / "ready"
    script = (
        f"trap 'echo got-{trap}; exit 5' {trap}; echo > {ready}; "
        "while :; do read -t 1 <> <(:); done"
    )
    argv = wrapper_argv(["/bin/bash", "-c", script], endpoint=agent.endpoint)
    wrapper = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 15
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    # A terminal's Ctrl-C, Ctrl-\ and Ctrl-Z signal the whole foreground process group.
    os.killpg(wrapper.pid, number)
    stdout, _stderr = wrapper.communicate(timeout=15)
    assert stdout == f"got-{trap}\n"
    assert wrapper.returncode == 5


@pytest.mark.timeout(30)
def test_signals_during_a_slow_decision_do_not_repeat_it(
    agent: FakeAgent, run_wrapper: RunWrapper, tmp_path: Path
) -> None:
    # SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: without it every signal that interrupts the held
    # exec makes the kernel notify it again, and the agent would be asked over and over. The
    # signal is handled (with SA_RESTART) before the exec and ignored by default after it.
    script = tmp_path / "signalled.py"
    script.write_text(
        "import os, signal, time\n"
        "signal.signal(signal.SIGURG, lambda *_: None)\n"
        "signal.siginterrupt(signal.SIGURG, False)\n"
        "target = os.getpid()\n"
        "if os.fork() == 0:\n"
        "    for _ in range(150):\n"
        "        os.kill(target, signal.SIGURG)\n"
        "        time.sleep(0.01)\n"
        "    os._exit(0)\n"
        "os.execv('/usr/bin/date', ['date', '+%Y'])\n"
    )
    result = run_wrapper(sys.executable, str(script), endpoint=agent.endpoint, timeout_ms=6000)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().isdigit()
    assert commands(agent).count("/usr/bin/date") == 1


def test_wrapper_inside_a_session_is_refused(agent: FakeAgent, run_wrapper: RunWrapper) -> None:
    inner = wrapper_argv(["/usr/bin/true"], endpoint=agent.endpoint)
    result = run_wrapper(*inner, endpoint=agent.endpoint)
    assert (
        "session-wrapper: child setup failed: install filter: Device or resource busy"
        in result.stderr
    )
    assert result.returncode == 1
