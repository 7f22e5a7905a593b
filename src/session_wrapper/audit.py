"""Audit events: one key=value line per event on the ``session_wrapper.audit`` logger.

The wiring of that logger (syslog, stderr by verbosity) is done by session_wrapper.logsetup.
This module only decides what an event says, so that every event has the same shape.
"""

from __future__ import annotations

import logging

from session_wrapper.display import printable
from session_wrapper.logsetup import AUDIT_LOGGER

logger = logging.getLogger(AUDIT_LOGGER)


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
    logger.log(level, format_event(event, fields))
