"""Closing a client's connection to the fake agent for real, to fake a dropped agent.

gRPC's Python server does not expose its sockets, so the accepted connection is found among this
process's file descriptors (/proc/self/fd) by its local and peer address, and shut down through a
duplicate descriptor. shutdown(2) acts on the shared socket, so the client sees the connection
close (gRPC: UNAVAILABLE "Socket closed") while gRPC's own descriptor stays valid and is
cleaned up by gRPC; no descriptor of gRPC's is ever closed here.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ListenAddress:
    """Where the agent listens: a Unix socket path, or a TCP host and port."""

    path: str | None = None
    host: str = ""
    port: int = 0


def peer_of(grpc_peer: str) -> tuple[str, int] | None:
    """The (host, port) in a gRPC peer string like ``ipv4:127.0.0.1:5000``; None for Unix."""
    kind, _, rest = grpc_peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return None
    host, _, port = rest.rpartition(":")
    return _plain_host(host.strip("[]")), int(port)


def shut_down_connections(listen: ListenAddress, peer: tuple[str, int] | None) -> int:
    """Shuts down the accepted connections of ``listen`` from ``peer``; returns how many.

    Known limit: on a Unix socket gRPC names no peer, so every client connection open on the
    socket at that moment is shut down, not only the one that carries the RPC.
    """
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            duplicate = os.dup(int(name))
        except OSError:
            continue  # closed since the listing: an expected race with gRPC's threads
        try:
            sock = socket.socket(fileno=duplicate)
        except OSError:
            os.close(duplicate)  # not a socket
            continue
        with sock:
            if _is_connection(sock, listen, peer):
                _shut_down(sock)
                count += 1
    return count


def _is_connection(
    sock: socket.socket, listen: ListenAddress, peer: tuple[str, int] | None
) -> bool:
    try:
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            return False  # the listening socket itself
        local = sock.getsockname()
        if listen.path is not None:
            return bool(sock.family == socket.AF_UNIX and local == listen.path)
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or peer is None:
            return False
        remote = sock.getpeername()
    except OSError:
        return False
    return bool(local[1] == listen.port and (_plain_host(remote[0]), remote[1]) == peer)


def _plain_host(host: str) -> str:
    """The address with an IPv4-mapped IPv6 address shown as IPv4.

    gRPC binds 127.0.0.1 through a dual-stack IPv6 socket, so the accepted socket names its
    peer ``::ffff:127.0.0.1`` while gRPC's peer string says ``ipv4:127.0.0.1``.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _shut_down(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError as exc:
        logger.debug("shutdown of a connection failed: %s", exc)
