"""The notification loop: every exec the kernel holds is read, decided and answered here.

One receiver thread takes notifications off the listener fd. An exec of an allowlisted file is
answered on the spot; every other exec goes to a bounded pool of workers, so that a slow agent
answer never holds up another process's exec. The kernel adapter reads; the decision core
decides; this module only wires them together and reports.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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
from session_wrapper.kernel.exec_verify import ExecVerifier, Mismatch, Watch
from session_wrapper.kernel.notify import Listener, Notification
from session_wrapper.kernel.procfs import (
    AT_EMPTY_PATH,
    AT_FDCWD,
    PATH_MAX,
    ExecFile,
    TargetGone,
    TargetMemory,
    Unreadable,
    reopen_exec_file,
    resolve_exec_file,
)
from session_wrapper.logsetup import TRACE
from session_wrapper.settings import FailPolicy
from session_wrapper.shebang import (
    MAX_SCRIPT_DEPTH,
    BadShebang,
    Shebang,
    interpreter_argv,
    parse_shebang,
)

logger = logging.getLogger(__name__)

WORKERS = 64
# Threads that verify execs the receiver allowed on the spot (kernel/exec_verify.py).
WATCHERS = 8
_DENY_WRITE_TIMEOUT_MS = 200
_RECEIVE_POLL_MS = 500
_RECEIVE_ERROR_PAUSE_S = 0.01
TARGET_GONE = "target went away"


@dataclass(frozen=True)
class ExecCall:
    """Where the held execve/execveat keeps its arguments (execve(2), execveat(2))."""

    path_address: int
    argv_address: int
    dirfd: int
    at_flags: int


@dataclass(frozen=True)
class Interpreter:
    """An interpreter the kernel will run for a script, and the #! line that names it."""

    shebang: Shebang
    file: ExecFile


