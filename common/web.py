"""Pieces every internal Flask service uses: JSON errors and health probes."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], None]


def error_response(status: int, error: str, message: str, **fields):
    """Return a JSON error body ``{"error", "message", ...}`` with ``status``."""
    return jsonify(error=error, message=message, **fields), status


def install_json_errors(app: Flask) -> None:
    """Return a JSON body for every HTTP error and uncaught exception."""

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        return error_response(
            error.code or 500,
            error.name.lower().replace(" ", "_"),
            error.description or error.name,
        )

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception("http.unhandled_error")
        return error_response(500, "internal_error", "internal error, see the logs")


def install_health(app: Flask, checks: dict[str, ReadinessCheck]) -> None:
    """Add ``/healthz`` (process alive) and ``/readyz`` (every check passes).

    Each check raises when its dependency is unreachable; ``/readyz`` returns 503
    naming every failed dependency.
    """

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz():
        failed = {}
        for name, check in checks.items():
            try:
                check()
            except Exception as error:  # noqa: BLE001 - any failure means not ready
                failed[name] = f"{type(error).__name__}: {error}"[:200]
        if failed:
            log.warning("health.not_ready", extra={"failed": sorted(failed)})
            return jsonify(status="unavailable", failed=failed), 503
        return jsonify(status="ok")
