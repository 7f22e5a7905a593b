"""The pure decision core: exec request, agent verdict and fail policy in, a Decision out.

Nothing here reads the kernel or talks to the agent. The kernel adapter supplies an ExecRequest
whose path is already canonical; the agent client turns a gRPC reply (or its absence) into a
Verdict. Every rule about what is allowed lives in this module, so it can be tested with plain
values.
"""

from __future__ import annotations

import enum
import errno
from dataclasses import dataclass

from session_wrapper.settings import FailPolicy

# RFC 8907 section 6.1: arg_cnt and each arg_N_len are single octets.
MAX_ARG_COUNT = 255
MAX_ARG_BYTES = 255

DENY_ERRNO = errno.EACCES


class AuthorizationStatus(enum.IntEnum):
    """tacacsrs.agent.v1.AuthorizationStatus; the numbers are RFC 8907's status codes."""

    UNSPECIFIED = 0
    PASS_ADD = 1
    PASS_REPL = 2
    FAIL = 16
    ERROR = 17
    FOLLOW = 33


@dataclass(frozen=True)
class AvPair:
    """One RFC 8907 argument: ``name=value`` when mandatory, ``name*value`` when optional."""

    name: str
    value: str
    mandatory: bool = True

    def __str__(self) -> str:
        return f"{self.name}{'=' if self.mandatory else '*'}{self.value}"


@dataclass(frozen=True)
class Identity:
    """Who is asking: the TACACS+ user, port, rem_addr and priv-lvl of the session."""

    user: str
    port: str
    rem_addr: str
    priv_lvl: int


@dataclass(frozen=True)
class ExecRequest:
    """An exec the kernel is holding. ``path`` is canonical; ``raw_path`` is what was passed."""

    path: bytes
    argv: tuple[bytes, ...]
    raw_path: bytes = b""


@dataclass(frozen=True)
class AuthorizationQuery:
    """What is sent to the agent's Authorization RPC."""

    identity: Identity
    args: tuple[AvPair, ...]


@dataclass(frozen=True)
class AgentAnswer:
    """A reply that carried an AuthorizationResponse."""

    status: AuthorizationStatus
    server: str = ""
    server_message: str = ""
    args: tuple[AvPair, ...] = ()


class Outage(enum.Enum):
    """Why the agent gave no usable answer."""

    CONNECT = "cannot connect"
    TIMEOUT = "timed out"
    RPC_ERROR = "gRPC error"
    SERVICE_ERROR = "service error"
    MALFORMED = "malformed reply"


@dataclass(frozen=True)
class AgentUnavailable:
    """No usable answer: the fail policy decides."""

    outage: Outage
    detail: str = ""
    server: str = ""


Verdict = AgentAnswer | AgentUnavailable


class Basis(enum.Enum):
    """What a decision rests on; the audit log records it."""

    ALLOWLIST = "allowlist"
    AGENT = "agent"
    FAIL_OPEN = "fail-open"
    FAIL_CLOSED = "fail-closed"
    UNSENDABLE = "unsendable"


@dataclass(frozen=True)
class Decision:
    """Allow, or deny with an errno and a reason the user is shown."""

    allowed: bool
    basis: Basis
    reason: str
    errno: int = 0
    server: str = ""
    server_message: str = ""
    outage: Outage | None = None
    granted_priv_lvl: int | None = None


class UnsendableRequest(ValueError):
    """An exec that cannot be put into a TACACS+ request without losing part of it."""


def escape_arg(raw: bytes) -> str:
    r"""Makes argv bytes a str for the agent, reversibly.

    Valid UTF-8 passes through, except that a backslash becomes ``\\``. Each byte that is not
    part of valid UTF-8 becomes ``\xHH`` (two lower-case hex digits). unescape_arg reverses it.
    """
    out: list[str] = []
    for char in raw.decode("utf-8", "surrogateescape"):
        code = ord(char)
        if char == "\\":
            out.append("\\\\")
        elif 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        else:
            out.append(char)
    return "".join(out)


def unescape_arg(text: str) -> bytes:
    """The inverse of escape_arg."""
    out = bytearray()
    i = 0
    while i < len(text):
        char = text[i]
        if char != "\\":
            out += char.encode()
            i += 1
        elif text[i + 1 : i + 2] == "\\":
            out.append(0x5C)
            i += 2
        elif text[i + 1 : i + 2] == "x" and _is_hex_pair(text[i + 2 : i + 4]):
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
        else:
            raise ValueError(f"bad escape at offset {i} in {text!r}")
    return bytes(out)


def _is_hex_pair(text: str) -> bool:
    # Exactly what escape_arg writes: int(..., 16) alone would also take "+f", " f" or "FF".
    return len(text) == 2 and all(char in "0123456789abcdef" for char in text)


def session_query(identity: Identity) -> AuthorizationQuery:
    """The session request: ``service=shell`` with an empty ``cmd``."""
    return AuthorizationQuery(identity, (AvPair("service", "shell"), AvPair("cmd", "")))