@dataclass(frozen=True)
class Held:
    """A notification whose path has been read and resolved, waiting for the agent."""

    notification: Notification
    call: ExecCall
    raw_path: bytes
    file: ExecFile
    # For a script, each interpreter the kernel will run in turn, the last one a binary.
    interpreters: tuple[Interpreter, ...] = ()

    @property
    def runs(self) -> ExecFile:
        """The file that /proc/PID/exe will be once the exec succeeds."""
        return self.interpreters[-1].file if self.interpreters else self.file


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
        # The audit log keeps the deny itself; this says the user did not see its line.
        logger.warning("a deny line could not be written to stderr (%d so far)", self.dropped)


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
        # Called for every exec allowed by the agent or by fail-open, once the kernel has been
        # answered; it only queues the accounting record (session_wrapper.accounting).
        self.account = account
        # ThreadPoolExecutor starts a thread only when no idle one is left, so a session that
        # never asks the agent twice at once runs one worker, and start-up pays for none.
        self._workers = ThreadPoolExecutor(workers, thread_name_prefix="authorize")
        self._receiver = threading.Thread(target=self._receive_loop, name="receiver", daemon=True)
        self.verifier = ExecVerifier(self._exec_verification_failed)
        # Execs allowed by the receiver itself are verified here, never on the receiver.
        self._watchers = ThreadPoolExecutor(WATCHERS, thread_name_prefix="verify")
        self.drained = threading.Event()

    def start(self) -> None:
        self._receiver.start()

    def wait_drained(self, timeout_s: float) -> bool:
        """Waits until the listener reports that no task is left; False on timeout."""
        return self.drained.wait(timeout_s)

    def stop(self) -> None:
        """Lets the pools' threads end once idle, so that the wrapper can exit even if the
        listener never reported the end."""
        self._workers.shutdown(wait=False)
        self._watchers.shutdown(wait=False)

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
                        time.sleep(_RECEIVE_ERROR_PAUSE_S)  # never a busy loop of errors
                    continue
                try:
                    self._triage(notification)
                except Exception:  # a bug must not leave the session hung
                    logger.exception("handling notification %d failed", notification.id)
                    self._fail_quietly(notification.id)
        finally:
            self.drained.set()
            self.stop()

    def _fail_quietly(self, ident: int) -> None:
        """Denies after an unexpected error; an error in the denial itself is only logged."""
        try:
            self.listener.fail(ident, errno.EACCES)
        except OSError as error:
            logger.error("denying notification %d failed: %s", ident, error)

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
            memory = TargetMemory(notification.pid, self._validity(notification))
        except TargetGone:
            return
        except Unreadable as problem:
            self._deny_unreadable(notification, call, problem)
            return
        # The memory file stays open for the re-check of an allowlisted exec.
        with memory:
            self._triage_read(notification, call, memory)

    def _triage_read(
        self, notification: Notification, call: ExecCall, memory: TargetMemory
    ) -> None:
        try:
            raw_path, file = self._read_target(notification, call, memory)
            interpreters = self._interpreters(notification, file)
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

        held = Held(notification, call, raw_path, file, interpreters)
        decision = allowlist_decision(file.path, self.allowlist)
        if decision is None or any(
            allowlist_decision(step.file.path, self.allowlist) is None for step in interpreters
        ):
            self._workers.submit(self._work, held)
            return
        self._finish(held, (), decision, memory)

    def _read_target(
        self, notification: Notification, call: ExecCall, memory: TargetMemory
    ) -> tuple[bytes, ExecFile]:
        raw_path = memory.read_cstring(call.path_address, PATH_MAX)
        if len(raw_path) >= PATH_MAX:
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG))
        file = resolve_exec_file(notification.pid, raw_path, call.dirfd, call.at_flags)
        # The resolution went through /proc/PID/...; make sure it was still the same task.
        if not self.listener.id_valid(notification.id):
            raise TargetGone("notification no longer valid")
        return raw_path, file

    def _interpreters(self, notification: Notification, file: ExecFile) -> tuple[Interpreter, ...]:
        """The interpreters the kernel will run for a script, resolved as it would resolve them.

        fs/binfmt_script.c opens the interpreter with open_exec(), relative to the task's cwd,
        and fs/exec.c allows MAX_SCRIPT_DEPTH rewrites before ELOOP. Raises OSError with the
        errno the exec would get when the chain cannot run.
        """
        chain: list[Interpreter] = []
        current = file
        while True:
            try:
                shebang = parse_shebang(current.head)
            except BadShebang as problem:
                raise OSError(errno.ENOEXEC, str(problem)) from None
            if shebang is None:
                break
            if len(chain) == MAX_SCRIPT_DEPTH:
                raise OSError(errno.ELOOP, "too many nested #! interpreters")
            current = resolve_exec_file(notification.pid, shebang.interpreter, AT_FDCWD, 0)
            chain.append(Interpreter(shebang, current))
        if chain and not self.listener.id_valid(notification.id):
            raise TargetGone("notification no longer valid")
        return tuple(chain)

    def _validity(self, notification: Notification) -> Callable[[], bool]:
        return lambda: self.listener.id_valid(notification.id)

    def _work(self, held: Held) -> None:
        try:
            self._authorize(held)
        except Exception:  # a bug must not leave the exec held forever
            logger.exception("authorizing notification %d failed", held.notification.id)
            self._fail_quietly(held.notification.id)

    def _authorize(self, held: Held) -> None:
        notification = held.notification
        try:
            memory = TargetMemory(notification.pid, self._validity(notification))
        except TargetGone:
            return
        except Unreadable as problem:
            self._deny_unreadable(notification, held.call, problem)
            return
        # Kept open through the agent's answer, for the re-check before CONTINUE.
        with memory:
            try:
                argv = memory.read_argv(held.call.argv_address, MAX_ARG_COUNT, MAX_ARG_BYTES)
            except TargetGone:
                return
            except Unreadable as problem:
                self._deny_unreadable(notification, held.call, problem)
                return

            decision = self._decide_one(ExecRequest(held.file.path, argv, held.raw_path))
            if decision.allowed and held.interpreters:
                decision = self._decide_interpreters(held, argv, decision)
            self._finish(held, argv, decision, memory)

    def _decide_one(self, request: ExecRequest) -> Decision:
        """The allowlist, else the agent, for one file the exec will run."""
        listed = allowlist_decision(request.path, self.allowlist)
        if listed is not None:
            return listed
        try:
            query = exec_query(self.identity, request)
        except UnsendableRequest as problem:
            return unsendable_decision(str(problem))
        return decide(query, self.authorize(query), self.fail_policy)

    def _decide_interpreters(
        self, held: Held, argv: tuple[bytes, ...], script: Decision
    ) -> Decision:
        """Each interpreter must be allowed too, with the argv the kernel builds for it.

        The script's name in that argv is the name the kernel has for it: the exec's own path,
        or /dev/fd/N[/PATH] for execveat with a dirfd (fs/exec.c alloc_bprm()).
        """
        name = _kernel_filename(held.call, held.raw_path)
        verdicts = [script]
        for step in held.interpreters:
            argv = interpreter_argv(step.shebang, name, argv)
            request = ExecRequest(step.file.path, argv, step.shebang.interpreter)
            decision = self._decide_one(request)
            if not decision.allowed:
                shown = printable_bytes(step.file.path)
                return replace(decision, reason=f"interpreter {shown}: {decision.reason}")
            verdicts.append(decision)
            name = step.shebang.interpreter
        # An agent's allow rests on argv, which the check before CONTINUE must then re-read.
        return next((v for v in verdicts if v.basis is not Basis.ALLOWLIST), script)

    def _finish(
        self,
        held: Held,
        argv: tuple[bytes, ...],
        decision: Decision,
        memory: TargetMemory | None = None,
    ) -> None:
        """Re-checks what the decision rested on, then answers the kernel and reports.

        ``memory`` is the target's memory file when the caller still has it open.
        """
        if decision.allowed:
            changed = self._changed_since_decision(held, argv, decision, memory)
            if changed == TARGET_GONE:
                # Killed, or its exec interrupted and restarted as a new notification: no one
                # is left to answer or to tell.
                logger.debug("notification %d: %s", held.notification.id, changed)
                return
            if changed is not None:
                decision = Decision(
                    False, decision.basis, f"{changed} during authorization", errno.EACCES
                )
        watch = self._prepare_watch(held) if decision.allowed else None
        if watch is None:
            if decision.allowed:
                decision = Decision(False, decision.basis, "cannot watch the exec", errno.EACCES)
            # The deny line goes out before the answer, so that the user reads it before the
            # shell's own "Permission denied".
            self._report(held, argv, decision)
            self.listener.fail(held.notification.id, decision.errno or errno.EACCES)
            return
        answered = self.listener.allow(held.notification.id)
        # Reported after the answer: the exec does not wait for its log line.
        self._report(held, argv, decision)
        if answered and decision.basis is not Basis.ALLOWLIST:
            self.account(ExecRequest(held.file.path, argv, held.raw_path))
        self._verify_later(watch, answered)

    def _changed_since_decision(
        self,
        held: Held,
        argv: tuple[bytes, ...],
        decision: Decision,
        memory: TargetMemory | None,
    ) -> str | None:
        """Re-reads the path (and argv, for an agent decision) before CONTINUE.

        Known limit: seccomp_unotify(2) says the kernel reads the arguments again after
        CONTINUE, so a sibling thread can still rewrite them after this check. The check only
        narrows that window; the README's security section describes what remains.
        """
        try:
            with contextlib.ExitStack() as stack:
                if memory is None:
                    valid = self._validity(held.notification)
                    memory = stack.enter_context(TargetMemory(held.notification.pid, valid))
                return self._compare_again(held, argv, decision, memory)
        except TargetGone:
            return TARGET_GONE
        except (Unreadable, OSError):
            return "path or arguments became unreadable"
        return None

    def _compare_again(
        self, held: Held, argv: tuple[bytes, ...], decision: Decision, memory: TargetMemory
    ) -> str | None:
        raw_path = memory.read_cstring(held.call.path_address, PATH_MAX)
        if raw_path != held.raw_path:
            return "path changed"
        file = reopen_exec_file(
            held.notification.pid, raw_path, held.call.dirfd, held.call.at_flags, held.file
        )
        # The reopening went through /proc/PID/...; make sure it was still the same task.
        if not self.listener.id_valid(held.notification.id):
            raise TargetGone("notification no longer valid")
        if file is None:
            return "path changed"
        if self._interpreters(held.notification, file) != held.interpreters:
            return "interpreter changed"
        if decision.basis is not Basis.ALLOWLIST:
            again = memory.read_argv(held.call.argv_address, MAX_ARG_COUNT, MAX_ARG_BYTES)
            if again != argv:
                return "arguments changed"
        return None

    def _prepare_watch(self, held: Held) -> Watch | None:
        """Registers the exec for post-exec verification while it is still held."""
        runs = held.runs
        try:
            return self.verifier.prepare(held.notification.pid, (runs.device, runs.inode))
        except OSError as error:
            logger.debug("cannot watch pid %d: %s", held.notification.pid, error)
            return None

    def _verify_later(self, watch: Watch, answered: bool) -> None:
        """Verifies now on a worker, or on a watcher thread when called by the receiver."""
        if not answered:
            self.verifier.cancel(watch)
        elif threading.current_thread() is self._receiver:
            self._watchers.submit(self._watch, watch)
        else:
            self.verifier.verify(watch)

    def _watch(self, watch: Watch) -> None:
        try:
            self.verifier.verify(watch)
        except Exception:
            logger.exception("verifying the exec of pid %d failed", watch.tgid)

    def _exec_verification_failed(self, mismatch: Mismatch) -> None:
        """The process runs a file nobody authorized: it has been killed; raise the alarm."""
        audit.record(
            logging.CRITICAL,
            "exec_verification_failed",
            pid=mismatch.tgid,
            path=printable_bytes(os.fsencode(mismatch.found_path)),
            expected=f"{mismatch.expected[0]}:{mismatch.expected[1]}",
            found=f"{mismatch.found[0]}:{mismatch.found[1]}",
            caught_after_us=round(mismatch.after_s * 1e6),
            action="SIGKILL",
        )
        self.deny_writer.write(
            one_line(
                f"session-wrapper: exec verification failed: pid {mismatch.tgid} ran "
                f"{mismatch.found_path}, not the file authorized; killed after "
                f"{round(mismatch.after_s * 1e6)} us"
            )
        )

    def _deny_unreadable(
        self, notification: Notification, call: ExecCall, problem: Unreadable
    ) -> None:
        decision = unsendable_decision(problem.reason)
        decision = replace(decision, errno=problem.errno)
        file = ExecFile(problem.path or b"(unreadable)", 0, 0)
        self._report(Held(notification, call, b"", file), (), decision)
        self.listener.fail(notification.id, problem.errno)

    def _report(self, held: Held, argv: tuple[bytes, ...], decision: Decision) -> None:
        quiet = decision.allowed and decision.basis is Basis.ALLOWLIST
        if quiet and not audit.logger.isEnabledFor(logging.DEBUG):
            # Nothing would take the line (no syslog, no -vv): skip building it on the
            # receiver, which every allowlisted exec passes through.
            return
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


def _kernel_filename(call: ExecCall, raw_path: bytes) -> bytes:
    """The name fs/exec.c alloc_bprm() gives the file, which a script's interpreter receives."""
    if raw_path.startswith(b"/") or call.dirfd == AT_FDCWD:
        return raw_path
    if call.at_flags & AT_EMPTY_PATH and raw_path == b"":
        return b"/dev/fd/%d" % call.dirfd
    return b"/dev/fd/%d/%s" % (call.dirfd, raw_path)
