"""Service logging: one format, with the request id of the request being served, and no
secret in any line (see `app.settings.secrets`)."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

from app.settings.secrets import redact, remember_environment

REQUEST_ID: ContextVar[str] = ContextVar("REQUEST_ID", default="-")

_FORMAT = "%(asctime)s %(levelname)s %(name)s [request_id=%(request_id)s] %(message)s"

# Loggers whose handlers also get the redaction: the root (MLflow, SQLAlchemy, Alembic,
# Feast and uvicorn propagate there) and Serve's, which writes the replicas' log files.
_OTHER_LOGGERS = ("", "ray.serve")


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class RedactingFilter(logging.Filter):
    """Takes secrets out of a record's final text: the message with its arguments, the
    traceback and the stack. A handler filter, so it sees the records of every logger the
    handler serves; the record is changed in place, for the handlers after it too."""

    _tracebacks = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: the handler reports it (handleError)
            return True
        record.msg, record.args = redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._tracebacks.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


REDACTION = RedactingFilter()


def configure_logging(level: str) -> None:
    """Send the service's own logs (`app.*`, `deployments.*`, `actors.*`) to stderr, and
    redact every line of them, and of the root's and Serve's handlers present now.

    Idempotent: a replica may build its app more than once. Ray captures stderr into the
    replica's log file and echoes it on the driver's console.
    """
    remember_environment()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.addFilter(_RequestIdFilter())
    handler.addFilter(REDACTION)
    for name in ("app", "deployments", "actors"):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.handlers = [handler]
        logger.propagate = False
    for name in _OTHER_LOGGERS:
        for other in logging.getLogger(name).handlers:
            other.addFilter(REDACTION)  # once: addFilter skips a filter already there
