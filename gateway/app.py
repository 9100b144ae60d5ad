"""The browser-facing gateway: HTML pages under /agent, sessions, CSRF."""

from __future__ import annotations

import logging

import requests
from flask import Flask, g, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect
from gatehouse.common.config import (
    env_bool,
    env_int,
    gateway_public_url,
    load_settings,
)
from gatehouse.common.device_cookie import DEFAULT_LIFETIME_DAYS, DeviceCookieCodec
from gatehouse.common.internal import ServiceClient, ServiceUnavailable
from gatehouse.common.logs import (
    REQUEST_ID_HEADER,
    bind_request_id,
    configure_logging,
    new_request_id,
)
from gatehouse.common.redis_store import connect
from gatehouse.common.web import install_health
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from . import display, views
from .forms import MAX_LOGIN_LENGTH, ForgotPasswordForm, LoginForm
from .sessions import RedisSessionInterface, RedisSessionStore

log = logging.getLogger(__name__)

csrf = CSRFProtect()

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def _defaults() -> dict:
    settings = load_settings()
    public_url = gateway_public_url()
    # An https public address means browsers reach the gateway over TLS, even
    # when a proxy in front terminates it, so the cookies must be Secure.
    https = env_bool("GATEWAY_HTTPS", public_url.startswith("https://"))
    return {
        "GATEHOUSE": settings,
        "SECRET_KEY": settings.secret_key,
        "PUBLIC_URL": public_url,
        "HTTPS": https,
        "TRUST_PROXY": env_bool("GATEWAY_TRUST_PROXY", False),
        "REQUIRE_2FA": env_bool("GATEHOUSE_REQUIRE_2FA", True),
        "SESSION_IDLE_TIMEOUT": env_int("GATEWAY_SESSION_IDLE_TIMEOUT", 1800, 60),
        "SESSION_ABSOLUTE_TIMEOUT": env_int(
            "GATEWAY_SESSION_ABSOLUTE_TIMEOUT", 43200, 60
        ),
        "REAUTHENTICATION_WINDOW": env_int("GATEWAY_REAUTHENTICATION_WINDOW", 600, 0),
        "DEVICE_COOKIE_DAYS": env_int("OTP_DEVICE_TTL_DAYS", 30, 1, 365),
        "LOGIN_DEVICE_COOKIE_DAYS": env_int(
            "GATEHOUSE_DEVICE_COOKIE_DAYS", DEFAULT_LIFETIME_DAYS, 1, 730
        ),
        "SERVICE_TIMEOUT": float(env_int("GATEWAY_SERVICE_TIMEOUT", 10, 1, 120)),
        "REPLAY_NOTICE_INTERVAL": env_int(
            "GATEWAY_REPLAY_NOTICE_INTERVAL", 3600, 0, 7 * 86400
        ),
        "WTF_CSRF_TIME_LIMIT": None,
        # Flask-WTF's strict mode needs a Referer header, which the
        # Referrer-Policy no-referrer suppresses; the Origin check below and the
        # session-bound token cover the same ground.
        "WTF_CSRF_SSL_STRICT": False,
        "MAX_CONTENT_LENGTH": 64 * 1024,
    }


# Each consuming mailer refreshes this key (with a 15 s TTL) every 5 s.
MAILER_ALIVE_KEY = "mail:alive"


def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(_defaults())
    if test_config:
        app.config.update(test_config)
    settings = app.config["GATEHOUSE"]
    configure_logging("gateway", settings.log_format)

    if app.config["TRUST_PROXY"]:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)

    https = app.config["HTTPS"]
    cookie_prefix = "__Host-" if https else ""
    app.config["DEVICE_COOKIE_NAME"] = f"{cookie_prefix}gatehouse_device"
    app.config["LOGIN_DEVICE_COOKIE_NAME"] = f"{cookie_prefix}gatehouse_login_device"
    app.extensions["device_cookies"] = DeviceCookieCodec(
        settings.secret_key, app.config["LOGIN_DEVICE_COOKIE_DAYS"] * 86400
    )
    redis_client = connect(settings.redis_url)
    store = RedisSessionStore(
        redis_client,
        settings.redis_prefix + "gw:",
        app.config["SESSION_IDLE_TIMEOUT"],
        app.config["SESSION_ABSOLUTE_TIMEOUT"],
    )
    app.session_interface = RedisSessionInterface(
        store, f"{cookie_prefix}gatehouse_session", secure=https
    )
    app.extensions["session_store"] = store
    app.extensions["redis"] = redis_client
    timeout = app.config["SERVICE_TIMEOUT"]
    signing_key = settings.signing_key("gateway")
    app.extensions["identity"] = ServiceClient(
        "identity", [settings.identity_url], signing_key, timeout
    )
    app.extensions["otp"] = ServiceClient(
        "otp", settings.otp_urls, signing_key, timeout
    )

    csrf.init_app(app)
    app.jinja_env.filters["encryption_label"] = display.encryption_label
    app.jinja_env.filters["utc_time"] = display.utc_time
    app.jinja_env.filters["browser_name"] = display.browser_name
    app.jinja_env.filters["event_label"] = display.event_label
    _install_request_context(app)
    _install_error_pages(app)
    install_health(app, _readiness_checks(app, redis_client))
    app.register_blueprint(views.blueprint)
    # Someone who opens the bare address lands on the sign-in page.
    app.add_url_rule("/", "root", lambda: redirect(url_for("agent.login")))
    if not https and not settings.development:
        log.warning(
            "gateway.plain_http",
            extra={
                "hint": "cookies lack Secure and HSTS is off; set "
                "GATEHOUSE_PUBLIC_URL=https://... or GATEWAY_HTTPS=on behind TLS"
            },
        )
    log.info("gateway.started", extra={"otp_replicas": len(settings.otp_urls)})
    return app


