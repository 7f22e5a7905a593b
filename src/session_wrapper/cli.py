"""The command line: ``session-wrapper [OPTIONS] -- COMMAND [ARGS]...`` parsed into Settings.

Parsing checks every value and reads the allowlist file, so a bad command line ends in one line
on stderr and exit status 2 before anything is forked. Running the session is session.py's job;
it is imported only after parsing, so ``--help`` and usage errors stay fast.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import re
import stat
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from session_wrapper.allowlist import AllowlistError, parse_allowlist
from session_wrapper.settings import (
    DEFAULT_ENDPOINT,
    DEFAULT_SYSLOG_SOCKET,
    DEFAULT_TIMEOUT_MS,
    FailPolicy,
    Settings,
)

logger = logging.getLogger(__name__)

PROG = "session-wrapper"
USAGE = f"{PROG} [OPTIONS] -- COMMAND [ARGS]..."

# setresuid(2)/setresgid(2) read (uid_t)-1 as "leave unchanged", so the largest usable id is one
# below it.
MAX_ID = 2**32 - 2

# RFC 8907 section 6.1: user_len, port_len and rem_addr_len are single octets.
MAX_FIELD_BYTES = 255

# An exec waits at most this long for the agent; a longer wait is a typo, not a policy.
MAX_TIMEOUT_MS = 3_600_000

# An allowlist is a short list of paths; anything bigger is the wrong file.
MAX_ALLOWLIST_BYTES = 1024 * 1024

# Trusted, root-owned directories that --exec-dirs is meant for.
SUGGESTED_EXEC_DIRS = "/usr,/bin,/sbin,/lib,/lib64,/opt"

_DIGITS = re.compile(r"[0-9]+")
_SIGNED_DIGITS = re.compile(r"-?[0-9]+")

_DESCRIPTION = """\
Runs COMMAND, normally the user's login shell, as --user-uid/--user-gid, and asks the local
TACACS+ agent whether each program started anywhere in the session may run. It waits until every
process of the session has exited. Started as the user (sshd's ForceCommand), it sets
no_new_privs, so setuid programs gain nothing; started as root, it drops to the user's ids and
setuid programs keep working, still mediated."""

_EPILOG = """\
example sshd_config entry (docker/session-wrapper-shim builds the command line from $USER,
$SSH_TTY, $SSH_CONNECTION and $SSH_ORIGINAL_COMMAND):

  Match Group session-wrapper
      ForceCommand /usr/local/libexec/session-wrapper-shim

exit status: the command's own, 128+N when signal N killed it, 126 when it was denied or not
executable, 127 when it does not exist, 1 for a refused session or a runtime failure, 2 for a
usage error (nothing was started)."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, without the usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _user_id(kind: str) -> Callable[[str], int]:
    def convert(text: str) -> int:
        if not _DIGITS.fullmatch(text) or int(text) > MAX_ID:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a numeric {kind}; give a number from 0 to {MAX_ID}, "
                f'for example "$(id -{kind[0]})"'
            )
        return int(text)

    return convert


def _privilege_level(text: str) -> int:
    if not _DIGITS.fullmatch(text) or int(text) > 15:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a TACACS+ privilege level; give a number from 0 to 15"
        )
    return int(text)


def _timeout_ms(text: str) -> int:
    if not _SIGNED_DIGITS.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number of milliseconds; give one such as "
            f"{DEFAULT_TIMEOUT_MS}"
        )
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not positive; give a number of milliseconds from 1 to {MAX_TIMEOUT_MS}"
        )
    if value > MAX_TIMEOUT_MS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is over one hour; give a number of milliseconds from 1 to {MAX_TIMEOUT_MS}"
        )
    return value


def _fail_policy(text: str) -> FailPolicy:
    try:
        return FailPolicy(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown fail policy {text!r}; use 'closed' or 'open'"
        ) from None


def _syslog_socket(text: str) -> str:
    if not text.startswith("/"):
        raise argparse.ArgumentTypeError(f"{text!r} is not an absolute path")
    return text


def _exec_dirs(text: str) -> tuple[str, ...]:
    dirs = tuple(text.split(","))
    for path in dirs:
        if not path.startswith("/"):
            raise argparse.ArgumentTypeError(
                f"{path!r} is not an absolute directory; give a list such as {SUGGESTED_EXEC_DIRS}"
            )
        if not os.path.isdir(path):
            raise argparse.ArgumentTypeError(f"{path!r} is not a directory; give existing ones")
    return dirs