def exec_query(identity: Identity, request: ExecRequest) -> AuthorizationQuery:
    """``service=shell``, ``cmd=<path>``, one ``cmd-arg`` per argv[1:], all mandatory.

    Raises UnsendableRequest when RFC 8907's limits would force truncation: the request is then
    denied rather than sent in part.
    """
    args = [AvPair("service", "shell"), AvPair("cmd", escape_arg(request.path))]
    args += [AvPair("cmd-arg", escape_arg(arg)) for arg in request.argv[1:]]
    if len(args) > MAX_ARG_COUNT:
        # The kernel adapter stops reading one past the limit, so the real count is unknown.
        raise UnsendableRequest(
            f"more than {MAX_ARG_COUNT - 2} arguments, TACACS+'s limit per command"
        )
    for index, pair in enumerate(args):
        size = len(str(pair).encode())
        if size > MAX_ARG_BYTES:
            which = "the command path" if index == 1 else f"argument {index - 1}"
            raise UnsendableRequest(
                f"{which} is over {MAX_ARG_BYTES} bytes as a TACACS+ arg, the limit"
            )
    return AuthorizationQuery(identity, tuple(args))


def allowlist_decision(path: bytes, allowlist: frozenset[bytes]) -> Decision | None:
    """Allows a canonical path on the allowlist; None means the agent must be asked."""
    if path in allowlist:
        return Decision(True, Basis.ALLOWLIST, "on the allowlist")
    return None


def unsendable_decision(problem: str) -> Decision:
    """Denies, whatever the fail policy, a request that could not be read or sent."""
    return Decision(False, Basis.UNSENDABLE, f"cannot be authorized: {problem}", DENY_ERRNO)


def decide(query: AuthorizationQuery, verdict: Verdict, fail_policy: FailPolicy) -> Decision:
    """The decision for an exec, given the agent's verdict on its query."""
    return _decide(query, verdict, fail_policy, session=False)


def decide_session(
    query: AuthorizationQuery, verdict: Verdict, fail_policy: FailPolicy
) -> Decision:
    """The decision for the session request; a valid ``priv-lvl`` in the reply is granted."""
    return _decide(query, verdict, fail_policy, session=True)


def _decide(
    query: AuthorizationQuery, verdict: Verdict, fail_policy: FailPolicy, *, session: bool
) -> Decision:
    if isinstance(verdict, AgentUnavailable):
        return _fail_policy_decision(verdict, fail_policy)
    if verdict.status is AuthorizationStatus.UNSPECIFIED:
        malformed = AgentUnavailable(Outage.MALFORMED, "status unspecified", verdict.server)
        return _fail_policy_decision(malformed, fail_policy)

    server = verdict.server or "unknown"
    message = verdict.server_message
    if verdict.status is AuthorizationStatus.FAIL:
        return _agent_deny(verdict, f"denied by TACACS+ (server: {server})" + _tail(message))
    if verdict.status is AuthorizationStatus.ERROR:
        return _agent_deny(verdict, f"TACACS+ server error (server: {server})" + _tail(message))
    if verdict.status is AuthorizationStatus.FOLLOW:
        return _agent_deny(
            verdict, f"TACACS+ FOLLOW is not supported (server: {server})" + _tail(message)
        )

    granted: int | None = None
    for pair in verdict.args:
        if not pair.mandatory or pair in query.args:
            continue
        if session and pair.name == "priv-lvl" and _priv_lvl(pair.value) is not None:
            granted = _priv_lvl(pair.value)
            continue
        return _agent_deny(
            verdict,
            f"TACACS+ reply requires {str(pair)!r}, which session-wrapper cannot apply "
            f"(server: {server})",
        )
    if verdict.status is AuthorizationStatus.PASS_REPL and not _restates(query, verdict, session):
        return _agent_deny(
            verdict,
            "TACACS+ reply (PASS_REPL) replaces the request's arguments, which session-wrapper "
            f"cannot apply (server: {server})",
        )
    return Decision(
        True,
        Basis.AGENT,
        f"allowed by TACACS+ (server: {server})" + _tail(message),
        server=verdict.server,
        server_message=message,
        granted_priv_lvl=granted,
    )


def _restates(query: AuthorizationQuery, answer: AgentAnswer, session: bool) -> bool:
    """Whether a PASS_REPL reply leaves the request as it was.

    RFC 8907 section 6.2: with PASS_REPL the reply's arguments are used instead of the request's.
    An exec can only run as requested, so a reply with mandatory arguments must restate the
    request in full and in order; one without any replaces nothing that can be enforced.
    """
    replacement = tuple(
        pair
        for pair in answer.args
        if pair.mandatory and not (session and pair.name == "priv-lvl")
    )
    return not replacement or replacement == query.args


def _fail_policy_decision(unavailable: AgentUnavailable, fail_policy: FailPolicy) -> Decision:
    what = f"authorization service unavailable ({unavailable.outage.value})"
    if unavailable.detail:
        what += f": {unavailable.detail}"
    if fail_policy is FailPolicy.OPEN:
        return Decision(
            True,
            Basis.FAIL_OPEN,
            f"{what}; allowed by fail policy open",
            server=unavailable.server,
            outage=unavailable.outage,
        )
    return Decision(
        False,
        Basis.FAIL_CLOSED,
        f"{what}; denied by fail policy closed",
        DENY_ERRNO,
        server=unavailable.server,
        outage=unavailable.outage,
    )


def _agent_deny(answer: AgentAnswer, reason: str) -> Decision:
    return Decision(
        False,
        Basis.AGENT,
        reason,
        DENY_ERRNO,
        server=answer.server,
        server_message=answer.server_message,
    )


def _tail(message: str) -> str:
    return f": {message}" if message else ""


def _priv_lvl(value: str) -> int | None:
    # isdecimal() alone would take other scripts' digits, such as "\u0663".
    if value.isascii() and value.isdecimal() and 0 <= int(value) <= 15:
        return int(value)
    return None
