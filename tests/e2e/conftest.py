"""Fixtures of the end-to-end tests: a real sshd with session-wrapper behind its ForceCommand.

Every test runs against two targets. ``local`` is a private sshd on this host (own config, host
key and pid file, 127.0.0.1 only), started from docker/sshd_config with only the listen address,
host key, pid file and shim path changed. ``container`` is the e2e image built by
ci/build-e2e-image, started with Docker's default seccomp profile and published on 127.0.0.1
only. In both, a throw-away user of group session-wrapper logs in with a throw-away key, and the
fake agent runs in the test process on a Unix socket the wrapper in the target connects to. This
file does not hold the scenarios: tests/e2e/test_ssh_sessions.py does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import grp
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from fakeagent.server import FakeAgent

REPO = Path(__file__).resolve().parents[2]
SSHD = "/usr/sbin/sshd"
GROUP = "session-wrapper"
SHIM_CONF = Path("/etc/session-wrapper/shim.conf")
# The first line of a shim.conf these tests wrote: any other file there is an operator's.
SHIM_CONF_MARK = "# written by tests/e2e for the duration of the run"
SOCKET_NAME = "tacacs.sock"
LOGIN_SHELL = "/usr/local/libexec/session-wrapper-login-shell"
DEFAULT_SHIM_FLAGS = ("--fail-policy", "closed", "--authorization-timeout-ms", "3000")

NEEDS_ROOT = "needs root (creates users, runs sshd)"
NEEDS_DOCKER = "needs a Docker engine"

# The agent's policy for every scenario: the session and everything else is allowed, except
# whoami, which is what a denied exec looks like.
POLICY = """
[[rule]]
name = "session"
rpc = "authorization"
cmd = ""
status = "PASS_ADD"

[[rule]]
name = "no whoami"
rpc = "authorization"
cmd = "*/whoami"
status = "FAIL"
server_message = "whoami is not for e2e users"

[[rule]]
name = "accounting"
rpc = "accounting"
status = "SUCCESS"

[default]
status = "PASS_ADD"
"""

RootRun = Callable[[Sequence[str]], tuple[int, str]]


@dataclasses.dataclass
class Target:
    """One sshd to log in to, and how to look inside the machine it runs on."""

    name: str
    port: int
    user: str
    uid: int
    home: str
    key: Path
    # The agent socket as the wrapper in the target names it, and as the test process does.
    endpoint: str
    agent_socket: Path
    # The gid the agent socket is given (mode 0660), so that the user's wrapper can connect.
    socket_gid: int
    # The client address the wrapper should report: where sshd sees the connection come from.
    rem_addr: str
    root_run: RootRun
    wrapper: str = ""

    def ssh_argv(self, command: str | None = None, *, tty: bool = False) -> list[str]:
        """The ssh client's argv: our key only, no config, no known_hosts, 127.0.0.1 only."""
        argv = [
            "ssh",
            "-F",
            "/dev/null",
            "-i",
            str(self.key),
            "-p",
            str(self.port),
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "IdentityAgent=none",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=10",
            "-tt" if tty else "-T",
            f"{self.user}@127.0.0.1",
        ]
        if command is not None:
            argv += ["--", command]
        return argv

    def ssh(
        self, command: str, *, input: bytes = b"", timeout: float = 30
    ) -> subprocess.CompletedProcess[bytes]:
        """Runs ``ssh user@host -- command`` to completion; stdin is ``input``."""
        return subprocess.run(
            self.ssh_argv(command),
            input=input,
            capture_output=True,
            timeout=timeout,
            check=False,
        )

    def root(self, *argv: str) -> tuple[int, str]:
        """Runs argv as root on the target's machine: exit status and output."""
        return self.root_run(argv)

    def set_shim_flags(self, *flags: str) -> None:
        """Writes shim.conf in the target: the wrapper, the endpoint and these extra flags."""
        lines = [SHIM_CONF_MARK]
        if self.wrapper:
            lines.append(f"SESSION_WRAPPER={shlex.quote(self.wrapper)}")
        lines.append(f"SESSION_WRAPPER_ENDPOINT={shlex.quote(self.endpoint)}")
        lines.append(f"SESSION_WRAPPER_FLAGS={shlex.quote(' '.join(flags))}")
        text = "\n".join(lines) + "\n"
        script = 'mkdir -p "${1%/*}" && printf %s "$2" > "$1.new" && chmod 644 "$1.new" '
        script += '&& mv "$1.new" "$1"'
        status, output = self.root("sh", "-c", script, "sh", str(SHIM_CONF), text)
        assert status == 0, output

    def user_processes(self) -> list[str]:
        """``PID ARGS`` of every process of the test user still alive in the target."""
        status, output = self.root("ps", "-o", "pid=,args=", "-u", str(self.uid))
        # ps exits 1 when it selected no process.
        assert status in (0, 1), output
        return [line.strip() for line in output.splitlines() if line.strip()]

    def read_home_file(self, name: str) -> str | None:
        """The text of a file in the user's home, or None when it does not exist."""
        path = f"{self.home}/{name}"
        status, output = self.root("sh", "-c", 'test -f "$1" && cat "$1"', "sh", path)
        return output if status == 0 else None


