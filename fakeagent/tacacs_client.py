"""One TACACS+ (RFC 8907) request and its reply with one server, over one TCP connection.

Packet bodies, headers and the MD5 pseudo-pad come from the tacacs_plus library; this module adds
what the library's TACACSClient lacks (see _exchange) and turns every way a server can fail into
an UpstreamFailure. Choosing a server, failover and the agent's protobuf messages live in
fakeagent/relay.py.
"""

from __future__ import annotations

import logging
import secrets
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import TypeVar

from tacacs_plus.accounting import TACACSAccountingReply, TACACSAccountingStart
from tacacs_plus.authentication import TACACSAuthenticationReply, TACACSAuthenticationStart
from tacacs_plus.authorization import TACACSAuthorizationReply, TACACSAuthorizationStart
from tacacs_plus.flags import (
    TAC_PLUS_ACCT,
    TAC_PLUS_AUTHEN,
    TAC_PLUS_AUTHEN_TYPE_PAP,
    TAC_PLUS_AUTHOR,
    TAC_PLUS_MAJOR_VER,
    TAC_PLUS_MINOR_VER,
    TAC_PLUS_MINOR_VER_ONE,
)
from tacacs_plus.packet import TACACSHeader, TACACSPacket

logger = logging.getLogger(__name__)

ReplyT = TypeVar("ReplyT")

HEADER_BYTES = 12
# RFC 8907 section 4.1 flags; the library defines neither.
TAC_PLUS_UNENCRYPTED_FLAG = 0x01
TAC_PLUS_SINGLE_CONNECT_FLAG = 0x04

# RFC 8907 section 4.1 lets an implementation bound the packet sizes it accepts. The library's
# pseudo-pad loop is quadratic in the body length (0.23 s for 64 KiB on the development machine),
# so a larger reply is refused before it is deobfuscated. Real replies are a few hundred bytes.
MAX_REPLY_BODY_BYTES = 65536


