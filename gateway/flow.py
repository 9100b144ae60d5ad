"""The login steps kept in the server session, and helpers every view shares.

A session moves through the stages below. Each page names the stages it serves,
and any other page redirects to the page of the current stage. Because the stage
lives only on the server, no URL can skip a step.
"""

from __future__ import annotations

import functools
import logging
import time

import redis
from flask import current_app, redirect, render_template, request, session, url_for
from gatehouse.common.audit_queue import queue_audit_event
from gatehouse.common.internal import ServiceClient, ServiceResponse, ServiceUnavailable
from gatehouse.common.logs import hash_ip

from .login_devices import browser_description, renew_device_cookie

log = logging.getLogger(__name__)

STAGE_CHANGE_PASSWORD = "change_password"
STAGE_SETUP_2FA = "setup_2fa"
STAGE_VERIFY_2FA = "verify_2fa"
STAGE_DONE = "done"

STAGE_ENDPOINTS = {
    STAGE_CHANGE_PASSWORD: "agent.password_change",
    STAGE_SETUP_2FA: "agent.twofa_setup",
    STAGE_VERIFY_2FA: "agent.twofa_verify",
    STAGE_DONE: "agent.dashboard",
}


def identity() -> ServiceClient:
    return current_app.extensions["identity"]


def otp() -> ServiceClient:
    return current_app.extensions["otp"]


def client_ip() -> str:
    return request.remote_addr or ""


def user_agent() -> str:
    return (request.user_agent.string or "")[:200]


def expect(response: ServiceResponse, *statuses: int) -> dict:
    """Return the body if the status is expected; a service fault raises."""
    if response.status not in statuses:
        raise ServiceUnavailable(
            f"unexpected response {response.status} {response.body.get('error')!r}"
        )
    return response.body


def render_page(template: str, page: str, status: int = 200, headers=None, **context):
    return render_template(template, page=page, **context), status, headers or {}


def describe_wait(seconds: int) -> str:
    """Return "45 seconds", "4 minutes 15 seconds" or "15 minutes" for a person."""
    minutes, rest = divmod(max(1, int(seconds)), 60)
    parts = []
    if minutes:
        parts.append(f"{minutes} minute" + ("" if minutes == 1 else "s"))
    if rest or not minutes:
        parts.append(f"{rest} second" + ("" if rest == 1 else "s"))
    return " ".join(parts)


def resend_wait_message(answer: dict, recent: str) -> str:
    """Return the message for an OTP ``resend_too_soon`` response body. When only
    the short cooldown blocks a new mail, the message starts with ``recent``."""
    wait = describe_wait(answer.get("retry_after", 30))
    if answer.get("hourly_cap"):
        return (
            f"No new code can be mailed for {wait}, because the hourly number of "
            "code mails is used up. The newest code works until it expires; after "
            "that, sign in with a recovery code or ask your administrator."
        )
    return f"{recent}: use that one, or ask for a new one in {wait}."


def throttled_message(retry_after: int) -> str:
    return (
        f"Too many attempts. Please wait {describe_wait(retry_after)} before "
        f"trying again."
    )


def throttled_response(response: ServiceResponse, render) -> tuple:
    """Return the page that ``render(error)`` builds as a 429 carrying the
    Retry-After of the throttled service ``response``."""
    retry_after = int(response.body.get("retry_after", 60))
    body = render(throttled_message(retry_after))[0]
    return body, 429, {"Retry-After": str(retry_after)}


def throttled_page(template: str, page: str, retry_after: int, **context):
    message = throttled_message(retry_after)
    return render_page(
        template,
        page,
        status=429,
        headers={"Retry-After": str(int(retry_after))},
        error=message,
        **context,
    )


def current_stage() -> str | None:
    if session.get("agent_id") is None:
        return None
    return session.get("stage")


def redirect_to_stage():
    stage = current_stage()
    if stage is None:
        return redirect(url_for("agent.login"))
    return redirect(url_for(STAGE_ENDPOINTS[stage]))


