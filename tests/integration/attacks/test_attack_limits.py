"""Known limits, each shown as it behaves today: what an allowed program can do without exec,
ld.so, bash's enable -f, daemons outside the session, who may signal the supervisor, and
binfmt_misc handlers."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from attack_support import cmds, gcc
from wrapper_runner import RunWrapper, needs_root

from fakeagent import FakeAgent

LOADER = "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"


def test_allowed_interpreter_needs_no_exec(
    agent: FakeAgent, run_wrapper: RunWrapper, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    code = f"open({str(marker)!r}, 'w').write(open('/etc/hostname').read())"
    result = run_wrapper(sys.executable, "-c", code, endpoint=agent.endpoint)
    assert result.returncode == 0, result.stderr
    # Known limit: once Python (or any interpreter) is allowed, what it does is not mediated.
    assert marker.exists()


@pytest.mark.skipif(not Path(LOADER).exists(), reason="x86_64 glibc loader path")
def test_loader_is_mediated_but_must_be_denied_by_policy(
    agent: FakeAgent, run_wrapper: RunWrapper, agent_socket_dir: Path
) -> None:
    denied = run_wrapper(LOADER, "/usr/bin/whoami", endpoint=agent.endpoint)
    assert denied.returncode == 126
    assert denied.stdout == ""
    assert cmds(agent) == [LOADER]
    # Known limit: under a policy that allows the loader, it maps whoami itself, no exec.
    permissive = '[default]\nstatus = "PASS_ADD"\n'
    with FakeAgent(listen=f"unix:{agent_socket_dir}/p.sock", policy=permissive) as lax:
        ran = run_wrapper(LOADER, "/usr/bin/whoami", endpoint=lax.endpoint)
        assert cmds(lax) == [LOADER]
    assert ran.stdout.strip() == pwd.getpwuid(os.getuid()).pw_name


@pytest.mark.parametrize(
    "exec_dirs", [(), ("--exec-dirs", "/usr,/bin")], ids=["plain", "exec-dirs"]
)
def test_bash_enable_f_loads_code_without_exec(
    agent: FakeAgent,
    run_wrapper: RunWrapper,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    exec_dirs: tuple[str, ...],
) -> None:
    library = gcc("constructor.c", tmp_path / "builtin.so", "-shared", "-fPIC")
    marker = tmp_path / "marker"
    monkeypatch.setenv("MARKER", str(marker))
    run_wrapper(
        "/bin/bash", "-c", f"enable -f {library} nothing", endpoint=agent.endpoint, extra=exec_dirs
    )
    # Known limit: dlopen() is not an exec, and Landlock's execute right covers exec only, not
    # mapping a library: --exec-dirs does not stop it either.
    assert marker.read_text() == "loaded\n"
    assert str(library) not in cmds(agent)


@pytest.fixture
def outside_daemon(tmp_path: Path) -> Iterator[Path]:
    """A stand-in for at/cron/systemd: outside the session, it runs whatever job file appears."""
    spool = tmp_path / "spool"
    spool.mkdir()
    stop = threading.Event()

    def run_jobs() -> None:
        while not stop.is_set():
            for job in spool.glob("*.job"):
                os.system(f"/bin/sh {job}")  # noqa: S605 - the daemon's whole point
                job.unlink()
            time.sleep(0.05)

    thread = threading.Thread(target=run_jobs, daemon=True)
    thread.start()
    yield spool
    stop.set()
    thread.join()


def test_daemon_outside_the_session_runs_what_it_is_given(
    agent: FakeAgent, run_wrapper: RunWrapper, tmp_path: Path, outside_daemon: Path
) -> None:
    marker = tmp_path / "marker"
    script = f"echo '/usr/bin/whoami > {marker}' > {outside_daemon}/1.job"
    result = run_wrapper("/bin/bash", "-c", script, endpoint=agent.endpoint)
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 10
    while not (marker.exists() and marker.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    # Known limit: the daemon's front end (at, crontab, systemd-run) must be denied by policy;
    # what the daemon later runs never passes through this session.
    assert marker.read_text().strip() == pwd.getpwuid(os.getuid()).pw_name
    assert "/usr/bin/whoami" not in cmds(agent)


@needs_root
def test_supervisor_started_as_root_cannot_be_signalled_by_the_user(
    agent: FakeAgent, run_wrapper: RunWrapper
) -> None:
    nobody = pwd.getpwnam("nobody")
    result = run_wrapper(
        "/bin/bash",
        "-c",
        "kill -KILL $PPID; echo status $?",
        endpoint=agent.endpoint,
        uid=nobody.pw_uid,
        gid=nobody.pw_gid,
        user="nobody",
        cwd="/",
    )
    assert result.stdout == "status 1\n"
    assert "Operation not permitted" in result.stderr
    assert result.returncode == 0


BINFMT_MISC = Path("/proc/sys/fs/binfmt_misc")


@pytest.fixture
def binfmt_program(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A file run through a binfmt_misc handler (registered for its magic, removed afterwards)
    whose interpreter sleeps, then writes a marker. Yields the file and the marker."""
    mounted_here = False
    if not (BINFMT_MISC / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_MISC)], check=True)
        mounted_here = True
    marker = tmp_path / "marker"
    interpreter = tmp_path / "interpreter"
    interpreter.write_text(f"#!/bin/sh\n/usr/bin/sleep 1\n/usr/bin/touch {marker}\n")
    interpreter.chmod(0o755)
    program = tmp_path / "program"
    program.write_text("SWTESTMAGIC\n")
    program.chmod(0o755)
    name = f"swtest{os.getpid()}"
    # binfmt_misc.rst: :name:type:offset:magic:mask:interpreter:flags
    (BINFMT_MISC / "register").write_text(f":{name}:M::SWTESTMAGIC::{interpreter}:")
    try:
        yield program, marker
    finally:
        (BINFMT_MISC / name).write_text("-1")
        if mounted_here:
            subprocess.run(["umount", str(BINFMT_MISC)], check=False)


@needs_root
@pytest.mark.timeout(60)
def test_binfmt_misc_handler_is_not_followed_and_gets_killed_known_limit(
    agent: FakeAgent, run_wrapper: RunWrapper, binfmt_program: tuple[Path, Path]
) -> None:
    program, marker = binfmt_program
    result = run_wrapper(str(program), endpoint=agent.endpoint)
    # Known limit: the supervisor authorizes the file itself and knows nothing of the handler
    # the kernel runs for it; post-exec verification then finds another exe and kills it.
    assert str(program) in cmds(agent)
    assert "exec verification failed" in result.stderr
    assert result.returncode == 128 + 9
    assert not marker.exists()
