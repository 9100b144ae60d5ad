"""Sign-in: the password step, the second step and logout."""

from __future__ import annotations

import logging

from flask import current_app, flash, make_response, redirect, session, url_for

from .blueprint import blueprint
from .flow import (
    STAGE_VERIFY_2FA,
    advance_after_password,
    client_ip,
    complete_login,
    current_stage,
    describe_wait,
    expect,
    identity,
    otp,
    record_audit,
    redirect_to_stage,
    render_page,
    requires_stage,
    send_challenge,
    send_notice,
    start_session,
    throttled_page,
    user_agent,
)
from .forms import ActionForm, LoginForm, VerifyForm

log = logging.getLogger(__name__)

INVALID_CREDENTIALS = "Invalid user name or password."


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
    agent = expect(response, 200)["agent"]

    start_session(agent)
    if agent["must_change_password"]:
        session["stage"] = "change_password"
    else:
        advance_after_password()
    return redirect_to_stage()


@blueprint.route("/2fa", methods=["GET", "POST"])
@requires_stage(STAGE_VERIFY_2FA)
def twofa_verify():
    form = VerifyForm()
    resend_form = ActionForm()
    method = session.get("method")
    context = {"form": form, "resend_form": resend_form, "method": method}
    if not form.validate_on_submit():
        challenge = session.pop("challenge", None) or {}
        error = notice = None
        if challenge.get("error") == "resend_too_soon":
            wait = describe_wait(challenge.get("retry_after", 30))
            notice = (
                f"We mailed you a code moments ago: use that one, or ask for a new "
                f"one in {wait}."
            )
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
        record_audit("second_factor_failed", {"reason": response.body.get("error")})
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


def _remember_browser(response) -> None:
    answer = expect(otp().post("/v1/devices", {"agent_id": session["agent_id"]}), 201)
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


@blueprint.post("/2fa/resend")
@requires_stage(STAGE_VERIFY_2FA)
def twofa_resend():
    form = ActionForm()
    if not form.validate_on_submit():
        return redirect(url_for("agent.twofa_verify"))
    answer = send_challenge()
    if answer.get("error") == "resend_too_soon":
        wait = describe_wait(answer.get("retry_after", 30))
        flash(f"A code was sent moments ago. You can ask for a new one in {wait}.")
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