def requires_stage(*stages: str):
    """Serve the view only in ``stages``; otherwise go to the current stage's page."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            if current_stage() not in stages:
                return redirect_to_stage()
            return view(*args, **kwargs)

        return wrapper

    return decorator


def requires_recent_password(view):
    """Ask for the password again unless it was entered in the last few minutes.

    Changing the second factor, creating recovery codes, forgetting trusted
    browsers or ending sessions must not be possible with a session cookie alone,
    for example on a computer left unlocked.
    """

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if current_stage() != STAGE_DONE:
            return view(*args, **kwargs)
        window = current_app.config["REAUTHENTICATION_WINDOW"]
        if time.time() - session.get("password_at", 0) <= window:
            return view(*args, **kwargs)
        session["reauth_next"] = request.path if request.method == "GET" else None
        # A form post cannot be replayed after the password page, so the agent
        # is asked to repeat it.
        session["reauth_repeat"] = request.method != "GET"
        return redirect(url_for("agent.security_confirm"))

    return wrapper


def record_audit(event: str, detail: dict | None = None) -> None:
    """Queue a security event for the identity service's audit log."""
    agent_id = session.get("agent_id")
    if agent_id is None:
        return
    settings = current_app.config["GATEHOUSE"]
    try:
        queue_audit_event(
            current_app.extensions["redis"],
            settings.redis_prefix,
            agent_id,
            event,
            hash_ip(settings.log_hash_key, client_ip()),
            user_agent(),
            detail,
        )
        return
    except redis.RedisError as error:
        log.warning("gateway.audit_queue_failed", extra={"error": repr(error)})
    try:
        identity().post(
            "/v1/audit",
            {
                "agent_id": agent_id,
                "event": event,
                "client_ip": client_ip(),
                "user_agent": user_agent(),
                "detail": detail or {},
            },
        )
    except ServiceUnavailable:
        # The action itself already happened; losing its audit line must not
        # turn it into an error page, but it must not pass unseen either.
        log.error("gateway.audit_lost", extra={"agent_id": agent_id, "event": event})


def send_notice(event: str, browser: str | None = None) -> None:
    """Ask identity to mail the agent a notice; ``browser`` names this browser."""
    agent_id = session.get("agent_id")
    body = {"event": event}
    if browser is not None:
        body["browser"] = browser
    try:
        identity().post(f"/v1/agents/{agent_id}/notices", body)
    except ServiceUnavailable:
        log.error("gateway.notice_lost", extra={"agent_id": agent_id, "event": event})


def start_session(agent: dict) -> None:
    """Replace the anonymous session with a fresh one for ``agent``."""
    session.clear()
    session.rotate()
    session["_created"] = time.time()
    session["agent_id"] = agent["id"]
    session["first_name"] = agent["first_name"]
    session["last_name"] = agent["last_name"]
    session["login"] = agent["login"]
    session["email"] = agent["email"]
    session["user_agent"] = user_agent()
    session["password_at"] = time.time()


def factor_of(agent_id: int) -> dict:
    return expect(otp().get(f"/v1/factors/{agent_id}"), 200)


# Session key set when the password passed but is on a breach list: the change
# comes after the second factor, so the password alone cannot replace itself.
BREACHED_PASSWORD = "password_breached"


def stage_after_password(agent: dict) -> None:
    """Choose the stage after a correct password.

    An initial password is changed first, because its agent has no factor yet.
    A breached password is changed after the second factor (see complete_login).
    """
    if not agent["must_change_password"]:
        advance_after_password()
    elif agent.get("password_change_reason") == "breached":
        session[BREACHED_PASSWORD] = True
        advance_after_password()
    else:
        session["stage"] = STAGE_CHANGE_PASSWORD


def complete_login() -> None:
    """Mark the login complete; the session id changes once more.

    A session whose password is on a breach list goes to the password change
    instead, and the login completes after it.
    """
    session.rotate()
    if session.get(BREACHED_PASSWORD):
        session["stage"] = STAGE_CHANGE_PASSWORD
        return
    session["stage"] = STAGE_DONE
    session.pop("method", None)
    log.info("gateway.login_completed", extra={"agent_id": session["agent_id"]})
    if renew_device_cookie():
        record_audit("new_browser_signin")
        send_notice("new_browser", browser_description())


def send_challenge() -> dict:
    """Ask the OTP service to send an email token; return its response body."""
    response = otp().post(
        "/v1/challenges",
        {
            "agent_id": session["agent_id"],
            "email": session["email"],
            "first_name": session["first_name"],
            "client_ip": client_ip(),
        },
    )
    if response.status == 503:
        return {
            "error": "mail_unavailable",
            "message": "The code could not be sent. Please try again shortly.",
        }
    return expect(response, 200, 202, 429)


def advance_after_password() -> None:
    """Choose the stage after the password step (and the initial change)."""
    factor = factor_of(session["agent_id"])
    method = factor.get("method")
    if method is None:
        if current_app.config["REQUIRE_2FA"]:
            session["stage"] = STAGE_SETUP_2FA
        else:
            complete_login()
        return

    device_token = request.cookies.get(current_app.config["DEVICE_COOKIE_NAME"])
    if device_token and len(device_token) < 512:
        answer = expect(
            otp().post(
                "/v1/devices/check",
                {
                    "agent_id": session["agent_id"],
                    "device_token": device_token,
                },
            ),
            200,
        )
        if answer.get("trusted"):
            record_audit("second_factor_skipped", {"reason": "remembered_browser"})
            complete_login()
            return

    session["stage"] = STAGE_VERIFY_2FA
    session["method"] = method
    if method == "email":
        session["challenge"] = send_challenge()
