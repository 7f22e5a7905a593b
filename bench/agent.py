"""The fake agent in a process of its own, so that its CPU use stays out of the driver's timing.

AgentProcess starts ``fake-tacacsrs-agentd`` (``python -m fakeagent``) with enough workers for
the concurrency scenario, which needs at least 64 requests served at once, and stops it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType


class AgentProcess:
    """``with AgentProcess(policy_file, socket_path, workers) as endpoint:`` a running agent."""

    def __init__(self, policy: Path, socket_path: Path, max_workers: int) -> None:
        self.policy = policy
        self.socket_path = socket_path
        self.max_workers = max_workers
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> str:
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fakeagent",
                "--listen",
                f"unix:{self.socket_path}",
                "--policy",
                str(self.policy),
                "--max-workers",
                str(self.max_workers),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=_agent_environment(),
        )
        assert self._process.stdout is not None
        endpoint = self._process.stdout.readline().strip()
        if not endpoint:
            self.__exit__(None, None, None)
            raise RuntimeError(f"the benchmark agent did not start ({self.policy})")
        return endpoint

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._process is None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._process = None


def _agent_environment() -> dict[str, str]:
    environment = dict(os.environ)
    environment.setdefault("GRPC_VERBOSITY", "NONE")
    return environment