class Secret:
    """The shared secret. Its repr and str never show the key, so logs and tracebacks cannot."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("the TACACS+ shared secret is empty")
        self._key = bytes(key)

    def __repr__(self) -> str:
        return "Secret(<redacted>)"

    __str__ = __repr__

    def library_key(self) -> str:
        # tacacs_plus.packet.crypt passes the key through six.b(), which on Python 3 is
        # str.encode("latin-1"): a bytes key would raise, and a str holding non-Latin-1 text would
        # raise or change. Latin-1 maps each byte to one code point, so any key round-trips.
        return self._key.decode("latin-1")


@dataclass(frozen=True)
class Upstream:
    """A TACACS+ server: where to connect, and how it is named in logs and errors."""

    host: str
    port: int

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Timeouts:
    """connect_s bounds the TCP connect; total_s bounds connect, send and the whole reply."""

    connect_s: float
    total_s: float


class UpstreamFailure(Exception):
    """A server gave no usable answer. The message names the server and never the secret."""

    def __init__(self, upstream: Upstream, message: str) -> None:
        super().__init__(message)
        self.upstream = upstream


class GarbledReply(UpstreamFailure):
    """A reply that does not decode: a wrong shared secret looks exactly like this."""

    def __init__(self, upstream: Upstream, detail: str) -> None:
        super().__init__(upstream, f"bad secret or garbled reply from {upstream} ({detail})")


@dataclass(frozen=True)
class AuthorizationStart:
    """The fields of an RFC 8907 section 6.1 authorization REQUEST body, already as bytes."""

    authen_method: int
    priv_lvl: int
    authen_type: int
    authen_service: int
    user: bytes
    port: bytes
    rem_addr: bytes
    args: tuple[bytes, ...]


@dataclass(frozen=True)
class AccountingStart:
    """The fields of an RFC 8907 section 7.1 accounting REQUEST body, already as bytes."""

    flags: int
    authen_method: int
    priv_lvl: int
    authen_type: int
    authen_service: int
    user: bytes
    port: bytes
    rem_addr: bytes
    args: tuple[bytes, ...]


@dataclass(frozen=True)
class PapStart:
    """An RFC 8907 section 5.4.2.2 PAP login START. The password stays out of repr()."""

    priv_lvl: int
    authen_service: int
    user: bytes
    port: bytes
    rem_addr: bytes
    password: bytes = field(repr=False)


@dataclass(frozen=True)
class AuthorizationResult:
    status: int
    server_msg: bytes
    data: bytes
    args: tuple[bytes, ...]


@dataclass(frozen=True)
class AccountingResult:
    status: int
    server_msg: bytes
    data: bytes


@dataclass(frozen=True)
class AuthenticationResult:
    status: int
    flags: int
    server_msg: bytes
    data: bytes


def _text(value: bytes) -> str:
    # The library's request classes pass user, port and rem_addr through six.b(), that is
    # str.encode("latin-1"). Handing it the Latin-1 reading of our bytes makes it write exactly
    # those bytes (UTF-8 names included) instead of raising on them.
    return value.decode("latin-1")


def authorize(
    upstream: Upstream, secret: Secret, start: AuthorizationStart, timeouts: Timeouts
) -> AuthorizationResult:
    """Sends one authorization REQUEST and returns the REPLY exactly as the server sent it.

    TACACSClient.authorize is not used: it forces authen_service LOGIN and authen_method
    TACACSPLUS, and turns a PASS reply into FAIL when a "priv-lvl=" reply arg is below the
    requested level. The relay must hand the server's status and args back unchanged.
    """
    request = TACACSAuthorizationStart(
        _text(start.user),
        start.authen_method,
        start.priv_lvl,
        start.authen_type,
        list(start.args),
        rem_addr=_text(start.rem_addr),
        port=_text(start.port),
    )
    request.service = start.authen_service
    body = _exchange(upstream, secret, timeouts, TAC_PLUS_AUTHOR, request.packed)

    _, arg_cnt, msg_len, data_len = _fixed_fields(upstream, body, "!BBHH")
    arg_lens = _fixed_fields(upstream, body[6:], "B" * arg_cnt)
    _check_length(upstream, body, 6 + arg_cnt + msg_len + data_len + sum(arg_lens))
    reply = _unpack(upstream, TACACSAuthorizationReply, body)
    return AuthorizationResult(
        status=reply.status,
        server_msg=bytes(reply.server_msg),
        data=bytes(reply.data),
        args=tuple(bytes(arg) for arg in reply.arguments),
    )


def account(
    upstream: Upstream, secret: Secret, start: AccountingStart, timeouts: Timeouts
) -> AccountingResult:
    """Sends one accounting REQUEST and returns the REPLY.

    TACACSClient.account is not used: it forces authen_service LOGIN and authen_method
    TACACSPLUS even when the client does not know how the user was authenticated.
    """
    request = TACACSAccountingStart(
        _text(start.user),
        start.flags,
        start.authen_method,
        start.priv_lvl,
        start.authen_type,
        list(start.args),
        rem_addr=_text(start.rem_addr),
        port=_text(start.port),
    )
    request.service = start.authen_service
    body = _exchange(upstream, secret, timeouts, TAC_PLUS_ACCT, request.packed)

    msg_len, data_len, _ = _fixed_fields(upstream, body, "!HHB")
    _check_length(upstream, body, 5 + msg_len + data_len)
    reply = _unpack(upstream, TACACSAccountingReply, body)
    return AccountingResult(
        status=reply.status, server_msg=bytes(reply.server_msg), data=bytes(reply.data)
    )


def authenticate_pap(
    upstream: Upstream, secret: Secret, start: PapStart, timeouts: Timeouts
) -> AuthenticationResult:
    """Sends one PAP login START and returns the first REPLY.

    TACACSClient.authenticate is not used: its send() logs the START body at DEBUG level, and
    that body's text includes the PAP password.
    """
    request = TACACSAuthenticationStart(
        _text(start.user),
        TAC_PLUS_AUTHEN_TYPE_PAP,
        priv_lvl=start.priv_lvl,
        data=start.password,
        rem_addr=_text(start.rem_addr),
        port=_text(start.port),
    )
    request.service = start.authen_service
    # RFC 8907 section 5.4.2.2: PAP is sent with minor version 1.
    body = _exchange(
        upstream, secret, timeouts, TAC_PLUS_AUTHEN, request.packed, minor=TAC_PLUS_MINOR_VER_ONE
    )

    _, _, msg_len, data_len = _fixed_fields(upstream, body, "!BBHH")
    _check_length(upstream, body, 6 + msg_len + data_len)
    reply = _unpack(upstream, TACACSAuthenticationReply, body)
    return AuthenticationResult(
        status=reply.status,
        flags=reply.flags,
        server_msg=bytes(reply.server_msg),
        data=bytes(reply.data),
    )


def _exchange(
    upstream: Upstream,
    secret: Secret,
    timeouts: Timeouts,
    packet_type: int,
    body: bytes,
    *,
    minor: int = TAC_PLUS_MINOR_VER,
) -> bytes:
    """Sends one obfuscated packet with seq_no 1 and returns the deobfuscated reply body.

    TACACSClient.send is not used, for these reasons:
    - it has one timeout for connect and for each read, and no deadline for the whole reply, so
      a server that trickles bytes can hold a request forever;
    - it reads with bare recv(): a short read of the 12-byte header raises struct.error, and a
      peer that closes mid-body makes its read loop spin forever on empty reads;
    - it takes session_id from the random module; RFC 8907 section 4.1 wants it
      cryptographically random;
    - it checks neither seq_no nor the TAC_PLUS_UNENCRYPTED_FLAG of the reply, nor its length.
    """
    session_id = secrets.randbits(32) or 1
    version = TAC_PLUS_MAJOR_VER * 0x10 + minor
    header = TACACSHeader(version, packet_type, session_id, len(body), seq_no=1, flags=0)
    packet = bytes(TACACSPacket(header, body, secret.library_key()))
    started = time.monotonic()
    deadline = started + timeouts.total_s

    connect_s = min(timeouts.connect_s, timeouts.total_s)
    # Known limit: create_connection resolves a host name with getaddrinfo(3), which no socket
    # timeout bounds. The README tells operators to give IP addresses.
    try:
        sock = socket.create_connection((upstream.host, upstream.port), timeout=connect_s)
    except TimeoutError:
        raise UpstreamFailure(
            upstream, f"cannot connect to {upstream}: no answer within {connect_s:g} s"
        ) from None
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UpstreamFailure(upstream, f"cannot connect to {upstream}: {reason}") from None

    with sock:
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.sendall(packet)
            reply_header = TACACSHeader.unpacked(
                _recv_exact(sock, upstream, HEADER_BYTES, deadline)
            )
            _check_header(upstream, header, reply_header)
            reply_body = _recv_exact(sock, upstream, reply_header.length, deadline)
        except TimeoutError:
            raise UpstreamFailure(
                upstream, f"no reply from {upstream} within {timeouts.total_s:g} s"
            ) from None
        except OSError as error:
            reason = error.strerror or type(error).__name__
            raise UpstreamFailure(upstream, f"connection to {upstream} failed: {reason}") from None

    logger.debug(
        "%s answered type %d in %.1f ms", upstream, packet_type, (time.monotonic() - started) * 1e3
    )
    return bytes(TACACSPacket(reply_header, reply_body, secret.library_key()).body)


def _recv_exact(sock: socket.socket, upstream: Upstream, size: int, deadline: float) -> bytes:
    received = bytearray()
    while len(received) < size:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        chunk = sock.recv(size - len(received))
        if not chunk:
            # Servers typically close without answering when they cannot deobfuscate the
            # request, so a wrong shared secret is named as a likely cause.
            raise UpstreamFailure(
                upstream,
                f"{upstream} closed the connection without a complete reply "
                "(wrong shared secret?)",
            )
        received += chunk
    return bytes(received)


def _check_header(upstream: Upstream, sent: TACACSHeader, reply: TACACSHeader) -> None:
    # RFC 8907 section 4.1: the reply carries our session_id and type, the next seq_no, and the
    # same major version. An unobfuscated reply is refused: we never sent one.
    if reply.version_max != sent.version_max:
        raise GarbledReply(upstream, f"not a TACACS+ header (version byte {reply.version:#04x})")
    if reply.type != sent.type or reply.session_id != sent.session_id:
        raise GarbledReply(upstream, "reply header names another session or packet type")
    if reply.seq_no != sent.seq_no + 1:
        raise GarbledReply(upstream, f"reply seq_no {reply.seq_no}, expected {sent.seq_no + 1}")
    if reply.flags & TAC_PLUS_UNENCRYPTED_FLAG:
        raise GarbledReply(upstream, "unobfuscated reply")
    if reply.length > MAX_REPLY_BODY_BYTES:
        raise GarbledReply(upstream, f"reply body of {reply.length} bytes")


def _fixed_fields(upstream: Upstream, body: bytes, layout: str) -> tuple[int, ...]:
    try:
        return struct.unpack_from(layout, body)
    except struct.error:
        raise GarbledReply(upstream, "reply body shorter than its fixed fields") from None


def _check_length(upstream: Upstream, body: bytes, declared: int) -> None:
    # RFC 8907 section 4.5: after deobfuscation the field lengths must add up to the header's
    # length, or the packet is discarded. With a wrong key they almost never do; the library's
    # decoders do not check it and would return truncated fields instead.
    if declared != len(body):
        raise GarbledReply(
            upstream, f"field lengths add up to {declared} bytes, body has {len(body)}"
        )


def _unpack(upstream: Upstream, reply_class: type[ReplyT], body: bytes) -> ReplyT:
    # The library's decoders raise struct.error (and ValueError) on short input; with the
    # length check above they should not, but a library surprise must not become a traceback.
    try:
        return reply_class.unpacked(body)  # type: ignore[attr-defined,no-any-return]
    except (struct.error, ValueError) as error:
        raise GarbledReply(upstream, f"undecodable reply body: {error}") from None