def _run_here(argv: Sequence[str]) -> tuple[int, str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)
    return done.returncode, done.stdout + done.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_banner(port: int, timeout: float = 30.0) -> None:
    """Waits until an SSH server answers on 127.0.0.1:port with its version banner.

    A TCP connect alone proves nothing in the container case: docker-proxy accepts before sshd
    in the container listens.
    """
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                conn.settimeout(2)
                if conn.recv(64).startswith(b"SSH-2.0-"):
                    return
        except OSError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise TimeoutError(f"no SSH banner on 127.0.0.1:{port} after {timeout} s ({last})")


def _user_name() -> str:
    return "swe2e" + secrets.token_hex(4)


@pytest.fixture(scope="session")
def ssh_key() -> Iterator[Path]:
    """A fresh ed25519 key pair with no passphrase; yields the private key's path."""
    folder = Path(tempfile.mkdtemp(prefix="session-wrapper-e2e-key-"))
    key = folder / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "e2e", "-f", str(key)], check=True
    )
    yield key
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def agent_dir() -> Iterator[Path]:
    """The folder of the agent socket: root's, mode 0755, so any user can reach the socket.

    The socket itself is mode 0660 and gets the target's session-wrapper group, as a deployed
    agent's socket would.
    """
    folder = Path(tempfile.mkdtemp(prefix="session-wrapper-e2e-agent-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _local_wrapper() -> str:
    """The session-wrapper the local target runs: $SESSION_WRAPPER_E2E_WRAPPER or this venv's."""
    configured = os.environ.get("SESSION_WRAPPER_E2E_WRAPPER")
    if configured:
        return configured
    return str(Path(sys.executable).parent / "session-wrapper")


@contextlib.contextmanager
def _local_group() -> Iterator[int]:
    try:
        yield grp.getgrnam(GROUP).gr_gid
        return
    except KeyError:
        pass
    subprocess.run(["groupadd", "--system", GROUP], check=True)
    try:
        yield grp.getgrnam(GROUP).gr_gid
    finally:
        subprocess.run(["groupdel", GROUP], check=False)


@contextlib.contextmanager
def _local_shim_conf() -> Iterator[None]:
    if SHIM_CONF.exists() and not SHIM_CONF.read_text().startswith(SHIM_CONF_MARK):
        pytest.fail(f"refusing to overwrite {SHIM_CONF}, which these tests did not write")
    created_dir = not SHIM_CONF.parent.exists()
    try:
        yield
    finally:
        SHIM_CONF.unlink(missing_ok=True)
        if created_dir:
            with contextlib.suppress(OSError):
                SHIM_CONF.parent.rmdir()


def _kill_user_processes(uid: int) -> None:
    found = subprocess.run(
        ["pgrep", "-u", str(uid)], capture_output=True, text=True, check=False
    ).stdout
    for pid in found.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), 9)


