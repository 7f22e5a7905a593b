"""Stderr logging for the wrapper, sized by ``-v``; not the syslog audit trail, which is separate.

``-v`` decides only what reaches stderr. Tracebacks are kept off stderr unless ``-vvv`` is given,
so a failure shows the user one line by default.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

logger = logging.getLogger(__name__)

AUDIT_LOGGER = "session_wrapper.audit"

# Below DEBUG: per-notification detail too noisy for -vv.
TRACE = 5
logging.addLevelName(TRACE, "TRACE")

_LEVEL_BY_VERBOSITY = (logging.WARNING, logging.INFO, logging.DEBUG)
_FORMAT = "session-wrapper[%(process)d]: %(levelname)s %(message)s"


def stderr_level(verbosity: int) -> int:
    """The lowest level stderr shows: 0 WARNING, 1 INFO, 2 DEBUG, 3 or more TRACE."""
    if verbosity < 0:
        raise ValueError(f"verbosity must not be negative, got {verbosity}")
    if verbosity < len(_LEVEL_BY_VERBOSITY):
        return _LEVEL_BY_VERBOSITY[verbosity]
    return TRACE


class _StderrFormatter(logging.Formatter):
    """One line per record; the traceback and stack only when tracebacks are allowed."""

    def __init__(self, *, tracebacks: bool) -> None:
        super().__init__(_FORMAT)
        self._tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        if self._tracebacks:
            return super().format(record)
        # Format a copy: other handlers (syslog) may still want the exception of this record.
        plain = logging.makeLogRecord(record.__dict__)
        plain.exc_info = None
        plain.exc_text = None
        plain.stack_info = None
        return super().format(plain)


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Marks the handler this module installed, so a second call replaces it."""


def configure_stderr_logging(verbosity: int) -> None:
    """Sends records at the verbosity's level and above to stderr, one line each.

    The root logger's level is lowered to the stderr level when needed but never raised, so a
    handler installed elsewhere (the syslog audit) that wants lower levels keeps receiving them.
    Calling this again replaces the stderr handler it installed before.
    """
    level = stderr_level(verbosity)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
        old.close()

    handler = _StderrHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(_StderrFormatter(tracebacks=level <= TRACE))
    if verbosity == 0:
        # Without -v the user sees one plain line per deny or refusal, written by the
        # supervisor; the audit record of the same event would only repeat it.
        handler.addFilter(lambda record: not record.name.startswith(AUDIT_LOGGER))
    root.addHandler(handler)
    # NOTSET on the root logger already lets every level through.
    if root.level > level:
        root.setLevel(level)
    logger.log(TRACE, "stderr logging at level %s", logging.getLevelName(level))
