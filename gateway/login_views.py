"""Sign-in: the password step, the second step and logout."""

from __future__ import annotations

import logging

import redis
from flask import current_app, flash, make_response, redirect, session, url_for

from .blueprint import blueprint
from .flow import (
    STAGE_VERIFY_2FA,
    client_ip,
    complete_login,
    current_stage,
    expect,
    identity,
    otp,
    record_audit,
    redirect_to_stage,
    render_page,
    requires_stage,
    resend_wait_message,
    send_challenge,
    send_notice,
    stage_after_password,
    start_session,
    throttled_page,
    user_agent,
)
from .forms import ActionForm, LoginForm, VerifyForm
from .login_devices import browser_description, device_cookie
from .security_keys import verify_page_context

log = logging.getLogger(__name__)

INVALID_CREDENTIALS = "Invalid user name or password."
INITIAL_EXPIRED = (
    'Your initial password has expired. Set a new one with "Forgot your '
    'password?", or ask an operator to issue a new one.'
)
# The OTP service's error code for a code that was already accepted once.
REPLAYED_TOKEN = "replayed_token"
REPLAY_NOTICE = "second_factor_replayed"


@blueprint.route("/", methods=["GET", "POST"])
@blueprint.route("", methods=["GET", "POST"])
def login():
    if current_stage() is not None:
        return redirect_to_stage()
    form = LoginForm()
    if not form.validate_on_submit():
        status = 400 if form.is_submitted() else 200
        return render_page("login.html", "login", status=status, form=form)

    response = identity().post(
        "/v1/authenticate",
        {
            "login": form.login.data,
            "password": form.password.data,
            "client_ip": client_ip(),
            "user_agent": user_agent(),
            "device_cookie": device_cookie(),
        },
    )
    if response.status == 429:
        return throttled_page(
            "login.html", "login", response.body.get("retry_after", 60), form=form
        )
    if response.status == 401:
        return render_page(
            "login.html", "login", status=401, form=form, error=INVALID_CREDENTIALS
        )
    if response.body.get("error") == "initial_password_expired":
        # Identity sends this only after the password proved correct, so the
        # message gives nothing away about which logins exist.
        return render_page(
            "login.html", "login", status=403, form=form, error=INITIAL_EXPIRED
        )
    agent = expect(response, 200)["agent"]

    start_session(agent)
    stage_after_password(agent)
    return redirect_to_stage()


@blueprint.route("/2fa", methods=["GET", "POST"])
@requires_stage(STAGE_VERIFY_2FA)
def twofa_verify():
    form = VerifyForm()
    resend_form = ActionForm()
    method = session.get("method")
    context = {"form": form, "resend_form": resend_form, "method": method}
    context.update(verify_page_context(method))
    if not form.validate_on_submit():
        challenge = session.pop("challenge", None) or {}
        error = notice = None
        if challenge.get("error") == "resend_too_soon":
            notice = resend_wait_message(challenge, "We mailed you a code moments ago")
        elif challenge.get("error"):
            error = challenge.get("message")
        return render_page(
            "twofa_verify.html",
            "2fa-verify",
            status=400 if form.is_submitted() else 200,
            error=error,
            notice=notice,
            ttl_seconds=challenge.get("ttl_seconds"),
            **context,
        )

    response = otp().post(
        "/v1/verifications",
        {
            "agent_id": session["agent_id"],
            "token": form.token.data,
            "client_ip": client_ip(),
        },
    )
    if response.status == 429:
        record_audit("second_factor_throttled")
        return throttled_page(
            "twofa_verify.html",
            "2fa-verify",
            response.body.get("retry_after", 60),
            **context,
        )
    if response.status in (400, 409):
        _record_failure(response.body.get("error"), method)
        return render_page(
            "twofa_verify.html",
            "2fa-verify",
            status=400,
            error=response.body.get("message", "Invalid code."),
            **context,
        )
    answer = expect(response, 200)

    record_audit("second_factor_succeeded", {"method": answer.get("method")})
    if answer.get("recovery_code_used"):
        record_audit("recovery_code_used")
        send_notice("recovery_code_used")
        flash(
            f"You signed in with a recovery code. "
            f"{answer.get('recovery_codes_left', 0)} recovery codes are left."
        )
    remember = bool(form.remember_device.data)
    complete_login()
    result = make_response(redirect(url_for("agent.dashboard")))
    if remember:
        _remember_browser(result)
    return result


def _record_failure(error: str | None, method: str | None) -> None:
    if error == REPLAYED_TOKEN:
        _report_replay(method)
    else:
        record_audit("second_factor_failed", {"reason": error})


def _report_replay(method: str | None) -> None:
    """Audit a used-up code and mail the agent, at most one mail per interval.

    Someone who passed the password step has a code that was already
    accepted: the agent signing in twice, or an attacker who saw the code.
    """
    agent_id = session["agent_id"]
    record_audit("second_factor_replayed", {"method": method})
    log.warning("gateway.code_replayed", extra={"agent_id": agent_id})
    interval = current_app.config["REPLAY_NOTICE_INTERVAL"]
    if interval:
        prefix = current_app.config["GATEHOUSE"].redis_prefix
        key = f"{prefix}gw:notice-sent:{REPLAY_NOTICE}:{agent_id}"
        try:
            if not current_app.extensions["redis"].set(key, 1, nx=True, ex=interval):
                return
        except redis.RedisError as error:
            # A lost rate limit costs at most one extra mail; a lost notice
            # would hide the replay, so the mail goes out.
            log.warning("gateway.notice_limit_failed", extra={"error": repr(error)})
    send_notice(REPLAY_NOTICE)


def _remember_browser(response) -> None:
    browser = browser_description()
    answer = expect(
        otp().post(
            "/v1/devices", {"agent_id": session["agent_id"], "browser": browser}
        ),
        201,
    )
    response.set_cookie(
        current_app.config["DEVICE_COOKIE_NAME"],
        answer["device_token"],
        max_age=int(answer["max_age"]),
        httponly=True,
        secure=current_app.config["HTTPS"],
        samesite="Lax",
        path="/",
    )
    record_audit("browser_remembered")
    send_notice("browser_remembered", browser)


@blueprint.post("/2fa/resend")
@requires_stage(STAGE_VERIFY_2FA)
def twofa_resend():
    form = ActionForm()
    if not form.validate_on_submit():
        return redirect(url_for("agent.twofa_verify"))
    answer = send_challenge()
    if answer.get("error") == "resend_too_soon":
        flash(resend_wait_message(answer, "A code was sent moments ago"))
    elif answer.get("error"):
        flash(answer.get("message", "The code could not be sent."))
    else:
        flash("A new code is on its way. Only the newest code works.")
    return redirect(url_for("agent.twofa_verify"))


@blueprint.post("/logout")
def logout():
    form = ActionForm()
    if not form.validate_on_submit():
        return redirect_to_stage()
    if session.get("agent_id") is not None:
        record_audit("session_ended", {"reason": "logout"})
        log.info("gateway.logout", extra={"agent_id": session["agent_id"]})
    session.end()
    return redirect(url_for("agent.login", signed_out=1))


@blueprint.get("/dashboard")
@requires_stage("done")
def dashboard():
    recovery_codes = session.pop("recovery_codes", None)
    return render_page(
        "dashboard.html",
        "dashboard",
        logout_form=ActionForm(),
        recovery_codes=recovery_codes,
    )
