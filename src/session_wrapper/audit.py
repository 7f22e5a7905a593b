"""Audit events: one key=value line per event on the ``session_wrapper.audit`` logger.

This module decides what an event says, so that every event has the same shape, and turns the
stream of agent verdicts into outage and recovery events. Where the lines go (syslog, stderr by
verbosity) is decided by session_wrapper.logsetup and session_wrapper.syslog_audit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from session_wrapper.decision import (
    AgentUnavailable,
    AuthorizationQuery,
    AuthorizationStatus,
    Verdict,
)
from session_wrapper.display import printable, printable_bytes
from session_wrapper.logsetup import AUDIT_LOGGER

logger = logging.getLogger(AUDIT_LOGGER)

# The LogRecord attributes that carry an event's name and fields to formatters that add to them
# (the syslog formatter adds the session's user to every line).
EVENT_ATTRIBUTE = "audit_event"
FIELDS_ATTRIBUTE = "audit_fields"

# An argv shown in an audit line is cut here: syslog daemons truncate or drop long messages
# (rsyslog's default limit is 8 KiB), and one line must stay one line. -vvv shows it in full.
MAX_ARGV_CHARS = 2048


def _value(value: object) -> str:
    text = printable(str(value))
    if text == "" or any(c in text for c in ' "='):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def format_event(event: str, fields: dict[str, object]) -> str:
    """``event=NAME key=value ...``; values with spaces, quotes or ``=`` are quoted."""
    parts = [f"event={event}"]
    parts += [f"{key}={_value(value)}" for key, value in fields.items()]
    return " ".join(parts)


def record(level: int, event: str, **fields: object) -> None:
    logger.log(
        level,
        format_event(event, fields),
        extra={EVENT_ATTRIBUTE: event, FIELDS_ATTRIBUTE: fields},
    )


def argv_field(argv: tuple[bytes, ...], limit: int = MAX_ARGV_CHARS) -> str:
    """argv as the agent sees it, words joined by spaces, cut to ``limit`` characters."""
    text = " ".join(printable_bytes(arg) for arg in argv)
    if len(text) <= limit:
        return text
    return text[: limit - 3] + "..."


def is_unavailable(verdict: Verdict) -> bool:
    """Whether a verdict is no usable answer (the decision core sends it to the fail policy)."""
    return (
        isinstance(verdict, AgentUnavailable) or verdict.status is AuthorizationStatus.UNSPECIFIED
    )


class AgentHealth:
    """Logs an outage at the first unavailable verdict after a good one, and a recovery at the
    first good verdict after an outage; nothing for the verdicts in between.

    The agent is taken to be up until the first verdict says otherwise.
    """

    def __init__(self, endpoint: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.endpoint = endpoint
        self._clock = clock
        self._down_since: float | None = None
        # Held while the event is logged, so that an outage and its recovery, seen by two
        # workers at once, are never logged in the wrong order.
        self._lock = threading.Lock()

    def observe(self, verdict: Verdict) -> None:
        with self._lock:
            if is_unavailable(verdict):
                if self._down_since is None:
                    self._down_since = self._clock()
                    self._record_outage(verdict)
            elif self._down_since is not None:
                down_s = self._clock() - self._down_since
                self._down_since = None
                record(
                    logging.WARNING,
                    "agent_recovery",
                    endpoint=self.endpoint,
                    server=getattr(verdict, "server", ""),
                    outage_s=f"{down_s:.3f}",
                )

    def observing(
        self, authorize: Callable[[AuthorizationQuery], Verdict]
    ) -> Callable[[AuthorizationQuery], Verdict]:
        """``authorize``, with every verdict it returns observed first."""

        def observed(query: AuthorizationQuery) -> Verdict:
            verdict = authorize(query)
            self.observe(verdict)
            return verdict

        return observed

    def _record_outage(self, verdict: Verdict) -> None:
        if isinstance(verdict, AgentUnavailable):
            outage, detail, server = verdict.outage.value, verdict.detail, verdict.server
        else:
            outage, detail, server = "malformed reply", "status unspecified", verdict.server
        record(
            logging.WARNING,
            "agent_outage",
            endpoint=self.endpoint,
            outage=outage,
            detail=detail,
            server=server,
        )
