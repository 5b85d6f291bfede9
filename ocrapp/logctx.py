"""Structured logs: the context of a log line (request id, capture id, task id) and formatters.

The context lives in a ``contextvars.ContextVar``: the request middleware
(``ocrapp.observability``) binds ``request_id`` (and ``capture_id`` when the URL names one), the
capture API binds the new capture's id, and the Celery signals (``workers/celery.py``) bind
``task_id`` and ``capture_id`` around each task. ``ContextFilter`` (on the handlers) copies it onto
every record, so any logger's lines carry it without passing it around.

``LOG_FORMAT`` picks the formatter: ``json`` (one JSON object a line: ``time``, ``level``,
``logger``, ``message``, the context keys, ``pid``, ``exc`` and any ``extra=`` fields) or
``plain`` (text, the context appended as ``[capture_id=...]``). Default: ``json`` when
``DJANGO_ENV=production``, else ``plain``. Stdlib only: imported while logging is configured.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

CONTEXT_KEYS = ("request_id", "capture_id", "task_id")
LOG_FORMATS = ("json", "plain")
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("log_context")

# Attributes every LogRecord has: anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def current() -> dict[str, str]:
    """The bound context (keys of ``CONTEXT_KEYS`` that are set)."""
    return _context.get({})


def bind(**values: Any) -> contextvars.Token:
    """Add ``values`` (None/empty ones are skipped) to the context; ``reset(token)`` undoes it."""
    merged = dict(current())
    merged.update({k: str(v) for k, v in values.items() if v not in (None, "")})
    return _context.set(merged)


def reset(token: contextvars.Token) -> None:
    with contextlib.suppress(ValueError):  # a token of another context (other thread): ignore
        _context.reset(token)


@contextlib.contextmanager
def context(**values: Any) -> Iterator[None]:
    token = bind(**values)
    try:
        yield
    finally:
        reset(token)


def log_format_from_env() -> str:
    """``LOG_FORMAT`` (json | plain), default json in production (``DJANGO_ENV=production``)."""
    raw = os.environ.get("LOG_FORMAT", "").strip().lower()
    if not raw:
        return "json" if os.environ.get("DJANGO_ENV", "").lower() == "production" else "plain"
    if raw not in LOG_FORMATS:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"LOG_FORMAT must be one of {LOG_FORMATS}, got {raw!r}")
    return raw


class ContextFilter(logging.Filter):
    """Copies the bound context onto each record (``record.capture_id`` ...)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in current().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def _json_safe(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object a line. Keys: ``time`` (UTC, ISO 8601, ms), ``level``, ``logger``,
    ``message``, then ``request_id`` / ``capture_id`` / ``task_id`` when bound, ``pid``,
    ``process_name``, ``exc`` (the traceback) and every ``extra=`` field."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_KEYS:
            value = getattr(record, key, None)
            if value:
                body[key] = value
        body["pid"] = record.process
        if record.processName and record.processName != "MainProcess":
            body["process_name"] = record.processName
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and key not in body and not key.startswith("_"):
                body[key] = _json_safe(value)
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            body["exc"] = record.exc_text
        if record.stack_info:
            body["stack"] = self.formatStack(record.stack_info)
        return json.dumps(body, ensure_ascii=False, default=str)


class PlainFormatter(logging.Formatter):
    """Text lines (``PLAIN_FORMAT`` unless given) with the bound context appended."""

    def __init__(self, fmt: str | None = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(fmt or PLAIN_FORMAT, *args, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ctx = " ".join(
            f"{k}={getattr(record, k)}" for k in CONTEXT_KEYS if getattr(record, k, None)
        )
        if not ctx:
            return text
        first, sep, rest = text.partition("\n")  # keep a traceback below the line
        return f"{first} [{ctx}]{sep}{rest}"


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else PlainFormatter()


def logging_config(*, log_format: str, level: str) -> dict:
    """The ``LOGGING`` dict of ``ocrapp.settings``: one console handler with the context
    filter and the chosen formatter."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "ocrapp.logctx.ContextFilter"}},
        "formatters": {
            "json": {"()": "ocrapp.logctx.JsonFormatter"},
            "plain": {"()": "ocrapp.logctx.PlainFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                "filters": ["context"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
    }


def adopt_handlers(logger: logging.Logger, log_format: str) -> None:
    """Give the handlers Celery set up on ``logger`` the context filter and, for ``json``, the
    JSON formatter (Celery's own text formats stay for ``plain``)."""
    for handler in logger.handlers:
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(ContextFilter())
        if log_format == "json":
            handler.setFormatter(JsonFormatter())
