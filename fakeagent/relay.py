"""The fake agent's relay backend: each agent RPC becomes one RFC 8907 request to a real server.

This module maps the agent's protobuf messages to TACACS+ fields and back, and chooses the server:
in the configured order, skipping for a hold-down period one that just failed. It does not build
packets (fakeagent/tacacs_client.py does, with the tacacs_plus library) and holds no policy of its
own: the server's answer is the answer.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from tacacs_plus.flags import (
    TAC_PLUS_ACCT_FLAG_STOP,
    TAC_PLUS_ACCT_STATUS_ERROR,
    TAC_PLUS_ACCT_STATUS_FOLLOW,
    TAC_PLUS_ACCT_STATUS_SUCCESS,
    TAC_PLUS_AUTHEN_METH_NONE,
    TAC_PLUS_AUTHEN_METH_NOT_SET,
    TAC_PLUS_AUTHEN_METH_TACACSPLUS,
    TAC_PLUS_AUTHEN_STATUS_ERROR,
    TAC_PLUS_AUTHEN_STATUS_FAIL,
    TAC_PLUS_AUTHEN_STATUS_FOLLOW,
    TAC_PLUS_AUTHEN_STATUS_GETDATA,
    TAC_PLUS_AUTHEN_STATUS_GETPASS,
    TAC_PLUS_AUTHEN_STATUS_GETUSER,
    TAC_PLUS_AUTHEN_STATUS_PASS,
    TAC_PLUS_AUTHEN_STATUS_RESTART,
    TAC_PLUS_AUTHEN_SVC_LOGIN,
    TAC_PLUS_AUTHEN_TYPE_ASCII,
    TAC_PLUS_AUTHEN_TYPE_NOT_SET,
    TAC_PLUS_AUTHEN_TYPE_PAP,
    TAC_PLUS_AUTHOR_STATUS_ERROR,
    TAC_PLUS_AUTHOR_STATUS_FAIL,
    TAC_PLUS_AUTHOR_STATUS_FOLLOW,
    TAC_PLUS_AUTHOR_STATUS_PASS_ADD,
    TAC_PLUS_AUTHOR_STATUS_PASS_REPL,
    TAC_PLUS_PRIV_LVL_MAX,
    TAC_PLUS_PRIV_LVL_MIN,
)

from fakeagent import tacacs_client
from fakeagent.backend import NoReply, rpc_ended
from fakeagent.tacacs_client import (
    AccountingStart,
    AuthorizationStart,
    GarbledReply,
    PapStart,
    Secret,
    Timeouts,
    Upstream,
    UpstreamFailure,
)
from session_wrapper.rpc import tacacsrs_agent_pb2 as pb

logger = logging.getLogger(__name__)

ReplyT = TypeVar("ReplyT")

# RFC 8907 sections 5.1, 6.1 and 7.1: user, port, rem_addr, each arg and the PAP data are
# prefixed by a one-octet length, and arg_cnt is one octet.
MAX_FIELD_BYTES = 255
MAX_ARG_COUNT = 255

# The reply statuses RFC 8907 defines (sections 6.2 and 7.2); the agent's enums use the same
# numbers. Any other status byte is a garbled reply.
AUTHORIZATION_STATUSES = {
    TAC_PLUS_AUTHOR_STATUS_PASS_ADD: pb.AUTHORIZATION_STATUS_PASS_ADD,
    TAC_PLUS_AUTHOR_STATUS_PASS_REPL: pb.AUTHORIZATION_STATUS_PASS_REPL,
    TAC_PLUS_AUTHOR_STATUS_FAIL: pb.AUTHORIZATION_STATUS_FAIL,
    TAC_PLUS_AUTHOR_STATUS_ERROR: pb.AUTHORIZATION_STATUS_ERROR,
    TAC_PLUS_AUTHOR_STATUS_FOLLOW: pb.AUTHORIZATION_STATUS_FOLLOW,
}
ACCOUNTING_STATUSES = {
    TAC_PLUS_ACCT_STATUS_SUCCESS: pb.ACCOUNTING_STATUS_SUCCESS,
    TAC_PLUS_ACCT_STATUS_ERROR: pb.ACCOUNTING_STATUS_ERROR,
    TAC_PLUS_ACCT_STATUS_FOLLOW: pb.ACCOUNTING_STATUS_FOLLOW,
}

PAP_STATUSES = {
    TAC_PLUS_AUTHEN_STATUS_PASS: pb.AUTHENTICATION_STATUS_PASS,
    TAC_PLUS_AUTHEN_STATUS_FAIL: pb.AUTHENTICATION_STATUS_FAIL,
    TAC_PLUS_AUTHEN_STATUS_ERROR: pb.AUTHENTICATION_STATUS_ERROR,
}
# RFC 8907 section 5.2 statuses that are a real answer, but one the agent's
# AuthenticationStatus cannot carry (a PAP login is one round trip: no GETPASS, no RESTART).
PAP_UNCARRIED_STATUSES = {
    TAC_PLUS_AUTHEN_STATUS_GETDATA: "GETDATA",
    TAC_PLUS_AUTHEN_STATUS_GETUSER: "GETUSER",
    TAC_PLUS_AUTHEN_STATUS_GETPASS: "GETPASS",
    TAC_PLUS_AUTHEN_STATUS_RESTART: "RESTART",
    TAC_PLUS_AUTHEN_STATUS_FOLLOW: "FOLLOW",
}


class UnsendableRequest(ValueError):
    """A request RFC 8907 cannot carry whole; it is refused rather than sent truncated."""


def authen_fields(context: int) -> tuple[int, int, int]:
    """(authen_method, authen_type, authen_service) for an AuthorizationAuthenticationContext.

    RFC 8907 section 6.1: authen_method says how the client obtained the user's identity and
    authen_type the kind of authentication performed, with TAC_PLUS_AUTHEN_TYPE_NOT_SET when it is
    not known. The session is a shell login, so authen_service is always LOGIN (section 5.1).
    - TACACS_ASCII and TACACS_PAP: the user logged in through a TACACS+ server, so the method is
      TACACSPLUS and the type is the login's (ASCII or PAP).
    - UNAUTHENTICATED: no authentication was done on the user's behalf: method NONE, and the
      type is NOT_SET because there was no authentication to have a type.
    - UNSPECIFIED: the wrapper did not say, so both stay NOT_SET rather than claim anything.
    """
    if context == pb.AUTHORIZATION_AUTHENTICATION_CONTEXT_TACACS_ASCII:
        return (
            TAC_PLUS_AUTHEN_METH_TACACSPLUS,
            TAC_PLUS_AUTHEN_TYPE_ASCII,
            TAC_PLUS_AUTHEN_SVC_LOGIN,
        )
    if context == pb.AUTHORIZATION_AUTHENTICATION_CONTEXT_TACACS_PAP:
        return TAC_PLUS_AUTHEN_METH_TACACSPLUS, TAC_PLUS_AUTHEN_TYPE_PAP, TAC_PLUS_AUTHEN_SVC_LOGIN
    if context == pb.AUTHORIZATION_AUTHENTICATION_CONTEXT_UNAUTHENTICATED:
        return TAC_PLUS_AUTHEN_METH_NONE, TAC_PLUS_AUTHEN_TYPE_NOT_SET, TAC_PLUS_AUTHEN_SVC_LOGIN
    return TAC_PLUS_AUTHEN_METH_NOT_SET, TAC_PLUS_AUTHEN_TYPE_NOT_SET, TAC_PLUS_AUTHEN_SVC_LOGIN


def encode_arg(name: str, value: str, *, mandatory: bool = True) -> bytes:
    """``name=value`` when mandatory, ``name*value`` when optional (RFC 8907 section 6.1).

    A name holding ``=`` or ``*`` would be split elsewhere by the server, so it is refused.
    """
    if not name or "=" in name or "*" in name:
        raise UnsendableRequest(f"argument name {name!r} is empty or contains '=' or '*'")
    raw = f"{name}{'=' if mandatory else '*'}{value}".encode()
    if len(raw) > MAX_FIELD_BYTES:
        raise UnsendableRequest(
            f"argument {name!r} is {len(raw)} bytes, over RFC 8907's limit of {MAX_FIELD_BYTES}"
        )
    return raw


def decode_arg(raw: bytes) -> pb.AuthorizationArg | None:
    """Splits a reply arg at its first ``=`` or ``*``; None when it has neither."""
    text = raw.decode("utf-8", "replace")
    separators = [i for i in (text.find("="), text.find("*")) if i >= 0]
    if not separators:
        return None
    cut = min(separators)
    return pb.AuthorizationArg(name=text[:cut], mandatory=text[cut] == "=", value=text[cut + 1 :])


def _field(what: str, value: str) -> bytes:
    raw = value.encode()
    if len(raw) > MAX_FIELD_BYTES:
        raise UnsendableRequest(
            f"{what} is {len(raw)} bytes, over RFC 8907's limit of {MAX_FIELD_BYTES}"
        )
    return raw


def _args(args: Sequence[bytes]) -> tuple[bytes, ...]:
    if len(args) > MAX_ARG_COUNT:
        raise UnsendableRequest(
            f"{len(args)} arguments, over RFC 8907's limit of {MAX_ARG_COUNT} per request"
        )
    return tuple(args)


def _priv_lvl(value: int) -> int:
    if not TAC_PLUS_PRIV_LVL_MIN <= value <= TAC_PLUS_PRIV_LVL_MAX:
        raise UnsendableRequest(f"privilege level {value} is outside RFC 8907's 0..15")
    return value


def authorization_start(req: pb.AuthorizationRequest) -> AuthorizationStart:
    """The RFC 8907 authorization REQUEST for an agent AuthorizationRequest."""
    method, authen_type, service = authen_fields(req.authentication_context)
    return AuthorizationStart(
        authen_method=method,
        priv_lvl=_priv_lvl(req.privilege_level),
        authen_type=authen_type,
        authen_service=service,
        user=_field("user", req.user),
        port=_field("port", req.port),
        rem_addr=_field("rem_addr", req.remote_address),
        args=_args([encode_arg(a.name, a.value, mandatory=a.mandatory) for a in req.args]),
    )


def accounting_start(req: pb.AccountingRequest, task_id: str, start_time: int) -> AccountingStart:
    """The RFC 8907 accounting REQUEST for an agent AccountingRequest: one record per command.

    The brief for this relay asked for START|STOP in one record: the command is reported once,
    when it is decided, and nothing follows it. RFC 8907 section 7.2 lists flags 0x06
    (START and STOP) as INVALID, and a server may reject it. The closest legal choice is a STOP
    record alone, which is also what "stop-only" command accounting on network devices sends:
    one self-contained record per command, with no START that would wait for a matching STOP.

    AccountingRequest carries neither the privilege level nor how the user was authenticated,
    so priv_lvl is TAC_PLUS_PRIV_LVL_MIN and authen_method and authen_type are NOT_SET.
    Attribute names are from RFC 8907 section 8.3 (task_id, start_time) and 8.2 (service, cmd,
    cmd-arg).
    """
    args = [
        encode_arg("task_id", task_id),
        encode_arg("start_time", str(start_time)),
        encode_arg("service", "shell"),
        encode_arg("cmd", req.command),
    ]
    args += [encode_arg("cmd-arg", arg) for arg in req.command_arguments]
    return AccountingStart(
        flags=TAC_PLUS_ACCT_FLAG_STOP,
        authen_method=TAC_PLUS_AUTHEN_METH_NOT_SET,
        priv_lvl=TAC_PLUS_PRIV_LVL_MIN,
        authen_type=TAC_PLUS_AUTHEN_TYPE_NOT_SET,
        authen_service=TAC_PLUS_AUTHEN_SVC_LOGIN,
        user=_field("user", req.user),
        port=_field("port", req.port),
        rem_addr=_field("rem_addr", req.remote_address),
        args=_args(args),
    )


def pap_start(req: pb.PapAuthenticationRequest) -> PapStart:
    """The RFC 8907 section 5.4.2.2 PAP login START for an agent PapAuthenticationRequest."""
    if len(req.password) > MAX_FIELD_BYTES:
        raise UnsendableRequest(f"the password is over RFC 8907's limit of {MAX_FIELD_BYTES}")
    return PapStart(
        priv_lvl=_priv_lvl(req.privilege_level),
        authen_service=TAC_PLUS_AUTHEN_SVC_LOGIN,
        user=_field("user", req.user),
        port=_field("port", req.port),
        rem_addr=_field("rem_addr", req.remote_address),
        password=bytes(req.password),
    )


def _text(raw: bytes) -> str:
    # protobuf strings must be valid UTF-8; RFC 8907 section 3.7 asks for UTF-8 text but a
    # server may send other bytes, which show as U+FFFD rather than fail the reply.
    return raw.decode("utf-8", "replace")


class RelayBackend:
    """Answers agent RPCs by asking TACACS+ servers, in order, with failover and hold-down.

    Thread-safe: the gRPC server calls it from several threads. Only the hold-down table is
    shared, under a lock that is never held during network I/O.
    """

    def __init__(
        self,
        servers: Sequence[tuple[str, int]],
        secret: bytes,
        connect_timeout_s: float,
        timeout_s: float,
        hold_down_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not servers:
            raise ValueError("the relay needs at least one TACACS+ server")
        if connect_timeout_s <= 0 or timeout_s <= 0 or hold_down_s < 0:
            raise ValueError("timeouts must be positive and the hold-down not negative")
        self.upstreams = tuple(Upstream(host, port) for host, port in servers)
        self._secret = Secret(secret)
        self._timeouts = Timeouts(connect_s=connect_timeout_s, total_s=timeout_s)
        self._hold_down_s = hold_down_s
        self._clock = clock
        self._held_until: dict[Upstream, float] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        servers = ", ".join(str(u) for u in self.upstreams)
        return f"RelayBackend(servers=[{servers}], hold_down_s={self._hold_down_s:g})"

    def authorization(self, req: pb.AuthorizationRequest) -> pb.AuthorizationReply:
        try:
            start = authorization_start(req)
        except UnsendableRequest as error:
            return pb.AuthorizationReply(error=_unsendable("authorization", error))

        def exchange(upstream: Upstream) -> pb.AuthorizationReply:
            result = tacacs_client.authorize(upstream, self._secret, start, self._timeouts)
            if result.status not in AUTHORIZATION_STATUSES:
                raise GarbledReply(upstream, f"unknown authorization status {result.status}")
            args = []
            for raw in result.args:
                arg = decode_arg(raw)
                if arg is None:
                    raise GarbledReply(upstream, "reply arg without '=' or '*'")
                args.append(arg)
            return pb.AuthorizationReply(
                response=pb.AuthorizationResponse(
                    server=str(upstream),
                    status=AUTHORIZATION_STATUSES[result.status],
                    server_message=_text(result.server_msg),
                    args=args,
                    data=_text(result.data),
                )
            )

        answer = self._ask("authorization", exchange)
        if isinstance(answer, pb.ServiceError):
            return pb.AuthorizationReply(error=answer)
        return answer

    def accounting(self, req: pb.AccountingRequest) -> pb.AccountingReply:
        try:
            # RFC 8907 section 8.3: task_id must not repeat among a client's records; 64 random
            # bits make a repeat negligible without state shared across agent restarts.
            start = accounting_start(req, secrets.token_hex(8), int(time.time()))
        except UnsendableRequest as error:
            return pb.AccountingReply(error=_unsendable("accounting", error))

        def exchange(upstream: Upstream) -> pb.AccountingReply:
            result = tacacs_client.account(upstream, self._secret, start, self._timeouts)
            if result.status not in ACCOUNTING_STATUSES:
                raise GarbledReply(upstream, f"unknown accounting status {result.status}")
            return pb.AccountingReply(
                response=pb.AccountingResponse(
                    server=str(upstream),
                    status=ACCOUNTING_STATUSES[result.status],
                    server_message=_text(result.server_msg),
                    data=_text(result.data),
                )
            )

        answer = self._ask("accounting", exchange)
        if isinstance(answer, pb.ServiceError):
            return pb.AccountingReply(error=answer)
        return answer

    def authenticate_pap(self, req: pb.PapAuthenticationRequest) -> pb.PapAuthenticationReply:
        try:
            start = pap_start(req)
        except UnsendableRequest as error:
            return pb.PapAuthenticationReply(error=_unsendable("PAP authentication", error))

        def exchange(upstream: Upstream) -> pb.PapAuthenticationReply:
            result = tacacs_client.authenticate_pap(upstream, self._secret, start, self._timeouts)
            if result.status in PAP_UNCARRIED_STATUSES:
                # A real answer, so no other server is asked; but it is none the wrapper knows.
                name = PAP_UNCARRIED_STATUSES[result.status]
                return pb.PapAuthenticationReply(
                    error=pb.ServiceError(
                        message=f"{upstream} answered the PAP login with {name}, which the "
                        "agent protocol cannot carry",
                        server=str(upstream),
                        retriable=False,
                    )
                )
            if result.status not in PAP_STATUSES:
                raise GarbledReply(upstream, f"unknown authentication status {result.status}")
            return pb.PapAuthenticationReply(
                response=pb.PapAuthenticationResponse(
                    server=str(upstream),
                    status=PAP_STATUSES[result.status],
                    server_message=_text(result.server_msg),
                    data=result.data,
                )
            )

        answer = self._ask("PAP authentication", exchange)
        if isinstance(answer, pb.ServiceError):
            return pb.PapAuthenticationReply(error=answer)
        return answer

    def _ask(self, rpc: str, exchange: Callable[[Upstream], ReplyT]) -> ReplyT | pb.ServiceError:
        """The first answer from the servers, in try order; a ServiceError when none answers.

        Any decodable reply is an answer, FAIL included: the server has decided, and asking the
        next one would let a user shop for a PASS. Only a server that gave no usable reply is
        skipped, and held down so the next requests do not wait for it again.
        """
        failures: list[str] = []
        for upstream in self._try_order():
            # The servicer sets rpc_ended when the wrapper's deadline passes: nobody would hear
            # the answer, so the next server is not asked. Known limit: a try already under way
            # is not interrupted; it ends within --upstream-timeout-ms.
            ended = rpc_ended.get()
            if ended is not None and ended.is_set():
                raise NoReply(f"the RPC ended before {upstream} was tried")
            try:
                answer = exchange(upstream)
            except UpstreamFailure as failure:
                self._hold_down(upstream)
                logger.warning(
                    "%s request: %s; skipping it for %g s", rpc, failure, self._hold_down_s
                )
                failures.append(str(failure))
                continue
            self._release(upstream)
            logger.debug("%s request answered by %s", rpc, upstream)
            return answer

        tried = ", ".join(str(u) for u in self.upstreams)
        return pb.ServiceError(
            message=f"no TACACS+ server answered the {rpc} request (tried {tried}): "
            + "; ".join(failures),
            server=str(self.upstreams[-1]),
            retriable=True,
        )

    def _try_order(self) -> list[Upstream]:
        """Servers not held down, in configured order, then the held-down ones, in order.

        A held-down server is still tried when every server before it in this list failed:
        giving up without trying would turn a server that has recovered into an outage for the
        rest of its hold-down, and the wrapper's fail policy would then answer every exec for no
        reason. The hold-down only changes the order, so it costs time only when all else failed.
        """
        now = self._clock()
        with self._lock:
            held = {u for u, until in self._held_until.items() if until > now}
        return [u for u in self.upstreams if u not in held] + [
            u for u in self.upstreams if u in held
        ]

    def _hold_down(self, upstream: Upstream) -> None:
        with self._lock:
            self._held_until[upstream] = self._clock() + self._hold_down_s

    def _release(self, upstream: Upstream) -> None:
        with self._lock:
            self._held_until.pop(upstream, None)


def _unsendable(rpc: str, error: UnsendableRequest) -> pb.ServiceError:
    # Retrying cannot help: the same request would be refused again.
    logger.warning("%s request not sent: %s", rpc, error)
    return pb.ServiceError(message=f"{rpc} request not sent: {error}", retriable=False)
