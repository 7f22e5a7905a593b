"""The notification loop: every exec the kernel holds is read, decided and answered here.

One receiver thread takes notifications off the listener fd. An exec of an allowlisted file is
answered on the spot; every other exec goes to a bounded pool of workers, so that a slow agent
answer never holds up another process's exec. The kernel adapter reads; the decision core
decides; this module only wires them together and reports.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import select
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from session_wrapper import audit
from session_wrapper.decision import (
    MAX_ARG_BYTES,
    MAX_ARG_COUNT,
    AuthorizationQuery,
    Basis,
    Decision,
    ExecRequest,
    Identity,
    UnsendableRequest,
    Verdict,
    allowlist_decision,
    decide,
    exec_query,
    unsendable_decision,
)
from session_wrapper.display import one_line, printable_bytes
from session_wrapper.kernel.notify import Listener, Notification
from session_wrapper.kernel.procfs import (
    AT_FDCWD,
    PATH_MAX,
    ExecFile,
    TargetGone,
    TargetMemory,
    Unreadable,
    resolve_exec_file,
)
from session_wrapper.logsetup import TRACE
from session_wrapper.settings import FailPolicy

logger = logging.getLogger(__name__)

WORKERS = 64
_DENY_WRITE_TIMEOUT_MS = 200
_RECEIVE_POLL_MS = 500


@dataclass(frozen=True)
class ExecCall:
    """Where the held execve/execveat keeps its arguments (execve(2), execveat(2))."""

    path_address: int
    argv_address: int
    dirfd: int
    at_flags: int


@dataclass(frozen=True)
class Held:
    """A notification whose path has been read and resolved, waiting for the agent."""

    notification: Notification
    call: ExecCall
    raw_path: bytes
    file: ExecFile


class DenyWriter:
    """Writes deny lines to the session's original stderr, never blocking for long.

    The fd is a duplicate taken before the fork, never /proc/PID/fd/2 of a session process: a
    root supervisor opening that path would write wherever the session pointed it. O_NONBLOCK is
    not set because the open file description is shared with the session; poll(2) bounds the
    wait instead, and a line that cannot be written in time is dropped and counted.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.dropped = 0
        self._lock = threading.Lock()

    def write(self, line: str) -> None:
        data = (line + "\n").encode()
        with self._lock:
            poller = select.poll()
            poller.register(self.fd, select.POLLOUT)
            try:
                if poller.poll(_DENY_WRITE_TIMEOUT_MS):
                    os.write(self.fd, data)
                    return
            except OSError:
                pass
            self.dropped += 1