@contextlib.contextmanager
def _local_user(key: Path) -> Iterator[tuple[str, int, str]]:
    user = _user_name()
    # "*" rather than useradd's "!": without PAM, sshd refuses a locked account even for
    # public-key logins. /bin/sh, not bash: Debian's bash reads ~/.bashrc when sshd starts it
    # with -c, which would run a user-written file before the ForceCommand.
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", "-G", GROUP, "-p", "*", user], check=True)
    try:
        home = Path(f"/home/{user}")
        ssh_dir = home / ".ssh"
        ssh_dir.mkdir(mode=0o700)
        authorized = ssh_dir / "authorized_keys"
        authorized.write_text(key.with_suffix(".pub").read_text())
        authorized.chmod(0o600)
        for path in (ssh_dir, authorized):
            shutil.chown(path, user, user)
        yield user, int(_run_here(["id", "-u", user])[1]), str(home)
    finally:
        uid = _run_here(["id", "-u", user])[1].strip()
        if uid.isdigit():
            _kill_user_processes(int(uid))
        subprocess.run(["userdel", "-r", user], capture_output=True, check=False)


def _local_sshd_config(folder: Path, port: int) -> Path:
    """docker/sshd_config with only Port, ListenAddress, HostKey, PidFile and the shim moved."""
    replaced = {
        "port": f"Port {port}",
        "listenaddress": "ListenAddress 127.0.0.1",
        "hostkey": f"HostKey {folder / 'host_ed25519_key'}",
        "pidfile": f"PidFile {folder / 'sshd.pid'}",
        "forcecommand": f"ForceCommand {folder / 'session-wrapper-shim'}",
    }
    lines = []
    for line in (REPO / "docker" / "sshd_config").read_text().splitlines():
        words = line.split()
        keyword = words[0].lower() if words else ""
        if keyword in replaced:
            indent = line[: len(line) - len(line.lstrip())]
            lines.append(indent + replaced[keyword])
        else:
            lines.append(line)
    config = folder / "sshd_config"
    config.write_text("\n".join(lines) + "\n")
    return config


@pytest.fixture(scope="session")
def local_target(ssh_key: Path, agent_dir: Path) -> Iterator[Target]:
    """A private sshd on 127.0.0.1 of this host; never the system's sshd or its config."""
    if os.geteuid() != 0 or not Path(SSHD).exists():
        pytest.skip(NEEDS_ROOT)
    folder = Path(tempfile.mkdtemp(prefix="session-wrapper-e2e-sshd-"))
    try:
        yield from _local_sshd(folder, ssh_key, agent_dir)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _local_sshd(folder: Path, ssh_key: Path, agent_dir: Path) -> Iterator[Target]:
    folder.chmod(0o755)
    shim = folder / "session-wrapper-shim"
    shutil.copy(REPO / "docker" / "session-wrapper-shim", shim)
    shim.chmod(0o755)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "host_ed25519_key")],
        check=True,
    )
    port = _free_port()
    config = _local_sshd_config(folder, port)
    # sshd(8) needs its privilege separation directory.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    wrapper = _local_wrapper()

    with _local_group() as gid, _local_shim_conf(), _local_user(ssh_key) as (user, uid, home):
        reachable = _run_here(["runuser", "-u", user, "--", wrapper, "--help"])
        if reachable[0] != 0:
            pytest.fail(
                f"user {user} cannot run {wrapper} ({reachable[1].strip()}); the local target "
                "needs a wrapper every user can read: set SESSION_WRAPPER_E2E_WRAPPER"
            )
        with (folder / "sshd.log").open("wb") as log:
            sshd = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
            try:
                wait_for_banner(port)
                yield Target(
                    name="local",
                    port=port,
                    user=user,
                    uid=uid,
                    home=home,
                    key=ssh_key,
                    endpoint=str(agent_dir / SOCKET_NAME),
                    agent_socket=agent_dir / SOCKET_NAME,
                    socket_gid=gid,
                    rem_addr="127.0.0.1",
                    root_run=_run_here,
                    wrapper=wrapper,
                )
            finally:
                sshd.terminate()
                try:
                    sshd.wait(10)
                except subprocess.TimeoutExpired:
                    sshd.kill()
                    sshd.wait()


