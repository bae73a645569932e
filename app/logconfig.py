"""Logging: one line per event, no request bodies, no secrets (see README, Privacy)."""

from __future__ import annotations

import logging


def configure_logging(level: str, fmt: str = "text") -> None:
    """`fmt`: SIGNET_LOG_FORMAT, `text` or `json`; every line carries the request id."""
    from app.observability import log_handler

    logging.basicConfig(level=level.upper(), handlers=[log_handler(fmt)], force=True)
    # uvicorn's own loggers (startup, errors) go through the same handler and format.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    # Access logs carry URLs with query strings; keep them off by default.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
