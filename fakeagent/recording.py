"""What the fake agent was asked: one RecordedRequest per RPC, kept in memory and journaled.

A RecordedRequest is built from the protobuf request as it arrives, before any answer, so a
request that is later hung or dropped is recorded too. Its JSON form is the same in the
``--journal`` file and in the control service's GetRequests. A PAP password is never kept: only
its length is.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from session_wrapper.rpc import tacacsrs_agent_pb2 as pb

_CONTEXT_PREFIX = "AUTHORIZATION_AUTHENTICATION_CONTEXT_"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the agent received it; fields that the rpc lacks are None.

    ``cmd`` and ``cmd_args`` are derived for convenience: for authorization, the value of the
    first ``cmd`` arg and the values of the ``cmd-arg`` args in order; for accounting, the
    command and its arguments. ``args`` holds every authorization arg as (name, value,
    mandatory).
    """

    rpc: str
    time: float
    user: str
    port: str
    remote_address: str
    privilege_level: int | None = None
    authentication_context: str | None = None
    args: tuple[tuple[str, str, bool], ...] = ()
    cmd: str | None = None
    cmd_args: tuple[str, ...] = ()
    command: str | None = None
    command_arguments: tuple[str, ...] | None = None
    password_length: int | None = None

    def to_json(self) -> str:
        """One line of JSON, as written to the journal and returned by GetRequests."""
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RecordedRequest:
        """The inverse of to_json."""
        fields: dict[str, Any] = json.loads(text)
        fields["args"] = tuple((str(n), str(v), bool(m)) for n, v, m in fields["args"])
        fields["cmd_args"] = tuple(fields["cmd_args"])
        if fields["command_arguments"] is not None:
            fields["command_arguments"] = tuple(fields["command_arguments"])
        return cls(**fields)

    def arg(self, name: str) -> str | None:
        """The value of the first authorization arg called ``name``, or None."""
        return next((value for n, value, _ in self.args if n == name), None)


def authorization_record(request: pb.AuthorizationRequest) -> RecordedRequest:
    """The record of an Authorization request."""
    args = tuple((a.name, a.value, a.mandatory) for a in request.args)
    return RecordedRequest(
        rpc="authorization",
        time=time.time(),
        user=request.user,
        port=request.port,
        remote_address=request.remote_address,
        privilege_level=request.privilege_level,
        authentication_context=_context_name(request.authentication_context),
        args=args,
        cmd=next((value for name, value, _ in args if name == "cmd"), None),
        cmd_args=tuple(value for name, value, _ in args if name == "cmd-arg"),
    )


def accounting_record(request: pb.AccountingRequest) -> RecordedRequest:
    """The record of an Accounting request."""
    return RecordedRequest(
        rpc="accounting",
        time=time.time(),
        user=request.user,
        port=request.port,
        remote_address=request.remote_address,
        cmd=request.command,
        cmd_args=tuple(request.command_arguments),
        command=request.command,
        command_arguments=tuple(request.command_arguments),
    )


def pap_record(request: pb.PapAuthenticationRequest) -> RecordedRequest:
    """The record of an AuthenticatePap request: the password's length, never the password."""
    return RecordedRequest(
        rpc="authenticate_pap",
        time=time.time(),
        user=request.user,
        port=request.port,
        remote_address=request.remote_address,
        privilege_level=request.privilege_level,
        password_length=len(request.password),
    )


def _context_name(value: int) -> str:
    # proto3 enums are open: a value this build does not know is kept as its number.
    try:
        name = pb.AuthorizationAuthenticationContext.Name(value)
    except ValueError:
        return str(value)
    return name.removeprefix(_CONTEXT_PREFIX)


class Recorder:
    """Thread-safe list of RecordedRequests, optionally appended to a JSON-lines journal."""

    def __init__(self, journal: Path | str | None = None) -> None:
        self._changed = threading.Condition()
        self._requests: list[RecordedRequest] = []
        self._journal: IO[str] | None = None
        if journal is not None:
            # Line-buffered and flushed per record, so a reader sees each request at once.
            self._journal = open(journal, "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    def record(self, request: RecordedRequest) -> None:
        """Keeps one request and writes its journal line."""
        with self._changed:
            self._requests.append(request)
            if self._journal is not None:
                self._journal.write(request.to_json() + "\n")
                self._journal.flush()
            self._changed.notify_all()

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the requests recorded since start or the last reset, oldest first."""
        with self._changed:
            return list(self._requests)

    def reset(self) -> None:
        """Forgets the recorded requests; the journal keeps its lines."""
        with self._changed:
            self._requests.clear()

    def wait_for(self, count: int, timeout: float) -> list[RecordedRequest]:
        """Waits until at least ``count`` requests are recorded; TimeoutError after timeout."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._requests) >= count, timeout):
                raise TimeoutError(
                    f"{len(self._requests)} requests recorded after {timeout} s, expected {count}"
                )
            return list(self._requests)

    def close(self) -> None:
        """Closes the journal."""
        with self._changed:
            if self._journal is not None:
                self._journal.close()
                self._journal = None