def _check_utf8(text: str) -> None:
    # A non-UTF-8 argv byte arrives as a lone surrogate, which no protobuf string can carry.
    try:
        text.encode()
    except UnicodeEncodeError:
        shown = repr(text.encode("utf-8", "surrogateescape"))[1:]  # bytes repr without the b
        raise argparse.ArgumentTypeError(f"{shown} is not valid UTF-8") from None


def _tacacs_field(*, required: bool) -> Callable[[str], str]:
    """A converter for --user, --port and --rem-addr: fields of every TACACS+ request."""

    def convert(text: str) -> str:
        if required and not text:
            raise argparse.ArgumentTypeError("is empty; give the TACACS+ user name")
        _check_utf8(text)
        if any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
            raise argparse.ArgumentTypeError(f"{text!r} contains a control character; remove it")
        size = len(text.encode())
        if size > MAX_FIELD_BYTES:
            raise argparse.ArgumentTypeError(
                f"is {size} bytes long; TACACS+ allows at most {MAX_FIELD_BYTES}"
            )
        return text

    return convert


def _service_endpoint(text: str) -> str:
    hint = f"give a Unix socket path such as {DEFAULT_ENDPOINT} or HOST:PORT"
    if not text:
        raise argparse.ArgumentTypeError(f"is empty; {hint}")
    _check_utf8(text)
    if text.startswith("/"):
        return text
    for scheme in ("unix:", "unix-abstract:"):
        if text.startswith(scheme):
            if text == scheme:
                raise argparse.ArgumentTypeError(f"{text!r} has no socket name; {hint}")
            return text

    host, colon, port = text.rpartition(":")
    if not colon:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an absolute socket path nor HOST:PORT; {hint}"
        )
    if not host:
        raise argparse.ArgumentTypeError(f"{text!r} has no host; {hint}")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise argparse.ArgumentTypeError(
            f"{text!r} is ambiguous; write an IPv6 address in brackets, as in [::1]:PORT"
        )
    if not _DIGITS.fullmatch(port) or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(
            f"{text!r} has a bad port {port!r}; give a port number from 1 to 65535"
        )
    return text


