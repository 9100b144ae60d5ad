"""Internal calls between services: a shared bearer credential and a JSON client.

Only the gateway is reachable from browsers. Identity and OTP reject any request
without ``Authorization: Bearer $GATEHOUSE_SERVICE_TOKEN`` with 401, except
the health probes.
"""

from __future__ import annotations

import hmac
import itertools
import json as json_module
import logging
import threading
from dataclasses import dataclass

import urllib3
from flask import Flask, g, jsonify, request
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

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
    """A backend service was unreachable or timed out; the message names it."""


@dataclass
class ServiceResponse:
    status: int
    body: dict
    headers: dict


class ServiceClient:
    """JSON client for one service, spreading calls round-robin over its replicas.

    A replica that refuses the connection is skipped and the next one tried, so one
    OTP replica going down costs no request. It uses urllib3 directly, because its
    pool manager is thread-safe and skips the per-call work requests adds on top
    (hooks, cookie jar, adapters). Internal calls were a third of the gateway's CPU
    per login in the py-spy profile of ``make bench``.
    """

    def __init__(
        self, name: str, base_urls: list[str], service_token: str, timeout: float = 10.0
    ) -> None:
        if not base_urls:
            raise ValueError(f"{name}: no base URL configured")
        self.name = name
        self.base_urls = [url.rstrip("/") for url in base_urls]
        self._authorization = f"Bearer {service_token}"
        self._timeout = urllib3.Timeout(connect=min(timeout, 3.0), read=timeout)
        self._cycle = itertools.cycle(range(len(self.base_urls)))
        self._cycle_lock = threading.Lock()
        self._pool = urllib3.PoolManager(
            num_pools=max(4, len(self.base_urls)), maxsize=32, retries=False
        )

    def _next_start(self) -> int:
        with self._cycle_lock:
            return next(self._cycle)

    def call(self, method: str, path: str, json: dict | None = None) -> ServiceResponse:
        """Send one request; raise ServiceUnavailable when no replica responds."""
        headers = {
            "Authorization": self._authorization,
            REQUEST_ID_HEADER: current_request_id() or clean_request_id(None),
        }

        body = None
        if json is not None:
            body = json_module.dumps(json).encode()
            headers["Content-Type"] = "application/json"
        start = self._next_start()
        last_error: Exception | None = None
        # One extra attempt beyond the replica count: a server may close an idle
        # keep-alive connection just as a request goes out on it, and the retry
        # then opens a fresh one. Requests that reach a service twice are safe,
        # because tokens are single use and replays are rejected there.
        for offset in range(len(self.base_urls) + 1):
            base = self.base_urls[(start + offset) % len(self.base_urls)]
            try:
                response = self._pool.request(
                    method,
                    base + path,
                    body=body,
                    headers=headers,
                    timeout=self._timeout,
                )
            except (NewConnectionError, ConnectTimeoutError, ProtocolError) as error:
                last_error = error
                log.warning(
                    "internal.replica_unreachable",
                    extra={"target": self.name, "url": base},
                )
                continue
            except ReadTimeoutError as error:
                raise ServiceUnavailable(f"{self.name} timed out at {base}") from error
            except HTTPError as error:
                raise ServiceUnavailable(
                    f"{self.name} failed at {base}: {error}"
                ) from error
            try:
                answer = json_module.loads(response.data)
            except ValueError:
                answer = {
                    "error": "invalid_response",
                    "message": response.data[:200].decode(errors="replace"),
                }
            if not isinstance(answer, dict):
                answer = {"error": "invalid_response", "message": "not a JSON object"}
            return ServiceResponse(response.status, answer, dict(response.headers))
        raise ServiceUnavailable(f"{self.name} is unreachable") from last_error

    def get(self, path: str) -> ServiceResponse:
        return self.call("GET", path)

    def post(self, path: str, json: dict | None = None) -> ServiceResponse:
        return self.call("POST", path, json=json or {})

    def delete(self, path: str) -> ServiceResponse:
        return self.call("DELETE", path)
