"""Structured JSON logs; each line carries the release, tag and step it concerns."""

from __future__ import annotations

import logging
import sys
import threading

import structlog

_WRITING = threading.Lock()


class _StderrLogger:
    """Writes each line to `sys.stderr` as it is at that moment.

    structlog's PrintLogger keeps the stream it was made with; a logger cached
    while the stream was a temporary one (a CLI run inside a test harness)
    would write to it after it is closed.
    """

    def __init__(self, *_: object) -> None:
        pass

    def msg(self, message: str) -> None:
        with _WRITING:  # one write per line: threads never splice their lines
            sys.stderr.write(message + "\n")
            sys.stderr.flush()

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def configure_logging(level: str = "INFO") -> None:
    # kopf reports every successful handler run at INFO; only problems are news.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=_StderrLogger,
        cache_logger_on_first_use=True,
    )
