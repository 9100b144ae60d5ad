"""Internal calls between services: signed credentials and a JSON client.

Only the gateway is reachable from browsers. Identity and OTP reject a request
without a valid Ed25519 credential (``gatehouse.common.servicekeys``) with 401,
and a validly signed request from a caller not allowed on the route with 403.
A credential works once: its nonce is kept in Redis until its timestamp expires.
The health probes need no credential.
"""

from __future__ import annotations

import itertools
import json as json_module
import logging
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import redis
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
from .servicekeys import (
    CLOCK_SKEW_SECONDS,
    Credential,
    CredentialInvalid,
    PublicKeyRing,
    SigningKey,
    sign_request,
)
from .servicekeys import verify_request as verify_credential

log = logging.getLogger(__name__)

UNAUTHENTICATED_PATHS = frozenset({"/healthz", "/readyz", "/openapi.yaml"})
# Routes without an entry in a service's route policy accept only the gateway.
DEFAULT_CALLERS = frozenset({"gateway"})
# Appended to GATEHOUSE_REDIS_PREFIX for the keys of RedisNonceStore.
NONCE_KEY_PREFIX = "svc-nonce:"


@dataclass(frozen=True)
class RoutePolicy:
    """Callers allowed on each endpoint of one service.

    ``callers`` maps a Flask endpoint name (``blueprint.function``) to the callers
    allowed on it; every other endpoint allows ``default``.
    """

    callers: Mapping[str, Collection[str]]
    default: Collection[str] = DEFAULT_CALLERS

    def allows(self, endpoint: str | None, caller: str) -> bool:
        if endpoint is None:
            # No route matched, so Flask returns 404 and no view runs.
            return True
        return caller in self.callers.get(endpoint, self.default)


class RedisNonceStore:
    """Nonces of accepted credentials, in Redis, shared by every replica.

    A credential is accepted while its timestamp is within CLOCK_SKEW_SECONDS of the
    verifier's clock, so at most 2 * CLOCK_SKEW_SECONDS after its first use. Each
    nonce is kept one second longer than that.
    """

    TTL_SECONDS = 2 * CLOCK_SKEW_SECONDS + 1

    def __init__(self, client: redis.Redis, key_prefix: str) -> None:
        self._redis = client
        self._prefix = key_prefix

    def first_use(self, audience: str, credential: Credential) -> bool:
        """Record the nonce; return False if it was recorded before."""
        key = f"{self._prefix}{audience}:{credential.caller}:{credential.nonce}"
        return bool(self._redis.set(key, b"1", nx=True, ex=self.TTL_SECONDS))


def _request_target() -> str:
    query = request.query_string.decode("utf-8", "replace")
    return request.path + ("?" + query if query else "")


def _unauthenticated(error: CredentialInvalid):
    # The log line names the reason, the path and the key id, never the signature.
    log.warning(
        "internal.unauthenticated",
        extra={
            "path": request.path,
            "method": request.method,
            "reason": error.reason,
            "caller": error.caller,
            "key_id": error.key_id,
        },
    )
    return jsonify(
        error="unauthenticated", message="missing or invalid service credential"
    ), 401


def _nonce_store_unavailable(error: redis.RedisError):
    log.error(
        "internal.nonce_store_unavailable",
        extra={"path": request.path, "error": repr(error)},
    )
    return jsonify(
        error="unavailable", message="Redis is unavailable; retry shortly"
    ), 503


def install_service_auth(
    app: Flask,
    audience: str,
    ring: PublicKeyRing,
    policy: RoutePolicy,
    nonces: RedisNonceStore,
) -> None:
    """Require a signed, unused credential for ``audience`` on every request except
    the health probes, check the caller against ``policy``, and bind the request id.
    """

    @app.before_request
    def _check_credential():
        g.request_id = clean_request_id(request.headers.get(REQUEST_ID_HEADER))
        bind_request_id(g.request_id)
        if request.path in UNAUTHENTICATED_PATHS:
            return None
        try:
            credential = verify_credential(
                ring,
                audience,
                request.headers.get("Authorization", ""),
                request.method,
                _request_target(),
                request.get_data(cache=True),
            )
        except CredentialInvalid as error:
            return _unauthenticated(error)
        try:
            fresh = nonces.first_use(audience, credential)
        except redis.RedisError as error:
            return _nonce_store_unavailable(error)
        if not fresh:
            replayed = CredentialInvalid(
                "replayed", credential.caller, credential.key_id
            )
            return _unauthenticated(replayed)
        caller = credential.caller
        g.caller = caller
        endpoint = request.url_rule.endpoint if request.url_rule else None
        if not policy.allows(endpoint, caller):
            log.warning(
                "internal.forbidden",
                extra={"caller": caller, "endpoint": endpoint, "path": request.path},
            )
            return jsonify(
                error="forbidden", message=f"caller {caller} may not call this route"
            ), 403
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
        self,
        name: str,
        base_urls: list[str],
        signing_key: SigningKey,
        timeout: float = 10.0,
    ) -> None:
        if not base_urls:
            raise ValueError(f"{name}: no base URL configured")
        self.name = name
        self.base_urls = [url.rstrip("/") for url in base_urls]
        self._signing_key = signing_key
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
        headers = {REQUEST_ID_HEADER: current_request_id() or clean_request_id(None)}
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
            # A fresh credential per attempt, because the service accepts each
            # nonce once, and a failed attempt may have reached it. The credential
            # names this service, so it is useless at another one.
            headers["Authorization"] = sign_request(
                self._signing_key, self.name, method, path, body or b""
            )
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
