"""Security-key pages: enrollment, the second login step and key removal.

The browser side is ``static/webauthn.js``: it runs navigator.credentials.create()
or .get() with the options in the page, and posts the result as JSON in the hidden
``credential`` field of an ordinary form with its CSRF token.
"""

from __future__ import annotations

import json
import logging

from flask import flash, make_response, redirect, session, url_for

from .blueprint import blueprint
from .flow import (
    STAGE_DONE,
    STAGE_SETUP_2FA,
    STAGE_VERIFY_2FA,
    client_ip,
    complete_login,
    expect,
    factor_of,
    otp,
    record_audit,
    render_page,
    requires_recent_password,
    requires_stage,
    send_notice,
    throttled_response,
)
from .forms import (
    ActionForm,
    RemoveKeyForm,
    SecurityKeyForm,
    SecurityKeyVerifyForm,
    VerifyForm,
)
from .login_views import _remember_browser
from .security_keys import (
    UNREADABLE_MESSAGE,
    readable_credential,
    start_ceremony,
    verify_page_context,
)
from .setup_views import _finish_enrollment

log = logging.getLogger(__name__)

SETUP_TEMPLATE = "twofa_setup_security_key.html"
SETUP_PAGE = "2fa-setup-security-key"


# Enrollment -------------------------------------------------------------------------


def _setup_page(form: SecurityKeyForm, status: int = 200, error: str | None = None):
    """Render the enrollment page with a fresh registration challenge."""
    method = factor_of(session["agent_id"]).get("method")
    ceremony, unavailable = start_ceremony(
        "/v1/webauthn/registrations",
        {
            "agent_id": session["agent_id"],
            "user_name": session["login"],
            "display_name": f"{session['first_name']} {session['last_name']}".strip(),
        },
    )
    if ceremony is None:
        error = unavailable
    return render_page(
        SETUP_TEMPLATE,
        SETUP_PAGE,
        status=status,
        form=form,
        error=error,
        current_method=method,
        adding=method == "webauthn",
        webauthn_options=json.dumps(ceremony["options"]) if ceremony else None,
    )


@blueprint.route("/2fa/setup/security-key", methods=["GET", "POST"])
@requires_stage(STAGE_SETUP_2FA, STAGE_DONE)
@requires_recent_password
def twofa_setup_security_key():
    form = SecurityKeyForm()
    if not form.validate_on_submit():
        return _setup_page(form, status=400 if form.is_submitted() else 200)
    if not readable_credential(form.credential.data):
        log.warning(
            "gateway.webauthn_unreadable",
            extra={"agent_id": session["agent_id"], "ceremony": "registration"},
        )
        return _setup_page(form, status=400, error=UNREADABLE_MESSAGE)

    first_factor = (
        session.get("stage") != STAGE_DONE
        or factor_of(session["agent_id"]).get("method") is None
    )
    response = otp().post(
        "/v1/webauthn/registrations/verify",
        {
            "agent_id": session["agent_id"],
            "credential": form.credential.data,
            "name": form.name.data,
            "client_ip": client_ip(),
        },
    )
    if response.status == 429:
        return throttled_response(
            response, lambda error: _setup_page(form, status=429, error=error)
        )
    if response.status in (400, 409):
        record_audit(
            "second_factor_failed",
            {"reason": response.body.get("error"), "during": "enrollment"},
        )
        return _setup_page(form, status=400, error=response.body.get("message"))
    answer = expect(response, 200)

    if answer.get("recovery_codes") is None:
        return _key_added(answer)
    return _finish_enrollment(answer, first_factor)


def _key_added(answer: dict):
    """Audit and announce one more key of an agent whose factor already is
    security keys, then return to the security page."""
    name = (answer.get("credential") or {}).get("name", "")
    record_audit("factor_changed", {"method": "webauthn", "change": "key_added"})
    send_notice("factor_changed")
    flash(f"The security key \u201c{name}\u201d was added.")
    return redirect(url_for("agent.security"))


# Second login step ------------------------------------------------------------------


@blueprint.post("/2fa/security-key")
@requires_stage(STAGE_VERIFY_2FA)
def twofa_verify_security_key():
    if session.get("method") != "webauthn":
        # The agent's factor is not a security key: show its own verify page
        # instead of asking OTP, whose 409 the gateway would report as an outage.
        return redirect(url_for("agent.twofa_verify"))
    form = SecurityKeyVerifyForm()
    if not form.validate_on_submit():
        return _verify_page(400, "Use your security key, or enter a recovery code.")
    if not readable_credential(form.credential.data):
        log.warning(
            "gateway.webauthn_unreadable",
            extra={"agent_id": session["agent_id"], "ceremony": "authentication"},
        )
        return _verify_page(400, UNREADABLE_MESSAGE)

    response = otp().post(
        "/v1/webauthn/authentications/verify",
        {
            "agent_id": session["agent_id"],
            "credential": form.credential.data,
            "client_ip": client_ip(),
        },
    )
    if response.status == 429:
        record_audit("second_factor_throttled")
        return throttled_response(response, lambda error: _verify_page(429, error))
    if response.status in (400, 409):
        reason = response.body.get("error")
        record_audit("second_factor_failed", {"reason": reason, "method": "webauthn"})
        return _verify_page(400, response.body.get("message"))
    answer = expect(response, 200)

    record_audit("second_factor_succeeded", {"method": answer.get("method")})
    remember = bool(form.remember_device.data)
    complete_login()
    result = make_response(redirect(url_for("agent.dashboard")))
    if remember:
        _remember_browser(result)
    return result


def _verify_page(status: int, error: str | None):
    return render_page(
        "twofa_verify.html",
        "2fa-verify",
        status=status,
        error=error,
        form=VerifyForm(formdata=None),
        resend_form=ActionForm(),
        method="webauthn",
        **verify_page_context("webauthn"),
    )


# Personalization -> Security ----------------------------------------------------------


@blueprint.post("/preferences/security/security-keys/remove")
@requires_stage(STAGE_DONE)
@requires_recent_password
def security_remove_key():
    form = RemoveKeyForm()
    if not form.validate_on_submit():
        flash("That security key could not be removed: the request was invalid.")
        return redirect(url_for("agent.security"))
    agent_id = session["agent_id"]
    response = otp().delete(f"/v1/webauthn/credentials/{agent_id}/{form.key_id.data}")
    if response.status in (404, 409):
        flash(response.body.get("message", "That security key was not removed."))
        return redirect(url_for("agent.security"))
    expect(response, 204)
    record_audit("factor_changed", {"method": "webauthn", "change": "key_removed"})
    send_notice("factor_changed")
    flash("The security key was removed. It can no longer sign you in.")
    return redirect(url_for("agent.security"))
