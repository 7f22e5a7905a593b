"""Runs the fake agent: the FakeAgent object that tests start in-process, and the CLI uses.

One gRPC server on one endpoint serves tacacsrs.agent.v1.TacacsAgent, the fake agent's control
service and grpc.health.v1. It listens on a Unix socket (mode 0660, removed at stop) or on a
loopback TCP address only. Argument parsing and logging set-up are the CLI's job, not this
module's.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import stat
import threading
from concurrent import futures
from pathlib import Path
from types import TracebackType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from fakeagent.backend import Backend
from fakeagent.connections import ListenAddress
from fakeagent.control import fakeagent_control_pb2_grpc as control_grpc
from fakeagent.policy import EMPTY_POLICY, Policy, load_policy_file, parse_policy
from fakeagent.policy_backend import HANG_CAP_S, PolicyBackend
from fakeagent.recording import RecordedRequest, Recorder
from fakeagent.servicer import ControlServicer, TacacsAgentServicer
from session_wrapper.rpc import tacacsrs_agent_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

AGENT_SERVICE = "tacacsrs.agent.v1.TacacsAgent"
SOCKET_MODE = 0o660
# unix(7): sun_path holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH_BYTES = 107

PolicySource = Policy | Path | str | None


class ListenError(ValueError):
    """A --listen value the fake agent refuses; str() is one line."""


class StartError(RuntimeError):
    """The agent could not start listening; str() is one line."""


def parse_listen(text: str) -> ListenAddress:
    """``unix:PATH`` (or an absolute PATH) or a loopback ``HOST:PORT``; others raise ListenError.

    Port 0 asks the kernel for a free port. A relative PATH is made absolute.
    """
    if text.startswith("unix:") or text.startswith("/"):
        path = text.removeprefix("unix:")
        if path.startswith("//"):
            path = path[2:]  # unix:///abs/path, gRPC's URI form
        if not path:
            raise ListenError(f"--listen {text!r}: the Unix socket path is empty")
        path = os.path.abspath(path)
        if len(os.fsencode(path)) > MAX_SOCKET_PATH_BYTES:
            raise ListenError(
                f"--listen {text!r}: a Unix socket path may have at most "
                f"{MAX_SOCKET_PATH_BYTES} bytes; use a shorter one"
            )
        return ListenAddress(path=path)

    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdecimal() or int(port_text) > 65535:
        raise ListenError(f"--listen {text!r}: expected unix:PATH or HOST:PORT")
    host = host.removeprefix("[").removesuffix("]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ListenError(
            f"--listen {text!r}: {host!r} is not an IP address; use 127.0.0.1:PORT or [::1]:PORT"
        ) from None
    if not address.is_loopback:
        raise ListenError(
            f"--listen {text!r}: {host} is not a loopback address; the fake agent only "
            "listens on 127.0.0.0/8, ::1 or a Unix socket"
        )
    return ListenAddress(host=str(address), port=int(port_text))


def endpoint_of(listen: ListenAddress) -> str:
    """The endpoint as a gRPC target: ``unix:PATH``, ``127.0.0.1:PORT`` or ``[::1]:PORT``."""
    if listen.path is not None:
        return "unix:" + listen.path
    if ":" in listen.host:
        return f"[{listen.host}]:{listen.port}"
    return f"{listen.host}:{listen.port}"


def to_policy(policy: PolicySource) -> Policy:
    """A Policy from a Policy, a file Path, TOML text (a str), or None for the default only."""
    if policy is None:
        return EMPTY_POLICY
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, Path):
        return load_policy_file(policy)
    return parse_policy(policy, "<policy text>")


class FakeAgent:
    """A fake TACACS+ agent served from a thread pool in this process.

    Use it as a context manager (or call start and stop)::

        with FakeAgent(listen=f"unix:{tmp}/agent.sock", policy=Path("policy.toml")) as agent:
            ...  # point the client at agent.endpoint
            assert agent.requests[0].cmd == "/usr/bin/ls"

    ``policy`` is a Policy, a Path to a TOML file, TOML text (a str) or None (no rules: the
    built-in default answers). ``backend`` replaces the policy with any other Backend (a relay,
    say); the agent then has no policy to load. Construction raises ListenError, PolicyError or
    OSError (the journal); start raises StartError.
    """

    def __init__(
        self,
        listen: str = "127.0.0.1:0",
        policy: PolicySource = None,
        *,
        journal: Path | str | None = None,
        backend: Backend | None = None,
        max_workers: int = 16,
        hang_cap_s: float = HANG_CAP_S,
    ) -> None:
        self._listen = parse_listen(listen)
        if backend is not None and policy is not None:
            raise ValueError("give a policy or a backend, not both")
        self._policy_backend: PolicyBackend | None = None
        if backend is None:
            self._policy_backend = PolicyBackend(to_policy(policy), hang_cap_s=hang_cap_s)
            backend = self._policy_backend
        self._backend: Backend = backend
        self._recorder = Recorder(journal)
        self._max_workers = max_workers
        self._server: grpc.Server | None = None
        self._executor: futures.ThreadPoolExecutor | None = None
        self._health: health.HealthServicer | None = None
        self._socket_inode: int | None = None
        self._stop_lock = threading.Lock()
        self.endpoint = ""

    @property
    def listen_address(self) -> ListenAddress:
        """The address bound (with the real port once started)."""
        return self._listen

    @property
    def requests(self) -> list[RecordedRequest]:
        """The requests recorded since start or the last reset, oldest first (a copy)."""
        return self._recorder.requests

    @property
    def policy(self) -> Policy:
        """The policy in force."""
        return self._require_policy_backend().policy

    def load_policy(self, policy: PolicySource) -> Policy:
        """Replaces the policy (see the class doc for the forms); raises PolicyError."""
        parsed = to_policy(policy)
        self._require_policy_backend().set_policy(parsed)
        return parsed

    def reset(self) -> None:
        """Forgets the recorded requests."""
        self._recorder.reset()

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """Waits until ``count`` requests are recorded and returns them; else TimeoutError."""
        return self._recorder.wait_for(count, timeout)

    def start(self) -> FakeAgent:
        """Binds the endpoint and starts serving; sets ``endpoint``."""
        if self._listen.path is not None:
            _prepare_socket_path(self._listen.path)
        elif self._listen.port != 0:
            _check_port_free(self._listen)

        executor = futures.ThreadPoolExecutor(self._max_workers, thread_name_prefix="fakeagent")
        # No SO_REUSEPORT: a second agent on the same port must fail, not share it.
        server = grpc.server(executor, options=[("grpc.so_reuseport", 0)])
        agent_servicer = TacacsAgentServicer(self._backend, self._recorder, self._listen)
        pb_grpc.add_TacacsAgentServicer_to_server(  # type: ignore[no-untyped-call]
            agent_servicer, server
        )
        control_grpc.add_FakeAgentControlServicer_to_server(  # type: ignore[no-untyped-call]
            ControlServicer(
                self._recorder, self._load_policy_text if self._policy_backend else None
            ),
            server,
        )
        health_servicer = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        serving = health_pb2.HealthCheckResponse.SERVING
        health_servicer.set("", serving)
        health_servicer.set(AGENT_SERVICE, serving)

        try:
            port = server.add_insecure_port(endpoint_of(self._listen))
        except RuntimeError as exc:
            port = 0
            logger.debug("add_insecure_port: %s", exc)
        if port == 0:
            executor.shutdown(wait=False)
            raise StartError(
                f"cannot listen on {endpoint_of(self._listen)}: in use, or no permission"
            )
        if self._listen.path is not None:
            self._secure_socket(executor)
        else:
            self._listen = ListenAddress(host=self._listen.host, port=port)
            agent_servicer.listen_address = self._listen

        server.start()
        self._server, self._executor, self._health = server, executor, health_servicer
        self.endpoint = endpoint_of(self._listen)
        logger.info("fake agent listening on %s", self.endpoint)
        return self

    def stop(self, grace: float = 1.0) -> None:
        """Stops serving: ends hangs and delays, stops the server, removes the Unix socket."""
        with self._stop_lock:
            server, self._server = self._server, None
            if server is None:
                self._recorder.close()
                return
            if self._health is not None:
                self._health.enter_graceful_shutdown()
            if self._policy_backend is not None:
                self._policy_backend.close()
            server.stop(grace).wait()
            if self._executor is not None:
                self._executor.shutdown(wait=True)
            self._remove_socket()
            self._recorder.close()
            logger.info("fake agent on %s stopped", self.endpoint)

    def __enter__(self) -> FakeAgent:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _require_policy_backend(self) -> PolicyBackend:
        if self._policy_backend is None:
            raise TypeError("this FakeAgent answers from a backend, not from a policy")
        return self._policy_backend

    def _load_policy_text(self, text: str) -> None:
        self._require_policy_backend().set_policy(parse_policy(text, "<LoadPolicy>"))

    def _secure_socket(self, executor: futures.ThreadPoolExecutor) -> None:
        path = self._listen.path
        assert path is not None
        try:
            # Only the owner can connect between bind and this chmod (the umask keeps write
            # permission, which connect(2) needs, from group and others), so nothing leaks.
            os.chmod(path, SOCKET_MODE)
            self._socket_inode = os.stat(path).st_ino
        except OSError as exc:
            executor.shutdown(wait=False)
            raise StartError(f"cannot listen on unix:{path}: {exc.strerror}") from exc

    def _remove_socket(self) -> None:
        path = self._listen.path
        if path is None:
            return
        try:
            # Only our own socket: another agent may have taken the path since.
            if os.lstat(path).st_ino == self._socket_inode:
                os.unlink(path)
        except FileNotFoundError:
            pass  # gRPC removes the socket itself at stop


def _prepare_socket_path(path: str) -> None:
    """Creates the socket's directory and removes a stale socket; refuses a live one."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StartError(f"cannot listen on unix:{path}: {exc.strerror}") from exc
    if not stat.S_ISSOCK(mode):
        raise StartError(f"cannot listen on unix:{path}: it exists and is not a socket")

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            logger.info("removing stale socket %s", path)
            os.unlink(path)
            return
        except OSError as exc:
            raise StartError(f"cannot listen on unix:{path}: {exc.strerror or exc}") from exc
    raise StartError(f"cannot listen on unix:{path}: another process is listening on it")


def _check_port_free(listen: ListenAddress) -> None:
    """Fails with the kernel's reason when the port is taken.

    gRPC only says that binding failed, and logs the reason to stderr; this says it in one line.
    """
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((listen.host, listen.port))
        except OSError as exc:
            raise StartError(
                f"cannot listen on {endpoint_of(listen)}: {exc.strerror or exc}"
            ) from exc
