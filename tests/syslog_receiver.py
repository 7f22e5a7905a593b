"""A datagram socket standing in for /dev/log, and the parsing of what the wrapper sends it."""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

_LINE = re.compile(r"<(\d+)>session-wrapper\[(\d+)\]: (event=.*)")
_FIELD = re.compile(r'([a-z_]+)=("(?:[^"\\]|\\.)*"|[^ ]*)(?: |$)')


@dataclass(frozen=True)
class SyslogLine:
    """One datagram as a syslog daemon gets it."""

    facility: int
    severity: int
    pid: int
    text: str
    fields: dict[str, str]

    @property
    def event(self) -> str:
        return self.fields["event"]


def parse_fields(text: str) -> dict[str, str]:
    """key=value fields; a quoted value has its backslash escapes undone."""
    fields: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _FIELD.match(text, position)
        assert match, f"not key=value at offset {position}: {text!r}"
        value = match.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        fields[match.group(1)] = value
        position = match.end()
    return fields


def parse_line(datagram: bytes) -> SyslogLine:
    text = datagram.decode().removesuffix("\0")
    match = _LINE.fullmatch(text)
    assert match, f"not a session-wrapper syslog line: {text!r}"
    priority = int(match.group(1))
    body = match.group(3)
    return SyslogLine(priority >> 3, priority & 7, int(match.group(2)), body, parse_fields(body))


class SyslogReceiver:
    """A datagram socket standing in for /dev/log, read by a thread so that the wrapper's sends
    never wait on a full queue (net.unix.max_dgram_qlen is small)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(path))
        self._socket.settimeout(0.05)
        self._datagrams: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                self._datagrams.append(self._socket.recv(1 << 20))
            except TimeoutError:
                continue

    def lines(self) -> list[SyslogLine]:
        """Every line received so far; call it after the wrapper has exited."""
        self._stop.set()
        self._thread.join()
        self._socket.setblocking(False)
        while True:
            try:
                self._datagrams.append(self._socket.recv(1 << 20))
            except BlockingIOError:
                break
        self._stop.clear()
        self._socket.settimeout(0.05)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return [parse_line(d) for d in self._datagrams]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close()


def events(lines: list[SyslogLine], name: str) -> list[SyslogLine]:
    return [line for line in lines if line.event == name]
