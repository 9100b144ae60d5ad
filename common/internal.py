"""Internal calls between services: a shared bearer credential and a JSON client.

Only the gateway is reachable from browsers. Identity and OTP answer 401 to any
request without ``Authorization: Bearer $GATEHOUSE_SERVICE_TOKEN``, except the
health probes.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import threading
from dataclasses import dataclass

import requests
from flask import Flask, g, jsonify, request

from .logs import (
    REQUEST_ID_HEADER,
    bind_request_id,
    clean_request_id,
    current_request_id,
)

log = logging.getLogger(__name__)

UNAUTHENTICATED_PATHS = frozenset({"/healthz", "/readyz", "/openapi.yaml"})


def install_service_auth(app: Flask, service_token: str) -> None:
    """Require the service credential on every request and bind its request id."""
    expected = f"Bearer {service_token}".encode()

    @app.before_request
    def _check_credential():
        g.request_id = clean_request_id(request.headers.get(REQUEST_ID_HEADER))
        bind_request_id(g.request_id)
        if request.path in UNAUTHENTICATED_PATHS:
            return None
        presented = request.headers.get("Authorization", "").encode()
        # compare_digest keeps the comparison time independent of where they differ.
        if not hmac.compare_digest(presented, expected):
            log.warning("internal.unauthenticated", extra={"path": request.path})
            return jsonify(
                error="unauthenticated", message="missing or invalid service credential"
            ), 401
        return None

    @app.after_request
    def _echo_request_id(response):
        response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
        return response


class ServiceUnavailable(RuntimeError):
    """A backend service did not answer; the message names it."""


@dataclass
class ServiceResponse:
    status: int
    body: dict
    headers: dict


class ServiceClient:
    """JSON client for one service, spreading calls round-robin over its replicas.

    A replica that refuses the connection is skipped and the next one tried, so one
    OTP replica going down costs no request. The requests session is per thread
    because ``requests.Session`` is not documented as thread-safe.
    """

    def __init__(
        self, name: str, base_urls: list[str], service_token: str, timeout: float = 10.0
    ) -> None:
        if not base_urls:
            raise ValueError(f"{name}: no base URL configured")
        self.name = name
        self.base_urls = [url.rstrip("/") for url in base_urls]
        self._token = service_token
        self._timeout = timeout
        self._cycle = itertools.cycle(range(len(self.base_urls)))
        self._cycle_lock = threading.Lock()
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {self._token}"
            self._local.session = session
        return session

    def _next_start(self) -> int:
        with self._cycle_lock:
            return next(self._cycle)

    def call(self, method: str, path: str, json: dict | None = None) -> ServiceResponse:
        """Send one request; raise ServiceUnavailable when no replica answers."""
        headers = {REQUEST_ID_HEADER: current_request_id() or clean_request_id(None)}
        start = self._next_start()
        last_error: Exception | None = None
        # One extra attempt beyond the replica count: a server may close an idle
        # keep-alive connection just as a request goes out on it, and the retry
        # then opens a fresh one. Requests that reach a service twice are safe,
        # because tokens are single use and replays are rejected there.
        for offset in range(len(self.base_urls) + 1):
            base = self.base_urls[(start + offset) % len(self.base_urls)]
            try:
                response = self._session().request(
                    method,
                    base + path,
                    json=json,
                    headers=headers,
                    timeout=self._timeout,
                )
            except requests.ConnectionError as error:
                last_error = error
                log.warning(
                    "internal.replica_unreachable",
                    extra={"target": self.name, "url": base},
                )
                continue
            except requests.Timeout as error:
                raise ServiceUnavailable(f"{self.name} timed out at {base}") from error
            try:
                body = response.json()
            except ValueError:
                body = {"error": "invalid_response", "message": response.text[:200]}
            return ServiceResponse(response.status_code, body, dict(response.headers))
        raise ServiceUnavailable(f"{self.name} is unreachable") from last_error

    def get(self, path: str) -> ServiceResponse:
        return self.call("GET", path)

    def post(self, path: str, json: dict | None = None) -> ServiceResponse:
        return self.call("POST", path, json=json or {})

    def delete(self, path: str) -> ServiceResponse:
        return self.call("DELETE", path)
