"""Personalization → Security: factor, password, recovery codes, browsers, sessions."""

from __future__ import annotations

import logging
import re
import time

from flask import current_app, flash, redirect, request, session, url_for

from .blueprint import blueprint
from .flow import (
    STAGE_DONE,
    client_ip,
    expect,
    identity,
    otp,
    record_audit,
    render_page,
    requires_recent_password,
    requires_stage,
    send_notice,
    throttled_page,
    throttled_response,
    user_agent,
)
from .forms import ActionForm, ChangePasswordForm, ConfirmPasswordForm, MethodForm
from .login_devices import device_cookie
from .security_keys import list_keys, unavailable_reason

log = logging.getLogger(__name__)

# A remembered browser's handle as the OTP service lists it (20 hex digits), with
# room for other formats that stay one plain URL path segment.
DEVICE_HANDLE = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)

AUDIT_EVENTS_SHOWN = 20


def _security_page(
    password_form: ChangePasswordForm, status: int = 200, error: str | None = None
):
    agent_id = session["agent_id"]
    factor = expect(otp().get(f"/v1/factors/{agent_id}"), 200)
    encryption = expect(otp().get(f"/v1/encryption/{session['email']}"), 200)
    events = expect(
        identity().get(f"/v1/agents/{agent_id}/audit?limit={AUDIT_EVENTS_SHOWN}"), 200
    )
    return render_page(
        "security.html",
        "security",
        status=status,
        factor=factor,
        encryption=encryption.get("method"),
        events=events.get("events", []),
        sessions=_store().list_for_agent(agent_id, session.session_id),
        devices=expect(otp().get(f"/v1/devices/{agent_id}"), 200).get("devices", []),
        security_keys=list_keys(agent_id, factor.get("method")),
        security_keys_unavailable=unavailable_reason(),
        password_form=password_form,
        method_form=MethodForm(),
        action_form=ActionForm(),
        recovery_codes=session.pop("recovery_codes", None),
        error=error,
    )


def _store():
    return current_app.extensions["session_store"]


@blueprint.get("/preferences/security")
@requires_stage(STAGE_DONE)
def security():
    return _security_page(ChangePasswordForm())


@blueprint.post("/preferences/security/password")
@requires_stage(STAGE_DONE)
def security_password():
    form = ChangePasswordForm()
    if not form.validate_on_submit():
        return _security_page(form, status=400)

    agent_id = session["agent_id"]
    response = identity().post(
        f"/v1/agents/{agent_id}/password",
        {
            "current_password": form.current_password.data,
            "new_password": form.new_password.data,
            "new_password_confirm": form.new_password_confirm.data,
            "client_ip": client_ip(),
            "user_agent": user_agent(),
            "device_cookie": device_cookie(),
        },
    )
    if response.status == 429:
        return throttled_response(
            response, lambda error: _security_page(form, status=429, error=error)
        )
    if response.status in (400, 403):
        return _security_page(form, status=400, error=response.body.get("message"))
    expect(response, 200)

    ended = current_app.extensions["session_store"].end_all(
        agent_id, session.session_id
    )
    otp().delete(f"/v1/devices/{agent_id}")
    session.rotate()
    session["password_at"] = time.time()
    record_audit("sessions_ended", {"reason": "password_changed", "count": ended})
    flash("Your password has been changed. Your other sessions were signed out.")
    return redirect(url_for("agent.security"))


@blueprint.post("/preferences/security/recovery-codes")
@requires_stage(STAGE_DONE)
@requires_recent_password
def security_recovery_codes():
    if not ActionForm().validate_on_submit():
        return redirect(url_for("agent.security"))
    agent_id = session["agent_id"]
    answer = expect(otp().post(f"/v1/factors/{agent_id}/recovery-codes"), 200)
    session["recovery_codes"] = answer.get("recovery_codes")
    record_audit("recovery_codes_renewed")
    send_notice("recovery_codes_renewed")
    flash("New recovery codes were created; the old ones no longer work.")
    return redirect(url_for("agent.security"))


@blueprint.post("/preferences/security/forget-browsers")
@requires_stage(STAGE_DONE)
@requires_recent_password
def security_forget_browsers():
    if not ActionForm().validate_on_submit():
        return redirect(url_for("agent.security"))
    response = otp().delete(f"/v1/devices/{session['agent_id']}")
    expect(response, 204)
    record_audit("browsers_forgotten")
    flash("No browser is trusted any more; each will ask for the second factor.")
    return redirect(url_for("agent.security"))


@blueprint.post("/preferences/security/forget-browser")
@requires_stage(STAGE_DONE)
@requires_recent_password
def security_forget_browser():
    form = ActionForm()
    handle = request.form.get("handle", "")
    # The handle becomes a path segment of an internal URL, and the internal
    # client resolves "..", so only letters, digits, "-" and "_" may pass.
    if not form.validate_on_submit() or not DEVICE_HANDLE.fullmatch(handle):
        return redirect(url_for("agent.security"))
    response = otp().delete(f"/v1/devices/{session['agent_id']}/{handle}")
    expect(response, 204, 404)
    if response.status == 404:
        flash("That browser was already forgotten.")
        return redirect(url_for("agent.security"))
    record_audit("browser_forgotten")
    flash("That browser is no longer trusted; it will ask for the second factor.")
    return redirect(url_for("agent.security"))


@blueprint.post("/preferences/security/sign-out-everywhere")
@requires_stage(STAGE_DONE)
@requires_recent_password
def security_sign_out_everywhere():
    if not ActionForm().validate_on_submit():
        return redirect(url_for("agent.security"))
    agent_id = session["agent_id"]
    record_audit("sessions_ended", {"reason": "sign_out_everywhere"})
    send_notice("sessions_ended")
    current_app.extensions["session_store"].end_all(agent_id)
    session.end()
    return redirect(url_for("agent.login", signed_out=1))


@blueprint.post("/preferences/security/sessions/end")
@requires_stage(STAGE_DONE)
@requires_recent_password
def security_end_session():
    form = ActionForm()
    handle = request.form.get("handle", "")
    if not form.validate_on_submit() or not 0 < len(handle) <= 64:
        return redirect(url_for("agent.security"))
    if _store().end_by_handle(session["agent_id"], handle):
        record_audit(
            "sessions_ended", {"reason": "ended_from_security_page", "count": 1}
        )
        flash("That session was signed out.")
    else:
        flash("That session had already ended.")
    return redirect(url_for("agent.security"))


@blueprint.route("/preferences/security/confirm", methods=["GET", "POST"])
@requires_stage(STAGE_DONE)
def security_confirm():
    form = ConfirmPasswordForm()
    if not form.validate_on_submit():
        return render_page(
            "reauth.html",
            "reauth",
            status=400 if form.is_submitted() else 200,
            form=form,
        )
    response = identity().post(
        "/v1/authenticate",
        {
            "login": session["login"],
            "password": form.current_password.data,
            "client_ip": client_ip(),
            "user_agent": user_agent(),
            "device_cookie": device_cookie(),
        },
    )
    if response.status == 429:
        return throttled_page(
            "reauth.html", "reauth", response.body.get("retry_after", 60), form=form
        )
    if response.status == 401:
        return render_page(
            "reauth.html",
            "reauth",
            status=401,
            form=form,
            error="The password is not correct.",
        )
    expect(response, 200)

    session["password_at"] = time.time()
    if session.pop("reauth_repeat", False):
        flash(
            "Password confirmed. Nothing was changed yet, so choose the action again."
        )
    target = session.pop("reauth_next", None)
    if not target or not target.startswith("/agent/"):
        target = url_for("agent.security")
    return redirect(target)
