"""Logging: JSON lines in production, readable lines in development.

Log calls use a static event name as the message and put data in ``extra``::

    log.info("otp.verify_failed", extra={"agent_id": 7, "ip_hash": "..."})

Every line carries the request id bound by ``bind_request_id``. Callers must never
pass a password, code, secret, token, mail body, session id or raw client IP.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
import logging
import re
import sys
import time
import uuid

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

# Attributes every LogRecord has; anything else came from ``extra``.
_RECORD_ATTRIBUTES = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "request_id",
    "service",
}


def new_request_id() -> str:
    return uuid.uuid4().hex


def clean_request_id(value: str | None) -> str:
    """Return ``value`` if it is a well-formed request id, else a new one."""
    if value and _REQUEST_ID_PATTERN.match(value):
        return value
    return new_request_id()


def bind_request_id(value: str | None) -> contextvars.Token:
    return _request_id.set(value)


def current_request_id() -> str | None:
    return _request_id.get()


def hash_ip(key: str, address: str | None) -> str:
    """Return a keyed hash of a client IP, stable per key, for logs and audit."""
    digest = hmac.new(key.encode(), (address or "").encode(), hashlib.sha256)
    return digest.hexdigest()[:16]


class _ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        record.service = self.service
        return True


def _extra_fields(record: logging.LogRecord) -> dict:
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _RECORD_ATTRIBUTES and not key.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": getattr(record, "service", None),
            "logger": record.name,
            "event": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        line.update(_extra_fields(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(
            f"{key}={value}" for key, value in _extra_fields(record).items()
        )
        request_id = getattr(record, "request_id", None)
        text = (
            f"{time.strftime('%H:%M:%S', time.localtime(record.created))} "
            f"{record.levelname:<7} {getattr(record, 'service', '-')}: "
            f"{record.getMessage()}"
        )
        if request_id:
            text += f" request_id={request_id}"
        if fields:
            text += " " + fields
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure_logging(service: str, log_format: str, level: str = "INFO") -> None:
    """Send every logger's records to stderr in ``log_format`` (json or text)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(_ContextFilter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # pika logs every heartbeat and frame at INFO, and a connection reset as
    # several ERROR lines with tracebacks; the callers log their own retries.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    # Flask-WTF logs each CSRF rejection at INFO; the gateway logs its own line.
    logging.getLogger("flask_wtf.csrf").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
