"""One wrapped session from start to drain: the wiring of kernel adapter, agent and supervisor.

The order matters and follows the design: subreaper and undumpable first, the child forked
before any thread or gRPC channel exists, the session authorized before the child is released,
and the wrapper gone only when every process of the session is.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from types import FrameType

from session_wrapper import audit
from session_wrapper.allowlist import effective_allowlist
from session_wrapper.decision import (
    AuthorizationQuery,
    Basis,
    Decision,
    ExecRequest,
    Identity,
    Verdict,
    decide_session,
    session_query,
)
from session_wrapper.display import one_line
from session_wrapper.kernel import launcher, reaper
from session_wrapper.kernel.procfs import canonical_paths
from session_wrapper.logsetup import configure_stderr_logging
from session_wrapper.settings import Settings
from session_wrapper.syslog_audit import configure_syslog_audit

logger = logging.getLogger(__name__)

# How long processes get to exit after SIGHUP or SIGTERM before SIGKILL.
GRACE_PERIOD_S = 2.0
# How long to wait for the listener to report the end after the last process was reaped.
_DRAIN_WAIT_S = 2.0

# Keyboard signals are for the session's processes, which share the wrapper's terminal.
_IGNORED_IN_WRAPPER = (
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTSTP,
    signal.SIGTTIN,
    signal.SIGTTOU,
)


def say(line: str) -> None:
    """One line to the user on stderr, made printable."""
    print(f"session-wrapper: {one_line(line)}", file=sys.stderr, flush=True)


def run(settings: Settings) -> int:
    """Runs the session; returns the wrapper's exit status."""
    started_at = time.monotonic()
    configure_stderr_logging(settings.verbosity)
    configure_syslog_audit(settings.user, settings.syslog_socket)
    allowlist = canonical_paths(effective_allowlist(settings.allowlist))
    reaper.become_subreaper()
    reaper.make_undumpable()
    deny_fd = os.dup(sys.stderr.fileno())

    credentials = launcher.Credentials(settings.user, settings.user_uid, settings.user_gid)
    try:
        child = launcher.start(settings.command, credentials, settings.exec_dirs)
    except launcher.ChildSetupError as error:
        say(f"child setup failed: {error}")
        return error.exit_status
    for number in _IGNORED_IN_WRAPPER:
        signal.signal(number, signal.SIG_IGN)

    # gRPC is imported only now, while the child is already waiting: it is not fork-safe, and
    # the import is the largest part of start-up.
    from session_wrapper import accounting
    from session_wrapper.agent_client import AgentClient

    client = AgentClient(settings.grpc_target, settings.authorization_timeout_ms / 1000)
    authorize = audit.AgentHealth(settings.service_endpoint).observing(client.authorize)
    identity = Identity(settings.user, settings.port, settings.rem_addr, settings.privilege_level)
    _record_start(settings, child)

    session = _authorize_session(settings, authorize, identity)
    if not session.allowed:
        os.kill(child.pid, signal.SIGKILL)
        _reap_all()
        client.close()
        _record_end(settings, 1, started_at)
        return 1
    if session.granted_priv_lvl is not None:
        identity = replace(identity, priv_lvl=session.granted_priv_lvl)

    account = accounting.AccountingQueue(accounting.agent_sender(client))
    account.start()
    account.submit(accounting.session_start_record(identity, settings.command, os.environ))
    status = _supervise(
        settings,
        child,
        allowlist,
        authorize,
        identity,
        deny_fd,
        lambda request: account.submit(accounting.exec_record(identity, request)),
    )
    account.close()
    client.close()
    _record_end(settings, status, started_at)
    return status


