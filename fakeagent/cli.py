"""``fake-tacacsrs-agentd``: runs the fake agent until SIGTERM or SIGINT.

The first line on stdout is the bound endpoint (``unix:PATH`` or ``127.0.0.1:PORT``), so a parent
process that asked for port 0 can read where to connect. Logs go to stderr. A bad argument or
policy file is one line on stderr and exit status 2; failing to listen is exit status 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import NoReturn

from fakeagent.policy import PolicyError
from fakeagent.relay_cli import RelayConfigError, add_relay_arguments, relay_backend_from_args

PROG = "fake-tacacsrs-agentd"
EXIT_RUNTIME = 1
EXIT_USAGE = 2

logger = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line, without argparse's usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{PROG}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="A fake tacacsrs.agent.v1 TACACS+ agent for tests and demos.",
    )
    parser.add_argument(
        "--listen",
        required=True,
        metavar="ENDPOINT",
        help="unix:PATH, or a loopback HOST:PORT such as 127.0.0.1:0 (0 picks a free port)",
    )
    parser.add_argument(
        "--policy",
        type=Path,
        metavar="FILE",
        help="the TOML policy file to answer from (exactly one of --policy and --upstream)",
    )
    parser.add_argument(
        "--max-workers",
        type=_positive_int,
        default=16,
        metavar="N",
        help="requests served at once (default: 16)",
    )
    parser.add_argument(
        "--journal",
        type=Path,
        metavar="FILE",
        help="append one JSON line per request received to FILE",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="-v logs each answer, -vvv also shows tracebacks",
    )
    add_relay_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the agent; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if (args.policy is None) == (not args.upstream):
        parser.error("give exactly one of --policy FILE and --upstream HOST:PORT")
    # gRPC's core logs to stderr on its own (a failed bind, say), which would break the rule of
    # one line per error. It reads GRPC_VERBOSITY once, when grpc is first imported: below.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR" if args.verbose >= 3 else "NONE")
    level = logging.WARNING if args.verbose == 0 else logging.INFO
    logging.basicConfig(
        level=logging.DEBUG if args.verbose >= 2 else level,
        format=f"{PROG}: %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return _run(args)
    except Exception as exc:
        if args.verbose >= 3:
            raise
        print(f"{PROG}: internal error: {exc}", file=sys.stderr)
        return EXIT_RUNTIME


def _run(args: argparse.Namespace) -> int:
    # Imported here, after main set GRPC_VERBOSITY.
    from fakeagent.server import FakeAgent, ListenError, StartError

    try:
        relay = relay_backend_from_args(args)
        agent = FakeAgent(
            listen=args.listen,
            policy=args.policy,
            journal=args.journal,
            backend=relay,
            max_workers=args.max_workers,
        )
    except (ListenError, PolicyError, RelayConfigError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    except OSError as exc:
        return _fail(f"cannot open journal {args.journal}: {exc.strerror or exc}", EXIT_USAGE)

    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        agent.start()
    except StartError as exc:
        agent.stop()
        return _fail(str(exc), EXIT_RUNTIME)

    try:
        print(agent.endpoint, flush=True)
        stopping.wait()
    finally:
        agent.stop()
    return 0


def _positive_int(text: str) -> int:
    if not text.isdecimal() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def _fail(message: str, status: int) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return status
