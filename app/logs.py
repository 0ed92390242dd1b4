"""Service logging: one format, with the request id of the request being served."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

REQUEST_ID: ContextVar[str] = ContextVar("REQUEST_ID", default="-")

_FORMAT = "%(asctime)s %(levelname)s %(name)s [request_id=%(request_id)s] %(message)s"


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


def configure_logging(level: str) -> None:
    """Send the service's own logs (`app.*`, `deployments.*`, `actors.*`) to stderr.

    Idempotent: a replica may build its app more than once. Ray captures stderr into the
    replica's log file and echoes it on the driver's console.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.addFilter(_RequestIdFilter())
    for name in ("app", "deployments", "actors"):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.handlers = [handler]
        logger.propagate = False