class Supervisor:
    """Answers every held exec of the session until no task is left in the filter."""

    def __init__(
        self,
        listener: Listener,
        execve_nr: int,
        execveat_nr: int,
        allowlist: frozenset[bytes],
        authorize: Callable[[AuthorizationQuery], Verdict],
        identity: Identity,
        fail_policy: FailPolicy,
        deny_writer: DenyWriter,
        workers: int = WORKERS,
        account: Callable[[ExecRequest], None] = lambda _request: None,
    ) -> None:
        self.listener = listener
        self.execve_nr = execve_nr
        self.execveat_nr = execveat_nr
        self.allowlist = allowlist
        self.authorize = authorize
        self.identity = identity
        self.fail_policy = fail_policy
        self.deny_writer = deny_writer
        # Called for every exec allowed by the agent or by fail-open, before the kernel lets it
        # run; it only queues the accounting record (session_wrapper.accounting).
        self.account = account
        self._pending: queue.SimpleQueue[Held | None] = queue.SimpleQueue()
        self._workers = [
            threading.Thread(target=self._work, name=f"authorize-{n}", daemon=True)
            for n in range(workers)
        ]
        self._receiver = threading.Thread(target=self._receive_loop, name="receiver", daemon=True)
        self.drained = threading.Event()

    def start(self) -> None:
        for worker in self._workers:
            worker.start()
        self._receiver.start()

    def wait_drained(self, timeout_s: float) -> bool:
        """Waits until the listener reports that no task is left; False on timeout."""
        return self.drained.wait(timeout_s)

    def _receive_loop(self) -> None:
        try:
            while True:
                try:
                    if not self.listener.wait(_RECEIVE_POLL_MS):
                        continue
                    notification = self.listener.receive()
                except EOFError:
                    break
                except OSError as error:
                    # seccomp_unotify(2): RECV fails with ENOENT when the target was killed or
                    # its syscall interrupted between poll and receive; EINTR on a signal.
                    if error.errno not in (errno.ENOENT, errno.EINTR):
                        logger.error("receiving a notification failed: %s", error)
                    continue
                try:
                    self._triage(notification)
                except Exception:  # a bug must not leave the session hung
                    logger.exception("handling notification %d failed", notification.id)
                    self.listener.fail(notification.id, errno.EACCES)
        finally:
            self.drained.set()
            for _worker in self._workers:
                self._pending.put(None)

    def _exec_call(self, notification: Notification) -> ExecCall:
        args = notification.args
        if notification.nr == self.execveat_nr:
            dirfd = args[0] & 0xFFFFFFFF
            if dirfd >= 1 << 31:
                dirfd -= 1 << 32
            return ExecCall(args[1], args[2], dirfd, args[4] & 0xFFFFFFFF)
        return ExecCall(args[0], args[1], AT_FDCWD, 0)

    def _triage(self, notification: Notification) -> None:
        """Reads and resolves the path; answers at once unless the agent must be asked."""
        if notification.nr not in (self.execve_nr, self.execveat_nr):
            self.listener.fail(notification.id, errno.ENOSYS)
            return
        call = self._exec_call(notification)
        try:
            raw_path, file = self._read_target(notification, call)
        except TargetGone:
            return
        except Unreadable as problem:
            self._deny_unreadable(notification, call, problem)
            return
        except OSError as error:
            # The exec would fail the same way; answering here keeps PATH searches fast.
            logger.debug("exec of a missing file: %s", error)
            self.listener.fail(notification.id, error.errno or errno.ENOENT)
            return

        decision = allowlist_decision(file.path, self.allowlist)
        if decision is None:
            self._pending.put(Held(notification, call, raw_path, file))
            return
        self._finish(Held(notification, call, raw_path, file), (), decision)

    def _read_target(self, notification: Notification, call: ExecCall) -> tuple[bytes, ExecFile]:
        valid = self._validity(notification)
        with TargetMemory(notification.pid, valid) as memory:
            raw_path = memory.read_cstring(call.path_address, PATH_MAX)
        if len(raw_path) >= PATH_MAX:
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG))
        file = resolve_exec_file(notification.pid, raw_path, call.dirfd, call.at_flags)
        # The resolution went through /proc/PID/...; make sure it was still the same task.
        if not valid():
            raise TargetGone("notification no longer valid")
        return raw_path, file

    def _validity(self, notification: Notification) -> Callable[[], bool]:
        return lambda: self.listener.id_valid(notification.id)

    def _work(self) -> None:
        while (held := self._pending.get()) is not None:
            try:
                self._authorize(held)
            except Exception:
                logger.exception("authorizing notification %d failed", held.notification.id)
                self.listener.fail(held.notification.id, errno.EACCES)

    def _authorize(self, held: Held) -> None:
        notification = held.notification
        try:
            with TargetMemory(notification.pid, self._validity(notification)) as memory:
                argv = memory.read_argv(held.call.argv_address, MAX_ARG_COUNT, MAX_ARG_BYTES)
        except TargetGone:
            return
        except Unreadable as problem:
            self._deny_unreadable(notification, held.call, problem)
            return

        request = ExecRequest(held.file.path, argv, held.raw_path)
        try:
            query = exec_query(self.identity, request)
        except UnsendableRequest as problem:
            self._finish(held, argv, unsendable_decision(str(problem)))
            return
        self._finish(held, argv, decide(query, self.authorize(query), self.fail_policy))

    def _finish(self, held: Held, argv: tuple[bytes, ...], decision: Decision) -> None:
        """Re-checks what the decision rested on, then answers the kernel and reports."""
        if decision.allowed:
            changed = self._changed_since_decision(held, argv, decision)
            if changed is not None:
                decision = Decision(
                    False, decision.basis, f"{changed} during authorization", errno.EACCES
                )
        self._report(held, argv, decision)
        if decision.allowed:
            if decision.basis is not Basis.ALLOWLIST:
                self.account(ExecRequest(held.file.path, argv, held.raw_path))
            self.listener.allow(held.notification.id)
        else:
            self.listener.fail(held.notification.id, decision.errno or errno.EACCES)

    def _changed_since_decision(
        self, held: Held, argv: tuple[bytes, ...], decision: Decision
    ) -> str | None:
        """Re-reads the path (and argv, for an agent decision) before CONTINUE.

        Known limit: seccomp_unotify(2) says the kernel reads the arguments again after
        CONTINUE, so a sibling thread can still rewrite them after this check. The check only
        narrows that window; the README's security section describes what remains.
        """
        try:
            raw_path, file = self._read_target(held.notification, held.call)
            if raw_path != held.raw_path or (file.device, file.inode) != (
                held.file.device,
                held.file.inode,
            ):
                return "path changed"
            if decision.basis is not Basis.ALLOWLIST:
                with TargetMemory(
                    held.notification.pid, self._validity(held.notification)
                ) as memory:
                    again = memory.read_argv(held.call.argv_address, MAX_ARG_COUNT, MAX_ARG_BYTES)
                if again != argv:
                    return "arguments changed"
        except TargetGone:
            return "target went away"
        except (Unreadable, OSError):
            return "path or arguments became unreadable"
        return None

    def _deny_unreadable(
        self, notification: Notification, call: ExecCall, problem: Unreadable
    ) -> None:
        decision = unsendable_decision(problem.reason)
        decision = replace(decision, errno=problem.errno)
        file = ExecFile(b"(unreadable)", 0, 0)
        self._report(Held(notification, call, b"", file), (), decision)
        self.listener.fail(notification.id, problem.errno)

    def _report(self, held: Held, argv: tuple[bytes, ...], decision: Decision) -> None:
        path = printable_bytes(held.file.path)
        fields: dict[str, object] = {
            "pid": held.notification.pid,
            "path": path,
            "raw_path": printable_bytes(held.raw_path),
            "basis": decision.basis.value,
        }
        if decision.server:
            fields["server"] = decision.server
        if decision.server_message:
            fields["server_message"] = decision.server_message
        if decision.outage is not None:
            fields["outage"] = decision.outage.value
        if argv or not decision.allowed:
            fields["argv"] = audit.argv_field(argv)
        if argv and logger.isEnabledFor(TRACE):
            # The audit line cuts a long argv; -vvv shows all of it.
            logger.log(TRACE, "exec %s argv: %s", path, " ".join(map(printable_bytes, argv)))
        if decision.allowed:
            level = logging.DEBUG if decision.basis is Basis.ALLOWLIST else logging.INFO
            audit.record(level, "exec_allowed", **fields, reason=decision.reason)
            return
        audit.record(logging.WARNING, "exec_denied", **fields, reason=decision.reason)
        self.deny_writer.write(one_line(f"session-wrapper: {path}: {decision.reason}"))
