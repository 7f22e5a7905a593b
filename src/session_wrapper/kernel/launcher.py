"""Starts the session's child: fork, filter, listener fd hand-off, privilege drop, exec.

The parent keeps no thread and no gRPC channel across the fork. The child reports every failure
as one text frame on a SOCK_SEQPACKET control socket and never returns into the parent's code.
"""

from __future__ import annotations

import array
import contextlib
import errno
import json
import os
import signal
import socket
from dataclasses import dataclass

from session_wrapper.kernel import reaper

# Python ignores SIGPIPE and SIGXFSZ, and may have handlers elsewhere; the session must start
# with the dispositions a shell started by sshd would have.
_RESET_SIGNALS = (
    signal.SIGPIPE,
    signal.SIGXFSZ,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGTSTP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGCHLD,
)

READY = b"R"


class ChildSetupError(Exception):
    """The child failed before the command ran; ``exit_status`` is what the wrapper returns."""

    def __init__(self, step: str, message: str, exit_status: int) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message
        self.exit_status = exit_status


@dataclass(frozen=True)
class Started:
    """A child holding a loaded filter, waiting for the ready byte."""

    pid: int
    listener_fd: int
    control: socket.socket
    execve_nr: int
    execveat_nr: int
    wait_killable_recv: bool
    # The Landlock ABI the session runs under, 0 when it runs without the layer, and why.
    landlock_abi: int = 0
    landlock_skipped: str = ""


@dataclass(frozen=True)
class Credentials:
    user: str
    uid: int
    gid: int


def start(
    command: tuple[str, ...], credentials: Credentials, exec_dirs: tuple[str, ...] = ()
) -> Started:
    """Forks the child and returns once it has handed over its listener fd.

    ``exec_dirs``, when given, are the only directories the session may execute from.

    Raises ChildSetupError when the child fails or dies first.
    """
    parent_end, child_end = socket.socketpair(
        socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC
    )
    pid = os.fork()
    if pid == 0:
        parent_end.close()
        _child(child_end, command, credentials, exec_dirs)
    child_end.close()
    try:
        return _receive_listener(pid, parent_end)
    except BaseException:
        parent_end.close()
        raise


def release(started: Started) -> None:
    """Sends the ready byte: the child drops privileges and execs."""
    started.control.sendall(READY)


def exec_result(started: Started) -> None:
    """Waits until the child's exec succeeded (its end of the control socket closes on exec).

    Raises ChildSetupError with the child's failure frame otherwise.
    """
    frame = started.control.recv(4096)
    started.control.close()
    if frame:
        raise _setup_error(frame)


def _receive_listener(pid: int, control: socket.socket) -> Started:
    fds = array.array("i")
    message, ancillary, _flags, _addr = control.recvmsg(
        4096, socket.CMSG_SPACE(fds.itemsize), socket.MSG_CMSG_CLOEXEC
    )
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    if not message.startswith(b"fd "):
        for fd in fds:
            os.close(fd)
        if message:
            raise _setup_error(message)
        raise ChildSetupError("start", _death_reason(pid), 1)
    if len(fds) != 1:
        raise ChildSetupError("start", f"expected one listener fd, got {len(fds)}", 1)
    facts = json.loads(message[3:])
    return Started(
        pid=pid,
        listener_fd=fds[0],
        control=control,
        execve_nr=int(facts["execve"]),
        execveat_nr=int(facts["execveat"]),
        wait_killable_recv=bool(facts["wait_killable_recv"]),
        landlock_abi=int(facts.get("landlock_abi", 0)),
        landlock_skipped=str(facts.get("landlock_skipped", "")),
    )


def _death_reason(pid: int) -> str:
    _pid, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return f"child killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"child exited with status {os.waitstatus_to_exitcode(status)}"


def _setup_error(frame: bytes) -> ChildSetupError:
    step, _, rest = frame.decode("utf-8", "replace").partition("\0")
    code_text, _, message = rest.partition("\0")
    code = int(code_text) if code_text.lstrip("-").isdigit() else 0
    if step == "exec" and code == errno.ENOENT:
        status = 127
    elif step == "exec" and code in (errno.EACCES, errno.EPERM, errno.ENOEXEC):
        status = 126
    else:
        status = 1
    return ChildSetupError(step, message, status)


def _child(
    control: socket.socket,
    command: tuple[str, ...],
    credentials: Credentials,
    exec_dirs: tuple[str, ...],
) -> None:
    """Runs in the child; never returns."""
    step = "start"
    try:
        # Imported here, in the child only: the import runs ldconfig, which the parent need not
        # wait for.
        from session_wrapper.kernel import landlock, seccomp_filter

        step = "reset signals"
        for number in _RESET_SIGNALS:
            signal.signal(number, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())

        step = "make dumpable"
        # The wrapper made itself undumpable before the fork, and the child inherited that. A
        # supervisor that is not root could not read this process's memory (proc(5),
        # PTRACE_MODE_ATTACH), so the first exec would be unreadable and denied.
        reaper.make_dumpable()

        step = "build filter"
        bpf = seccomp_filter.build_bpf()

        step = "install filter"
        dropping = (os.getuid(), os.getgid()) != (credentials.uid, credentials.gid)
        if os.geteuid() != 0:
            # seccomp(2): an unprivileged process needs no_new_privs to load a filter. Started
            # as root, the filter is loaded without it, so setuid programs keep working and
            # stay mediated.
            seccomp_filter.set_no_new_privs()
        loaded = seccomp_filter.load(bpf)

        step = "landlock"
        # landlock_restrict_self(2) needs no_new_privs or CAP_SYS_ADMIN: set above in the user
        # launch mode; held until the privilege drop below in the root launch mode.
        layer = landlock.apply(exec_dirs)

        step = "send listener fd"
        facts = {
            "execve": loaded.execve_nr,
            "execveat": loaded.execveat_nr,
            "wait_killable_recv": loaded.wait_killable_recv,
            "landlock_abi": layer.abi,
            "landlock_skipped": layer.skipped,
        }
        socket.send_fds(control, [b"fd " + json.dumps(facts).encode()], [loaded.listener_fd])
        os.close(loaded.listener_fd)

        step = "wait for supervisor"
        if control.recv(1) != READY:
            os._exit(1)

        step = "drop privileges"
        if dropping:
            _drop_privileges(credentials)

        step = "exec"
        os.execvp(command[0], command)  # noqa: S606 - running the command is the point
    except OSError as error:
        _report(control, step, error.errno or 0, error.strerror or str(error))
    except BaseException as error:
        _report(control, step, 0, str(error) or type(error).__name__)
    finally:
        os._exit(1)


def _drop_privileges(credentials: Credentials) -> None:
    # Order matters: supplementary groups and gid need privilege that setuid gives away.
    os.initgroups(credentials.user, credentials.gid)
    os.setgid(credentials.gid)
    os.setuid(credentials.uid)
    if os.getuid() != credentials.uid or os.geteuid() != credentials.uid:
        raise OSError(errno.EPERM, "uid did not change")
    if os.getgid() != credentials.gid or os.getegid() != credentials.gid:
        raise OSError(errno.EPERM, "gid did not change")


def _report(control: socket.socket, step: str, code: int, message: str) -> None:
    with contextlib.suppress(OSError):
        control.send(f"{step}\0{code}\0{message}".encode())
