"""The wrapper's settings: one frozen value built by the CLI and read everywhere else."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class FailPolicy(enum.Enum):
    """What an exec gets when the agent cannot give an answer."""

    CLOSED = "closed"
    OPEN = "open"


DEFAULT_ENDPOINT = "/run/tacacs/tacacs.sock"
DEFAULT_TIMEOUT_MS = 5000
DEFAULT_SYSLOG_SOCKET = "/dev/log"


@dataclass(frozen=True)
class Settings:
    user: str
    user_uid: int
    user_gid: int
    command: tuple[str, ...]
    service_endpoint: str = DEFAULT_ENDPOINT
    fail_policy: FailPolicy = FailPolicy.CLOSED
    authorization_timeout_ms: int = DEFAULT_TIMEOUT_MS
    privilege_level: int = 1
    allowlist_file: str | None = None
    # Only the entries read from allowlist_file (by the CLI, before any fork). The built-ins are
    # not in here: whoever matches paths merges them with allowlist.effective_allowlist().
    allowlist: frozenset[bytes] = frozenset()
    port: str = ""
    rem_addr: str = ""
    verbosity: int = 0
    # --exec-dirs: the only directories the session may execute from (Landlock); empty means
    # no such limit.
    exec_dirs: tuple[str, ...] = ()
    syslog_socket: str = DEFAULT_SYSLOG_SOCKET

    @property
    def grpc_target(self) -> str:
        """The endpoint in gRPC's target syntax: a path becomes ``unix:PATH``."""
        endpoint = self.service_endpoint
        if endpoint.startswith(("unix:", "unix-abstract:")):
            return endpoint
        if endpoint.startswith("/"):
            return "unix:" + endpoint
        return endpoint
