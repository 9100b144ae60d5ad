"""gunicorn settings for the gatehouse HTTP services, read from the environment.

The container image copies this file to its working directory, where gunicorn finds
it without ``--config``. ``GATEHOUSE_COMPONENT`` (``gateway``, ``identity`` or
``otp``) selects the port variable to bind, so one image serves all three:

    GATEHOUSE_COMPONENT=otp gunicorn 'gatehouse.otp.app:create_app()'

| variable | setting | default |
| --- | --- | --- |
| ``GUNICORN_WORKERS`` | worker processes | 2 |
| ``GUNICORN_THREADS`` | threads per worker (``gthread`` when above 1) | 4 |
| ``GUNICORN_TIMEOUT`` | seconds before a silent worker is restarted | 30 |
| ``GUNICORN_GRACEFUL_TIMEOUT`` | seconds a worker gets to finish on SIGTERM | 25 |
| ``GUNICORN_KEEPALIVE`` | seconds an idle keep-alive connection stays open | 5 |
| ``GUNICORN_MAX_REQUESTS`` | requests before a worker is replaced (0: never) | 0 |
| ``GATEWAY_HOST`` | gateway listen address | ``0.0.0.0`` |
| ``GATEWAY_PORT``, ``IDENTITY_PORT``, ``OTP_PORT`` | listen port | 8080, 8081, 8082 |
"""

from __future__ import annotations

import json
import os
import re
import time

from gunicorn import glogging

PORT_VARIABLES = {
    "gateway": ("GATEWAY_PORT", 8080),
    "identity": ("IDENTITY_PORT", 8081),
    "otp": ("OTP_PORT", 8082),
}

# Path segments that may carry a secret or personal data: reset tokens
# (/agent/password/reset/<token>, /v1/password-resets/<token>), device tokens and
# mail addresses (/v1/encryption/<address>). Query strings are never logged.
_SECRET_SEGMENT = re.compile(r"^[A-Za-z0-9_.~%-]{20,}$|@|%40")


def _env_int(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SystemExit(f"{name}={value} is below the minimum {minimum}")
    return value


def _component() -> str:
    component = os.environ.get("GATEHOUSE_COMPONENT", "")
    if component not in PORT_VARIABLES:
        raise SystemExit(
            f"GATEHOUSE_COMPONENT={component!r} is invalid; "
            f"set it to one of {', '.join(sorted(PORT_VARIABLES))}"
        )
    return component


def redact_path(path: str) -> str:
    """Return ``path`` with every token-like or address-like segment replaced."""
    segments = path.split("/")
    return "/".join(
        "[redacted]" if _SECRET_SEGMENT.search(segment) else segment
        for segment in segments
    )


class RedactingJsonLogger(glogging.Logger):
    """Access log as one JSON line per request, without secrets or raw client IPs.

    gunicorn's default access line contains the client address and the full request
    URI, which would put reset tokens and IP addresses in the logs.
    """

    def access(self, resp, req, environ, request_time):
        if not self.access_log_enabled:
            return

        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        headers = dict(getattr(resp, "headers", None) or [])
        request_id = next(
            (value for key, value in headers.items() if key.lower() == "x-request-id"),
            None,
        )
        now = time.time()
        # The same fields as gatehouse.common.logs.JsonFormatter, so one log
        # pipeline parses the access lines and the application lines.
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
            + f".{int(now * 1000) % 1000:03d}Z",
            "level": "info",
            "service": COMPONENT,
            "logger": "gunicorn.access",
            "event": "http.access",
            "request_id": request_id,
            "method": environ.get("REQUEST_METHOD"),
            "path": redact_path(environ.get("PATH_INFO", "")),
            "status": int(status) if str(status).isdigit() else status,
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 1),
            "user_agent": environ.get("HTTP_USER_AGENT"),
        }
        hash_key = os.environ.get("GATEHOUSE_LOG_HASH_KEY", "")
        if hash_key:
            # Imported here so that this file also loads where gatehouse is absent.
            from gatehouse.common.logs import hash_ip

            line["ip_hash"] = hash_ip(hash_key, environ.get("REMOTE_ADDR"))

        try:
            self.access_log.info(json.dumps(line))
        except Exception:  # noqa: BLE001 - a log failure must not fail the request
            self.exception("gunicorn.access_log_failed")


COMPONENT = _component()
_port_variable, _default_port = PORT_VARIABLES[COMPONENT]
_port = _env_int(_port_variable, _default_port, 1)
if COMPONENT == "gateway":
    # Inside a container every interface is the container's own, so the published
    # port decides what is reachable from outside.
    _host = os.environ.get("GATEWAY_HOST") or "0.0.0.0"  # noqa: S104
else:
    _host = "0.0.0.0"  # noqa: S104

bind = [f"{_host}:{_port}"]
workers = _env_int("GUNICORN_WORKERS", 2, 1)
threads = _env_int("GUNICORN_THREADS", 4, 1)
timeout = _env_int("GUNICORN_TIMEOUT", 30, 1)
graceful_timeout = _env_int("GUNICORN_GRACEFUL_TIMEOUT", 25, 1)
keepalive = _env_int("GUNICORN_KEEPALIVE", 5, 1)
max_requests = _env_int("GUNICORN_MAX_REQUESTS", 0, 0)
max_requests_jitter = max_requests // 10

# The heartbeat file lives in memory, so a read-only root filesystem works and a
# slow disk never makes a healthy worker look stuck.
# gunicorn creates the file itself with mkstemp, so a shared folder is safe.
_SHM = "/dev/shm"  # noqa: S108
worker_tmp_dir = _SHM if os.path.isdir(_SHM) else None

accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
logger_class = RedactingJsonLogger
proc_name = f"gatehouse-{COMPONENT}"

# gunicorn 25.1 and later open a control socket under $HOME by default. A container
# has no use for it, and a read-only root filesystem has no place for it. Older
# gunicorn versions ignore the unknown setting.
control_socket_disable = True
