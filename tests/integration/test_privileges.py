"""The two launch modes: started as root (privilege drop, setuid programs keep working and stay
mediated) and started as the user (no_new_privs, so setuid programs gain nothing)."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from wrapper_runner import needs_root, wrapper_argv

from fakeagent import FakeAgent

pytestmark = needs_root

USER = "swtest-drop"
EXTRA_GROUP = "swtest-extra"


@dataclass(frozen=True)
class LoginUser:
    name: str
    uid: int
    gid: int
    extra_gid: int


@pytest.fixture(scope="module")
def test_user() -> Iterator[LoginUser]:
    """A user with one supplementary group, removed afterwards."""
    subprocess.run(["groupadd", EXTRA_GROUP], check=True)
    subprocess.run(["useradd", "--no-create-home", "-G", EXTRA_GROUP, USER], check=True)
    try:
        entry = pwd.getpwnam(USER)
        yield LoginUser(USER, entry.pw_uid, entry.pw_gid, grp.getgrnam(EXTRA_GROUP).gr_gid)
    finally:
        subprocess.run(["userdel", USER], check=False)
        subprocess.run(["groupdel", EXTRA_GROUP], check=False)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user can enter, for the agent socket and the setuid helper."""
    path = Path(tempfile.mkdtemp(prefix="sw-priv-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


@pytest.fixture
def agent(shared_dir: Path) -> Iterator[FakeAgent]:
    with FakeAgent(
        listen=f"unix:{shared_dir}/tacacs.sock", policy="[default]\nstatus = 'PASS_ADD'\n"
    ) as fake:
        # Test only: let the dropped user connect. A deployment gives the socket to a group.
        (shared_dir / "tacacs.sock").chmod(0o666)
        yield fake


@pytest.fixture
def setuid_id(shared_dir: Path) -> Path:
    """A setuid-root copy of /usr/bin/id: with -u it prints the effective uid."""
    copy = shared_dir / "suid-id"
    shutil.copy("/usr/bin/id", copy)
    os.chown(copy, 0, 0)
    copy.chmod(0o4755)
    return copy


def test_root_launch_drops_uid_gid_and_groups(agent: FakeAgent, test_user: LoginUser) -> None:
    argv = wrapper_argv(
        ["/bin/bash", "-c", "/usr/bin/id -u; /usr/bin/id -g; /usr/bin/id -G"],
        endpoint=agent.endpoint,
        uid=test_user.uid,
        gid=test_user.gid,
        user=test_user.name,
    )
    result = subprocess.run(argv, capture_output=True, text=True, cwd="/", timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    uid, gid, groups = result.stdout.splitlines()
    assert int(uid) == test_user.uid
    assert int(gid) == test_user.gid
    assert sorted(int(g) for g in groups.split()) == sorted({test_user.gid, test_user.extra_gid})
    assert agent.requests[0].user == test_user.name


def test_root_launch_keeps_setuid_working_and_mediated(
    agent: FakeAgent, test_user: LoginUser, setuid_id: Path
) -> None:
    argv = wrapper_argv(
        ["/bin/bash", "-c", f"/usr/bin/id -u; {setuid_id} -u"],
        endpoint=agent.endpoint,
        uid=test_user.uid,
        gid=test_user.gid,
        user=test_user.name,
    )
    result = subprocess.run(argv, capture_output=True, text=True, cwd="/", timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(test_user.uid), "0"]
    asked = [r.cmd for r in agent.requests if r.rpc == "authorization" and r.cmd]
    assert asked == [str(setuid_id)]


def _launch_as_user(
    user: LoginUser, command: list[str], endpoint: str, uid: int, gid: int
) -> subprocess.CompletedProcess[str]:
    """Runs the wrapper as ``user`` (the ForceCommand launch mode) with --user-uid/gid given."""
    wrapper = os.environ.get("SESSION_WRAPPER_E2E_WRAPPER")
    if not wrapper:
        pytest.skip(
            "needs root and a wrapper install every user can read: ci/test sets "
            "SESSION_WRAPPER_E2E_WRAPPER"
        )
    argv = wrapper_argv(command, endpoint=endpoint, uid=uid, gid=gid, user=user.name)
    argv[0] = str(Path(wrapper).parent / "python")
    as_user = ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--init-groups", "--"]
    return subprocess.run(
        [*as_user, *argv], capture_output=True, text=True, cwd="/", timeout=30, check=False
    )


def test_user_launch_sets_no_new_privs(
    agent: FakeAgent, test_user: LoginUser, setuid_id: Path
) -> None:
    result = _launch_as_user(
        test_user,
        ["/bin/bash", "-c", f"{setuid_id} -u; grep NoNewPrivs /proc/self/status"],
        agent.endpoint,
        test_user.uid,
        test_user.gid,
    )
    assert result.returncode == 0, result.stderr
    effective_uid, no_new_privs = result.stdout.splitlines()
    assert effective_uid == str(test_user.uid)
    assert no_new_privs.split() == ["NoNewPrivs:", "1"]
    assert str(setuid_id) in [r.cmd for r in agent.requests if r.rpc == "authorization"]


def test_user_launch_cannot_switch_to_another_uid(agent: FakeAgent, test_user: LoginUser) -> None:
    result = _launch_as_user(test_user, ["/usr/bin/id", "-u"], agent.endpoint, 0, 0)
    assert result.returncode == 1
    assert "session-wrapper: child setup failed: drop privileges:" in result.stderr
    assert result.stdout == ""


def test_user_launch_refuses_an_exec_only_program_known_limit(
    agent: FakeAgent, test_user: LoginUser, shared_dir: Path
) -> None:
    # Known limit: a supervisor that is not root cannot read a mode --x file, so it cannot know
    # whether a #! line would run another program; such an exec is refused.
    exec_only = shared_dir / "exec-only-true"
    shutil.copy("/usr/bin/true", exec_only)
    exec_only.chmod(0o711)
    result = _launch_as_user(
        test_user, [str(exec_only)], agent.endpoint, test_user.uid, test_user.gid
    )
    assert result.returncode == 126
    assert "cannot read its first line to look for #!" in result.stderr
    assert str(exec_only) not in [r.cmd for r in agent.requests if r.rpc == "authorization"]