def _install_request_context(app: Flask) -> None:
    @app.before_request
    def _bind_request_id():
        # The gateway is the public edge: it never trusts a request id from outside.
        g.request_id = new_request_id()
        bind_request_id(g.request_id)

    @app.before_request
    def _check_origin():
        # Browsers send Origin on every cross-site POST; a mismatch is a forged
        # form even before the CSRF token is looked at.
        origin = request.headers.get("Origin")
        if request.method == "POST" and origin and origin != "null":
            expected = request.host_url.rstrip("/")
            if origin.rstrip("/") != expected:
                log.warning("gateway.origin_rejected", extra={"path": request.path})
                raise CSRFError("The request came from another site.")
        return None

    @app.after_request
    def _security_headers(response):
        headers = response.headers
        headers[REQUEST_ID_HEADER] = g.get("request_id", "")
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        headers["X-Content-Type-Options"] = "nosniff"
        headers["X-Frame-Options"] = "DENY"
        headers["Referrer-Policy"] = "no-referrer"
        headers["Cross-Origin-Opener-Policy"] = "same-origin"
        if not request.path.startswith("/agent/static/"):
            headers["Cache-Control"] = "no-store"
        if app.config["HTTPS"]:
            headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
        return response


def _install_error_pages(app: Flask) -> None:
    def page(status: int, title: str, message: str):
        return render_template(
            "error.html", page="error", title=title, message=message
        ), status

    @app.errorhandler(CSRFError)
    def _csrf_error(error):
        log.warning(
            "gateway.csrf_rejected",
            extra={"path": request.path, "reason": error.description},
        )
        # The two forms a signed-out person uses come back filled in, so an
        # expired session costs them a click, not their typing.
        expired = "This form is no longer valid, so nothing was sent. Please try again."
        typed_login = request.form.get("login", "")[:MAX_LOGIN_LENGTH]
        if request.path in ("/agent", "/agent/"):
            form = LoginForm(formdata=None, login=typed_login)
            return render_template(
                "login.html", page="login", form=form, error=expired
            ), 400
        if request.path == "/agent/password/forgot":
            form = ForgotPasswordForm(formdata=None, login=typed_login)
            return render_template(
                "password_forgot.html", page="password-forgot", form=form, error=expired
            ), 400
        return page(
            400,
            "Form expired",
            "This form is no longer valid. Go back, reload the page and try again.",
        )

    @app.errorhandler(400)
    def _bad_request(error):
        return page(400, "Bad request", "The request was not understood.")

    @app.errorhandler(404)
    def _not_found(error):
        return page(404, "Page not found", "There is no page at this address.")

    @app.errorhandler(405)
    def _method_not_allowed(error):
        return page(
            405,
            "Method not allowed",
            "This address only takes form submissions. Go back to sign-in and "
            "use the page's buttons.",
        )

    @app.errorhandler(413)
    def _too_large(error):
        return page(413, "Request too large", "The form sent too much data.")

    @app.errorhandler(HTTPException)
    def _other_http_error(error: HTTPException):
        return page(error.code or 500, error.name, error.description or error.name)

    @app.errorhandler(ServiceUnavailable)
    def _unavailable(error):
        log.error("gateway.service_unavailable", extra={"error": str(error)})
        return page(
            503,
            "Temporarily unavailable",
            "Sign-in is temporarily unavailable. Please try again in a minute.",
        )

    @app.errorhandler(Exception)
    def _unexpected(error):
        log.exception("gateway.unhandled_error")
        return page(
            500,
            "Something went wrong",
            "The request failed. Please try again; if it keeps failing, "
            "tell your administrator the time it happened.",
        )


def _readiness_checks(app: Flask, redis_client) -> dict:
    def check_service(name: str, client: ServiceClient):
        def check():
            for base in client.base_urls:
                response = requests.get(base + "/readyz", timeout=2)
                if response.status_code != 200:
                    raise RuntimeError(f"{base}/readyz returned {response.status_code}")

        return check

    settings = app.config["GATEHOUSE"]
    alive_key = settings.redis_prefix + MAILER_ALIVE_KEY

    def check_mailer():
        if not redis_client.exists(alive_key):
            raise RuntimeError("no mailer has reported alive in the last 15 s")

    checks = {
        "redis": lambda: redis_client.ping(),
        "mailer": check_mailer,
        "identity": check_service("identity", app.extensions["identity"]),
        "otp": check_service("otp", app.extensions["otp"]),
    }
    return checks
