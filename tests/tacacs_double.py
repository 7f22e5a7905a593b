"""A TACACS+ (RFC 8907) server test double: one listener on 127.0.0.1, answers from a script.

It has its own small codec (header, MD5 pseudo-pad, authentication START, authorization and
accounting REQUEST bodies and their REPLYs) so that tests of the relay do not check the tacacs_plus
library against itself. It records what it received, decoded, and misbehaves on request: delay,
hang, close without answering, answer garbage, or use another shared secret. It is not a server:
no policy, no single-connection mode, one request per connection.
"""

from __future__ import annotations

import hashlib
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

HEADER = struct.Struct("!BBBBII")  # version, type, seq_no, flags, session_id, length

AUTHEN = 0x01
AUTHOR = 0x02
ACCT = 0x03

PASS_ADD = 0x01
PASS_REPL = 0x02
FAIL = 0x10
ERROR = 0x11
FOLLOW = 0x21

ACCT_SUCCESS = 0x01
ACCT_ERROR = 0x02

AUTHEN_PASS = 0x01
AUTHEN_FAIL = 0x02
AUTHEN_GETPASS = 0x05


def pseudo_pad(session_id: int, key: bytes, version: int, seq_no: int, size: int) -> bytes:
    """RFC 8907 section 4.5: MD5(session_id, key, version, seq_no[, previous hash]) chained."""
    seed = struct.pack("!I", session_id) + key + bytes([version, seq_no])
    pad = b""
    block = b""
    while len(pad) < size:
        block = hashlib.md5(seed + block, usedforsecurity=False).digest()
        pad += block
    return pad[:size]


def obfuscate(header: tuple[int, int, int, int, int, int], key: bytes, body: bytes) -> bytes:
    """XOR with the pseudo-pad; the same call deobfuscates."""
    version, _, seq_no, _, session_id, _ = header
    pad = pseudo_pad(session_id, key, version, seq_no, len(body))
    return bytes(a ^ b for a, b in zip(body, pad, strict=True))


@dataclass(frozen=True)
class Received:
    """One request as the double decoded it. ``decoded`` is False when its lengths did not add
    up (as with a wrong secret); the other fields are then empty."""

    packet_type: int
    version: int
    decoded: bool
    user: str = ""
    port: str = ""
    rem_addr: str = ""
    priv_lvl: int = -1
    authen_method: int = -1
    authen_type: int = -1
    authen_service: int = -1
    args: tuple[str, ...] = ()
    acct_flags: int | None = None
    authen_action: int | None = None
    authen_data: bytes = b""


@dataclass(frozen=True)
class Reply:
    """Answer with this status (of the request's own kind), server_msg, data and args."""

    status: int
    server_msg: str = ""
    data: str = ""
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Delay:
    """Wait, then give the reply."""

    seconds: float
    then: Reply


@dataclass(frozen=True)
class Hang:
    """Read the request and never answer (until the double stops)."""


@dataclass(frozen=True)
class Close:
    """Read the request and close the connection without answering."""


@dataclass(frozen=True)
class Garbage:
    """Answer with bytes that are not TACACS+ at all."""

    payload: bytes = b"HTTP/1.0 400 Bad Request\r\n\r\n"


@dataclass(frozen=True)
class RawBody:
    """Answer with this reply body, correctly obfuscated, whatever it says."""

    body: bytes


Action = Reply | Delay | Hang | Close | Garbage | RawBody


def _take(body: bytes, offset: int, size: int) -> tuple[bytes, int]:
    return body[offset : offset + size], offset + size


def decode_request(packet_type: int, version: int, body: bytes) -> Received:
    """Decodes an authentication START, authorization or accounting REQUEST body."""
    try:
        if packet_type == AUTHEN:
            return _decode_authen_start(version, body)
        return _decode_author_or_acct(packet_type, version, body)
    except (struct.error, IndexError, UnicodeDecodeError, ValueError):
        return Received(packet_type, version, decoded=False)


def _decode_authen_start(version: int, body: bytes) -> Received:
    # RFC 8907 section 5.1: action, priv_lvl, authen_type, authen_service, then four lengths.
    action, priv_lvl, authen_type, service, user_len, port_len, addr_len, data_len = (
        struct.unpack_from("!8B", body)
    )
    if 8 + user_len + port_len + addr_len + data_len != len(body):
        raise ValueError("lengths do not add up")
    offset = 8
    user, offset = _take(body, offset, user_len)
    port, offset = _take(body, offset, port_len)
    rem_addr, offset = _take(body, offset, addr_len)
    data, offset = _take(body, offset, data_len)
    return Received(
        AUTHEN,
        version,
        decoded=True,
        user=user.decode(),
        port=port.decode(),
        rem_addr=rem_addr.decode(),
        priv_lvl=priv_lvl,
        authen_type=authen_type,
        authen_service=service,
        authen_action=action,
        authen_data=data,
    )