def _docker_reachable() -> bool:
    try:
        import docker  # testcontainers' own dependency

        client = docker.from_env(timeout=10)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def _e2e_image() -> str:
    """$SESSION_WRAPPER_E2E_IMAGE (ci/test sets it), else the tag ci/build-e2e-image prints."""
    image = os.environ.get("SESSION_WRAPPER_E2E_IMAGE")
    if image:
        return image
    built = subprocess.run(
        [str(REPO / "ci" / "build-e2e-image")],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if built.returncode != 0:
        pytest.fail(f"ci/build-e2e-image failed:\n{built.stderr[-3000:]}")
    return built.stdout.strip().splitlines()[-1]


def _container_user(root_run: RootRun, key: Path, shell: str, groups: str) -> tuple[str, int]:
    """Creates a user in the container who logs in with ``key``; returns its name and uid."""
    user = _user_name()
    public_key = key.with_suffix(".pub").read_text().strip()
    create = (
        'useradd -m -s "$3" ${4:+-G "$4"} -p "*" "$1" '
        '&& install -d -m 700 -o "$1" -g "$1" "/home/$1/.ssh" '
        '&& printf "%s\\n" "$2" > "/home/$1/.ssh/authorized_keys" '
        '&& chown "$1:$1" "/home/$1/.ssh/authorized_keys" '
        '&& chmod 600 "/home/$1/.ssh/authorized_keys"'
    )
    status, output = root_run(["sh", "-c", create, "sh", user, public_key, shell, groups])
    assert status == 0, output
    return user, int(root_run(["id", "-u", user])[1])


@pytest.fixture(scope="session")
def container_target(ssh_key: Path, agent_dir: Path) -> Iterator[Target]:
    """The e2e image under Docker's default seccomp profile, unprivileged, host networking,
    its sshd on 127.0.0.1 only.

    The agent's socket folder is bind-mounted at /run/tacacs, where the image's shim looks.
    """
    if not _docker_reachable():
        pytest.skip(NEEDS_DOCKER)
    from testcontainers.core.container import DockerContainer

    image = _e2e_image()
    # Host networking: the container's sshd listens on 127.0.0.1 of this host and nowhere else,
    # so no bridge, no private-range address and no docker-proxy is involved.
    port = _free_port()
    container = (
        DockerContainer(image)
        .with_volume_mapping(str(agent_dir), "/run/tacacs", "rw")
        .with_kwargs(network_mode="host")
        # sshd's -o adds a Port instead of replacing it, so the port is changed in a copy of
        # the image's config; the file already says ListenAddress 127.0.0.1.
        .with_command(
            [
                "sh",
                "-c",
                'sed "s/^Port .*/Port $1/" /etc/ssh/sshd_config > /run/sshd_config.e2e '
                "&& exec /usr/sbin/sshd -D -e -f /run/sshd_config.e2e",
                "sh",
                str(port),
            ]
        )
    )
    container.start()
    try:
        wrapped = container.get_wrapped_container()
        wrapped.reload()
        assert wrapped.attrs["HostConfig"]["NetworkMode"] == "host"
        security = wrapped.attrs["HostConfig"].get("SecurityOpt") or []
        assert not wrapped.attrs["HostConfig"]["Privileged"]
        assert not any("seccomp" in option for option in security), security

        def root_run(argv: Sequence[str]) -> tuple[int, str]:
            result = container.exec(list(argv))
            return result.exit_code, result.output.decode(errors="replace")

        # proc(5): "Seccomp: 2" is filter mode, i.e. sshd runs under Docker's default profile.
        status, output = root_run(["grep", "^Seccomp:", "/proc/1/status"])
        assert status == 0 and output.split() == ["Seccomp:", "2"], output

        user, uid = _container_user(root_run, ssh_key, "/bin/sh", GROUP)
        gid = int(root_run(["getent", "group", GROUP])[1].split(":")[2])
        wait_for_banner(port)
        yield Target(
            name="container",
            port=port,
            user=user,
            uid=uid,
            home=f"/home/{user}",
            key=ssh_key,
            endpoint=f"/run/tacacs/{SOCKET_NAME}",
            agent_socket=agent_dir / SOCKET_NAME,
            socket_gid=gid,
            rem_addr="127.0.0.1",
            root_run=root_run,
        )
    finally:
        container.stop()


@pytest.fixture(
    scope="session",
    params=[
        pytest.param("local", marks=[pytest.mark.root, pytest.mark.sshd]),
        pytest.param("container", marks=[pytest.mark.docker, pytest.mark.sshd]),
    ],
)
def target(request: pytest.FixtureRequest) -> Target:
    """Each e2e test runs once per target; pytest groups the tests by target."""
    found: Target = request.getfixturevalue(f"{request.param}_target")
    return found


@contextlib.contextmanager
def _serve_agent(target: Target, mode: int = 0o660) -> Iterator[FakeAgent]:
    target.set_shim_flags(*DEFAULT_SHIM_FLAGS)
    fake = FakeAgent(listen=f"unix:{target.agent_socket}", policy=POLICY)
    fake.start()
    try:
        os.chown(target.agent_socket, 0, target.socket_gid)
        os.chmod(target.agent_socket, mode)
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def agent(target: Target) -> Iterator[FakeAgent]:
    """The fake agent for one test, on the target's socket, with POLICY; shim.conf reset.

    The socket is mode 0660 with the target's session-wrapper group, as a deployed agent's
    socket would be: only members of the group can reach the agent.
    """
    with _serve_agent(target) as fake:
        yield fake


@pytest.fixture
def login_shell_agent(container_target: Target) -> Iterator[FakeAgent]:
    """The fake agent for the login-shell tests, whose users need not be in the group.

    The socket is mode 0666, in a folder only these tests use: a user outside the
    session-wrapper group has to reach it too.
    """
    with _serve_agent(container_target, 0o666) as fake:
        yield fake


@pytest.fixture(scope="session")
def login_shell_users(container_target: Target) -> dict[str, Target]:
    """Two users of the e2e image whose login shell is session-wrapper-login-shell.

    ``shell_only`` is outside group session-wrapper, so sshd runs no ForceCommand for it and
    the login shell alone starts the wrapper; ``member`` is in the group, so sshd runs the
    ForceCommand through that login shell.
    """
    users = {}
    for role, groups in (("shell_only", ""), ("member", GROUP)):
        user, uid = _container_user(
            container_target.root_run, container_target.key, LOGIN_SHELL, groups
        )
        users[role] = dataclasses.replace(
            container_target, user=user, uid=uid, home=f"/home/{user}"
        )
    return users


@pytest.fixture(scope="session")
def container_user_factory(container_target: Target) -> Callable[[str, str], Target]:
    """Makes another user of the e2e image: ``factory(login_shell, groups)`` -> its Target."""

    def make(shell: str, groups: str) -> Target:
        user, uid = _container_user(container_target.root_run, container_target.key, shell, groups)
        return dataclasses.replace(container_target, user=user, uid=uid, home=f"/home/{user}")

    return make
