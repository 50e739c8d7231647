"""structlog set up once per process: JSON lines for machines, console for people."""

from __future__ import annotations

import logging

import structlog


def configure(level: str = "info", fmt: str = "json") -> None:
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer()
    )
    numeric = logging.getLevelName(level.upper())
    logging.basicConfig(level=numeric, format="%(message)s")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # one write per line, newline included: where processes share one stdout (the
        # workers of a test or a benchmark), a line written in two parts (unbuffered
        # output writes print()'s newline apart) could be split by another process's line
        logger_factory=structlog.WriteLoggerFactory(),
        cache_logger_on_first_use=True,
    )