def _decode_author_or_acct(packet_type: int, version: int, body: bytes) -> Received:
    # RFC 8907 sections 6.1 and 7.1: the accounting body is the authorization body with a flags
    # octet in front.
    flags = None
    offset = 0
    if packet_type == ACCT:
        flags = body[0]
        offset = 1
    method, priv_lvl, authen_type, service, user_len, port_len, addr_len, arg_cnt = (
        struct.unpack_from("!8B", body, offset)
    )
    offset += 8
    arg_lens = struct.unpack_from(f"!{arg_cnt}B", body, offset)
    offset += arg_cnt
    if offset + user_len + port_len + addr_len + sum(arg_lens) != len(body):
        raise ValueError("lengths do not add up")
    user, offset = _take(body, offset, user_len)
    port, offset = _take(body, offset, port_len)
    rem_addr, offset = _take(body, offset, addr_len)
    args = []
    for arg_len in arg_lens:
        arg, offset = _take(body, offset, arg_len)
        args.append(arg.decode())
    return Received(
        packet_type,
        version,
        decoded=True,
        user=user.decode(),
        port=port.decode(),
        rem_addr=rem_addr.decode(),
        priv_lvl=priv_lvl,
        authen_method=method,
        authen_type=authen_type,
        authen_service=service,
        args=tuple(args),
        acct_flags=flags,
    )


def encode_reply(packet_type: int, reply: Reply) -> bytes:
    """The REPLY body for a request of this type (RFC 8907 sections 5.2, 6.2, 7.2)."""
    msg = reply.server_msg.encode()
    data = reply.data.encode()
    if packet_type == AUTHEN:
        return struct.pack("!BBHH", reply.status, 0, len(msg), len(data)) + msg + data
    if packet_type == ACCT:
        return struct.pack("!HHB", len(msg), len(data), reply.status) + msg + data
    args = [arg.encode() for arg in reply.args]
    head = struct.pack("!BBHH", reply.status, len(args), len(msg), len(data))
    return head + bytes(len(arg) for arg in args) + msg + data + b"".join(args)


def _recv_exact(conn: socket.socket, size: int) -> bytes | None:
    received = b""
    while len(received) < size:
        chunk = conn.recv(size - len(received))
        if not chunk:
            return None
        received += chunk
    return received


@dataclass
class TacacsDouble:
    """Start with ``with TacacsDouble(key) as server:``; ``server.upstream`` is (host, port).

    Each connection takes the next scripted action, or ``default`` when the script is empty.
    When ``respond`` is given it chooses instead, from the decoded request: for sessions whose
    requests interleave (accounting is sent in the background), order is no guide.
    """

    key: bytes
    script: Iterable[Action] = ()
    default: Action = field(default_factory=lambda: Reply(PASS_ADD))
    received: list[Received] = field(default_factory=list)
    connections: int = 0
    respond: Callable[[Received], Action] | None = None

    def __post_init__(self) -> None:
        self._actions: deque[Action] = deque(self.script)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._sockname = self._listener.getsockname()[:2]
        self._threads: list[threading.Thread] = []

    @property
    def upstream(self) -> tuple[str, int]:
        host, port = self._sockname
        return str(host), int(port)

    @property
    def address(self) -> str:
        host, port = self.upstream
        return f"{host}:{port}"

    def push(self, *actions: Action) -> None:
        with self._lock:
            self._actions.extend(actions)

    def __enter__(self) -> TacacsDouble:
        thread = threading.Thread(target=self._accept_loop, name="tacacs-double", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in list(self._threads):
            thread.join(timeout=5)
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                action = self._actions.popleft() if self._actions else self.default
            thread = threading.Thread(target=self._serve, args=(conn, action), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket, action: Action) -> None:
        with conn:
            conn.settimeout(5)
            raw_header = _recv_exact(conn, HEADER.size)
            if raw_header is None:
                return
            header = HEADER.unpack(raw_header)
            version, packet_type, seq_no, _, session_id, length = header
            body = _recv_exact(conn, length)
            if body is None:
                return
            request = decode_request(packet_type, version, obfuscate(header, self.key, body))
            with self._lock:
                self.received.append(request)
            if self.respond is not None:
                action = self.respond(request)

            if isinstance(action, Delay):
                if self._stop.wait(action.seconds):
                    return
                action = action.then
            if isinstance(action, Hang):
                self._stop.wait()
                return
            if isinstance(action, Close):
                return
            if isinstance(action, Garbage):
                conn.sendall(action.payload)
                return

            if isinstance(action, RawBody):
                reply_body = action.body
            else:
                reply_body = encode_reply(packet_type, action)
            reply_header = (version, packet_type, seq_no + 1, 0, session_id, len(reply_body))
            conn.sendall(
                HEADER.pack(*reply_header) + obfuscate(reply_header, self.key, reply_body)
            )