def _supervise(
    settings: Settings,
    child: launcher.Started,
    allowlist: frozenset[bytes],
    authorize: Callable[[AuthorizationQuery], Verdict],
    identity: Identity,
    deny_fd: int,
    account: Callable[[ExecRequest], None],
) -> int:
    """Releases the child under the supervisor and waits for the whole session to end; returns
    the exit status of the session's command."""
    from session_wrapper.kernel.notify import Listener
    from session_wrapper.supervisor import DenyWriter, Supervisor

    supervisor = Supervisor(
        Listener(child.listener_fd),
        child.execve_nr,
        child.execveat_nr,
        allowlist,
        authorize,
        identity,
        settings.fail_policy,
        DenyWriter(deny_fd),
        account=account,
    )
    supervisor.start()
    _forward_termination()
    launcher.release(child)

    setup_failure: launcher.ChildSetupError | None = None
    try:
        launcher.exec_result(child)
    except launcher.ChildSetupError as error:
        setup_failure = error
        say(f"child setup failed: {error}")

    status = _reap_all(child.pid)
    if setup_failure is not None:
        status = setup_failure.exit_status
    if not supervisor.wait_drained(_DRAIN_WAIT_S):
        logger.warning("listener still open after the last process of the session was reaped")
    supervisor.stop()
    return status


def _session_fields(settings: Settings) -> dict[str, object]:
    """Who and where, as every session event carries it."""
    return {
        "user": settings.user,
        "uid": settings.user_uid,
        "rem_addr": settings.rem_addr,
        "port": settings.port,
        "pid": os.getpid(),
    }


def _record_start(settings: Settings, child: launcher.Started) -> None:
    audit.record(
        logging.INFO,
        "session_start",
        **_session_fields(settings),
        command=" ".join(settings.command),
        ssh_original_command=os.environ.get("SSH_ORIGINAL_COMMAND", ""),
        wait_killable_recv=child.wait_killable_recv,
        landlock_abi=child.landlock_abi,
        exec_dirs=",".join(settings.exec_dirs),
    )
    if child.landlock_skipped:
        # One warning: the seccomp mediation still runs, the kernel-enforced layer does not.
        logger.warning("%s", child.landlock_skipped)


def _authorize_session(
    settings: Settings, authorize: Callable[[AuthorizationQuery], Verdict], identity: Identity
) -> Decision:
    """The session request (service=shell, empty cmd) before anything of the user's runs."""
    query = session_query(identity)
    decision = decide_session(query, authorize(query), settings.fail_policy)
    fields: dict[str, object] = {"basis": decision.basis.value, "reason": decision.reason}
    if decision.allowed:
        if decision.basis is Basis.FAIL_OPEN:
            logger.warning("%s", decision.reason)
        audit.record(logging.INFO, "session_allowed", **fields)
        return decision
    audit.record(logging.WARNING, "session_denied", **fields)
    if decision.basis is Basis.FAIL_CLOSED:
        outage = decision.outage.value if decision.outage else "no answer"
        say(
            f"authorization service unreachable at {settings.service_endpoint} ({outage}); "
            "session refused by fail policy closed"
        )
    else:
        say(f"session refused: {decision.reason}")
    return decision


def _reap_all(first: int | None = None) -> int:
    """Reaps every process of the session; returns the exit status of ``first``."""
    status = 1
    while (reaped := reaper.reap()) is not None:
        pid, wait_status = reaped
        if pid == first:
            status = reaper.exit_status(wait_status)
            logger.debug("session command exited with status %d", status)
    return status


def _forward_termination() -> None:
    """SIGHUP (the SSH disconnect) and SIGTERM go to every process of the session; after the
    grace period, SIGKILL follows."""
    own_pid = os.getpid()

    def kill_all() -> None:
        for _round in range(3):
            if reaper.signal_descendants(own_pid, signal.SIGKILL) == 0:
                return

    def forward(number: int, _frame: FrameType | None) -> None:
        logger.info("got %s; forwarding it to the session", signal.Signals(number).name)
        if number == signal.SIGHUP:
            reaper.hang_up(own_pid)
        else:
            reaper.signal_descendants(own_pid, number)
            reaper.signal_descendants(own_pid, signal.SIGCONT)
        timer = threading.Timer(GRACE_PERIOD_S, kill_all)
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGHUP, forward)
    signal.signal(signal.SIGTERM, forward)


def _record_end(settings: Settings, status: int, started_at: float) -> None:
    audit.record(
        logging.INFO,
        "session_end",
        **_session_fields(settings),
        exit_status=status,
        duration_s=f"{time.monotonic() - started_at:.3f}",
    )