def build_parser() -> argparse.ArgumentParser:
    """The parser for the options before ``--``; the command after it is split off first."""
    parser = _Parser(
        prog=PROG,
        usage=USAGE,
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument(
        "--user",
        required=True,
        metavar="NAME",
        type=_tacacs_field(required=True),
        help="TACACS+ user the session is authorized for",
    )
    parser.add_argument(
        "--user-uid", required=True, metavar="UID", type=_user_id("uid"), help="uid to drop to"
    )
    parser.add_argument(
        "--user-gid", required=True, metavar="GID", type=_user_id("gid"), help="gid to drop to"
    )
    parser.add_argument(
        "--service-endpoint",
        default=DEFAULT_ENDPOINT,
        metavar="PATH",
        type=_service_endpoint,
        help="the agent's Unix socket path, or HOST:PORT (default: %(default)s)",
    )
    parser.add_argument(
        "--fail-policy",
        default=FailPolicy.CLOSED,
        metavar="closed|open",
        type=_fail_policy,
        help="what an exec gets when the agent cannot answer: closed denies it, open allows "
        "it (default: closed)",
    )
    parser.add_argument(
        "--authorization-timeout-ms",
        default=DEFAULT_TIMEOUT_MS,
        metavar="N",
        type=_timeout_ms,
        help="how long one authorization may take, connecting included (default: %(default)s)",
    )
    parser.add_argument(
        "--privilege-level",
        default=1,
        metavar="0..15",
        type=_privilege_level,
        help="TACACS+ priv-lvl sent with every request (default: %(default)s)",
    )
    parser.add_argument(
        "--allowlist",
        metavar="FILE",
        help="file of extra absolute paths that run without asking the agent, one a line; "
        "'#' starts a comment line",
    )
    parser.add_argument(
        "--port",
        default="",
        metavar="STR",
        type=_tacacs_field(required=False),
        help='TACACS+ port, usually "$SSH_TTY"',
    )
    parser.add_argument(
        "--rem-addr",
        default="",
        metavar="STR",
        type=_tacacs_field(required=False),
        help='TACACS+ rem_addr, usually the first field of "$SSH_CONNECTION"',
    )
    parser.add_argument(
        "-v",
        "--verbose",
        dest="verbosity",
        action="count",
        default=0,
        help="more detail on stderr: -v info, -vv debug, -vvv trace with tracebacks",
    )
    parser.add_argument(
        "--exec-dirs",
        default=(),
        metavar="DIR[,DIR...]",
        type=_exec_dirs,
        help="run programs only from beneath these directories, enforced by Landlock "
        f"(suggested: {SUGGESTED_EXEC_DIRS}); default: no such limit",
    )
    parser.add_argument(
        "--syslog-socket",
        default=DEFAULT_SYSLOG_SOCKET,
        metavar="PATH",
        type=_syslog_socket,
        help=f"the syslog socket the audit trail goes to (default: {DEFAULT_SYSLOG_SOCKET})",
    )
    # Words before "--" land here, so that they get a clear message rather than argparse's.
    parser.add_argument("stray", nargs="*", help=argparse.SUPPRESS)
    return parser


def parse_args(argv: Sequence[str]) -> Settings:
    """Parses the arguments after the program name into Settings, reading the allowlist file.

    Exits with status 2 and one line on stderr for any bad value; ``--help`` exits 0.
    Everything after the first ``--`` is the command, verbatim.
    """
    parser = build_parser()
    words = list(argv)
    separator = words.index("--") if "--" in words else None
    options = words if separator is None else words[:separator]
    namespace, unknown = parser.parse_known_args(options)

    # Without "--", a command's own options (sh -c) would otherwise read as unknown options.
    if separator is None and namespace.stray:
        parser.error(f"missing '--' before the command {namespace.stray[0]!r}; usage: {USAGE}")
    if unknown:
        parser.error(f"unknown option {unknown[0]!r}; see '{PROG} --help'")
    if separator is None:
        parser.error(f"missing '--' and the command; usage: {USAGE}")
    if namespace.stray:
        parser.error(
            f"unexpected argument {namespace.stray[0]!r} before '--'; "
            "put options before '--' and the command after it"
        )
    command = tuple(words[separator + 1 :])
    if not command:
        parser.error(f"missing the command after '--'; usage: {USAGE}")
    if not command[0]:
        parser.error("the command after '--' is an empty string; give the program to run")

    allowlist: frozenset[bytes] = frozenset()
    if namespace.allowlist is not None:
        allowlist = _read_allowlist(parser, namespace.allowlist)

    return Settings(
        user=namespace.user,
        user_uid=namespace.user_uid,
        user_gid=namespace.user_gid,
        command=command,
        service_endpoint=namespace.service_endpoint,
        fail_policy=namespace.fail_policy,
        authorization_timeout_ms=namespace.authorization_timeout_ms,
        privilege_level=namespace.privilege_level,
        allowlist_file=namespace.allowlist,
        allowlist=allowlist,
        port=namespace.port,
        rem_addr=namespace.rem_addr,
        verbosity=namespace.verbosity,
        exec_dirs=namespace.exec_dirs,
        syslog_socket=namespace.syslog_socket,
    )


def _read_allowlist(parser: argparse.ArgumentParser, path: str) -> frozenset[bytes]:
    """The operator's entries from the allowlist file; built-ins are not added here."""
    problem = f"cannot read allowlist {path}"
    if not path:
        parser.error("argument --allowlist: is empty; give the allowlist file's path")
    try:
        content = _read_regular_file(path)
    except OSError as err:
        parser.error(f"argument --allowlist: {problem}: {err.strerror}")
    if content is None:
        parser.error(
            f"argument --allowlist: {problem}: it is larger than {MAX_ALLOWLIST_BYTES} bytes"
        )
    try:
        return parse_allowlist(content.split(b"\n"), path)
    except AllowlistError as err:
        parser.error(f"argument --allowlist: {err}; each entry must be an absolute path")


def _read_regular_file(path: str) -> bytes | None:
    """The file's bytes, or None when it is over the size limit.

    O_NONBLOCK keeps a FIFO from hanging the login; only a regular file is read, since a
    device such as /dev/zero would never end.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_ALLOWLIST_BYTES:
            chunk = os.read(fd, MAX_ALLOWLIST_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_ALLOWLIST_BYTES:
            return None
        return b"".join(chunks)
    finally:
        os.close(fd)


def main(argv: Sequence[str] | None = None) -> int:
    """Parses the command line, then runs the session; returns the exit status."""
    settings = parse_args(sys.argv[1:] if argv is None else argv)
    # Imported here so that --help and usage errors never load grpc or the kernel adapter.
    from session_wrapper import session

    try:
        return session.run(settings)
    except Exception as error:
        # A bug or an environment the wrapper cannot run in. The session's execs are safe
        # either way: once the wrapper is gone, the kernel fails them with ENOSYS.
        if settings.verbosity >= 3:
            raise
        print(
            f"session-wrapper: internal error: {type(error).__name__}: {error} "
            "(run with -vvv for the traceback)",
            file=sys.stderr,
        )
        return 1
