"""The fake agent in a process of its own, so that its CPU use stays out of the driver's timing.

``python -m bench.agent --listen unix:PATH --policy FILE --max-workers N`` prints the endpoint
as its first stdout line and serves until SIGTERM. The fake agent's own command line has no
worker count, and the concurrency scenario needs at least 64 requests served at once.
AgentProcess starts and stops it from the benchmark driver.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType, TracebackType


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
                "bench.agent",
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
    # The agent process imports bench from the repository, wherever the driver was started.
    root = str(Path(__file__).resolve().parent.parent)
    environment["PYTHONPATH"] = os.pathsep.join(
        part for part in (root, environment.get("PYTHONPATH", "")) if part
    )
    return environment


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.agent")
    parser.add_argument("--listen", required=True)
    parser.add_argument("--policy", required=True, type=Path)
    parser.add_argument("--max-workers", type=int, default=64)
    args = parser.parse_args()

    from fakeagent.server import FakeAgent

    stopping = threading.Event()

    def stop(_number: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    agent = FakeAgent(listen=args.listen, policy=args.policy, max_workers=args.max_workers)
    agent.start()
    try:
        print(agent.endpoint, flush=True)
        stopping.wait()
    finally:
        agent.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
