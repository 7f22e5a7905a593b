"""The audit trail in syslog: every audit event, whatever ``-v`` says, on facility AUTHPRIV.

Lines go to the local syslog socket (``/dev/log``) through logging.handlers.SysLogHandler, as
``session-wrapper[PID]: event=NAME user=USER key=value ...``, so every line carries the session's
pid (the wrapper's) and user. Besides audit events, warnings and errors of the other modules go
there too, as ``event=log`` lines. What reaches stderr is logsetup's business, not this module's.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket

from session_wrapper.logsetup import AUDIT_LOGGER, TRACE

logger = logging.getLogger(__name__)

# A syslog daemon that stops reading fills the socket's queue, and send(2) would then block the
# worker that is logging, and with it the exec it is answering. Past this, the line is dropped.
SEND_TIMEOUT_S = 0.25
# Marks the handler's own "cannot write to syslog" warning, which must not go to syslog again.
_LOCAL_ONLY = "syslog_audit_local_only"


class AuditSyslogFormatter(logging.Formatter):
    """key=value lines: audit events with the session's user added, other records as
    ``event=log`` with their level, logger and message."""

    def __init__(self, user: str) -> None:
        super().__init__()
        self.user = user

    def format(self, record: logging.LogRecord) -> str:
        # Imported here: audit imports logsetup, as this module does, and neither needs the
        # other at import time.
        from session_wrapper.audit import EVENT_ATTRIBUTE, FIELDS_ATTRIBUTE, format_event

        event = getattr(record, EVENT_ATTRIBUTE, None)
        fields = getattr(record, FIELDS_ATTRIBUTE, None)
        if isinstance(event, str) and isinstance(fields, dict):
            return format_event(event, {"user": self.user, **fields})
        return format_event(
            "log",
            {
                "user": self.user,
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            },
        )


class AuditSyslogHandler(logging.handlers.SysLogHandler):
    """SysLogHandler with a bounded send and one warning on stderr when lines are lost."""

    def __init__(self, address: str, user: str) -> None:
        super().__init__(address, facility=logging.handlers.SysLogHandler.LOG_AUTHPRIV)
        self.ident = f"session-wrapper[{os.getpid()}]: "
        self.setFormatter(AuditSyslogFormatter(user))
        self.setLevel(logging.DEBUG)
        self.addFilter(_wanted_in_syslog)
        self.dropped = 0

    def connected(self) -> bool:
        """Whether the socket reached a listener (SysLogHandler ignores a failed connect)."""
        sock = self._socket()
        return sock is not None and sock.fileno() != -1

    # SysLogHandler (re)connects through this on start-up and after a failed send; typeshed
    # leaves the private method and the socket attribute out.
    def _connect_unixsocket(self, address: str) -> None:
        super()._connect_unixsocket(address)  # type: ignore[misc]
        sock = self._socket()
        if sock is not None:
            sock.settimeout(SEND_TIMEOUT_S)

    def _socket(self) -> socket.socket | None:
        sock = getattr(self, "socket", None)
        return sock if isinstance(sock, socket.socket) else None

    def mapPriority(self, levelName: str) -> str:
        if levelName == logging.getLevelName(TRACE):
            return "debug"
        return super().mapPriority(levelName)

    def handleError(self, record: logging.LogRecord) -> None:
        # logging's default prints a traceback on stderr for every failed line; one warning
        # is enough, and the session goes on.
        self.dropped += 1
        if self.dropped == 1:
            logger.warning(
                "cannot write to syslog at %s; audit lines are being lost",
                self.address,
                extra={_LOCAL_ONLY: True},
            )


def _wanted_in_syslog(record: logging.LogRecord) -> bool:
    if getattr(record, _LOCAL_ONLY, False):
        return False
    if record.name == AUDIT_LOGGER or record.name.startswith(AUDIT_LOGGER + "."):
        return True
    return record.levelno >= logging.WARNING


def configure_syslog_audit(user: str, path: str) -> AuditSyslogHandler | None:
    """Sends every audit event (debug and up) and every warning to syslog, for ``user``'s session.

    With no syslog socket, one warning goes to stderr and None is returned; the session goes on.
    Calling this again replaces the handler it installed before.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, AuditSyslogHandler)]:
        root.removeHandler(old)
        old.close()

    handler = AuditSyslogHandler(path, user)
    if not handler.connected():
        handler.close()
        logger.warning("no syslog socket at %s; the audit trail is not recorded", path)
        return None
    root.addHandler(handler)
    # Audit events below the root level (allowlisted execs are debug) must still reach syslog;
    # the stderr handler's own level keeps them off stderr.
    audit_logger = logging.getLogger(AUDIT_LOGGER)
    if audit_logger.getEffectiveLevel() > logging.DEBUG:
        audit_logger.setLevel(logging.DEBUG)
    logger.debug("audit trail to syslog at %s (%s)", path, _socket_kind(handler))
    return handler


def _socket_kind(handler: AuditSyslogHandler) -> str:
    return "datagram" if handler.socktype == socket.SOCK_DGRAM else "stream"
