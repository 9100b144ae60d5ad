"""First-login steps: the initial password change and the second-factor setup.

The setup pages also serve a signed-in agent who changes method from
Personalization → Security. The new factor replaces the old one only after it is
confirmed.
"""

from __future__ import annotations

import logging

from flask import current_app, flash, redirect, session, url_for

from .blueprint import blueprint
from .flow import (
    BREACHED_PASSWORD,
    STAGE_CHANGE_PASSWORD,
    STAGE_DONE,
    STAGE_SETUP_2FA,
    advance_after_password,
    client_ip,
    complete_login,
    expect,
    factor_of,
    identity,
    otp,
    record_audit,
    redirect_to_stage,
    render_page,
    requires_recent_password,
    requires_stage,
    resend_wait_message,
    send_notice,
    throttled_page,
    user_agent,
)
from .forms import MethodForm, NewPasswordForm, ResendForm, TokenForm
from .security_keys import unavailable_reason

log = logging.getLogger(__name__)


@blueprint.route("/password/change", methods=["GET", "POST"])
@requires_stage(STAGE_CHANGE_PASSWORD)
def password_change():
    form = NewPasswordForm()
    if not form.validate_on_submit():
        return render_page(
            "password_change.html",
            "password-change",
            status=400 if form.is_submitted() else 200,
            form=form,
        )

    agent_id = session["agent_id"]
    response = identity().post(
        f"/v1/agents/{agent_id}/password",
        {
            "new_password": form.new_password.data,
            "new_password_confirm": form.new_password_confirm.data,
            "client_ip": client_ip(),
            "user_agent": user_agent(),
        },
    )
    if response.status in (400, 403):
        return render_page(
            "password_change.html",
            "password-change",
            status=400,
            form=form,
            error=response.body.get("message"),
        )
    expect(response, 200)

    current_app.extensions["session_store"].end_all(agent_id, session.session_id)
    session.rotate()
    if session.pop(BREACHED_PASSWORD, False):
        # The second factor was already passed before this change.
        complete_login()
    else:
        advance_after_password()
    flash("Your password has been changed.")
    return redirect_to_stage()


@blueprint.route("/2fa/setup", methods=["GET", "POST"])
@requires_stage(STAGE_SETUP_2FA, STAGE_DONE)
@requires_recent_password
def twofa_setup():
    form = MethodForm()
    if not form.validate_on_submit():
        return render_page(
            "twofa_setup.html",
            "2fa-setup",
            status=400 if form.is_submitted() else 200,
            form=form,
            encryption=_encryption_preview(),
            security_keys_unavailable=unavailable_reason(),
        )
    if form.method.data == "app":
        return redirect(url_for("agent.twofa_setup_app"))
    if form.method.data == "webauthn":
        return redirect(url_for("agent.twofa_setup_security_key"))
    return _start_email_enrollment(bool(form.email_security.data))


def _encryption_preview() -> str | None:
    address = session["email"]
    answer = otp().get(f"/v1/encryption/{address}")
    return answer.body.get("method") if answer.status == 200 else None


def _start_email_enrollment(email_security: bool):
    response = otp().post(
        "/v1/enrollments/email",
        {
            "agent_id": session["agent_id"],
            "email": session["email"],
            "first_name": session["first_name"],
            "email_security": email_security,
        },
    )
    if response.status == 429:
        flash(resend_wait_message(response.body, "A code was sent moments ago"))
    elif response.status == 503:
        flash("The code could not be sent. Please try again shortly.")
        return redirect(url_for("agent.twofa_setup"))
    else:
        answer = expect(response, 202)
        session["email_enrollment"] = {
            "email_security": email_security,
            "encryption": answer.get("encryption") if email_security else None,
            "ttl_seconds": answer.get("ttl_seconds"),
        }
    return redirect(url_for("agent.twofa_setup_email"))


def _finish_enrollment(answer: dict, first_factor: bool):
    """Store the new factor's outcome in the session and move on.

    ``first_factor`` is True when the agent had no factor before this one, which
    sends the ``factor_enrolled`` notice instead of ``factor_changed``.
    """
    method = answer.get("method")
    session["recovery_codes"] = answer.get("recovery_codes")
    session.pop("email_enrollment", None)
    session.pop("app_enrollment", None)
    event = "factor_enrolled" if first_factor else "factor_changed"
    record_audit(event, {"method": method})
    send_notice(event)
    if session.get("stage") == STAGE_DONE:
        flash("Your second factor has been changed.")
        return redirect(url_for("agent.security"))
    complete_login()
    return redirect(url_for("agent.dashboard"))


def _confirm(path: str, form: TokenForm, template: str, page: str, **context):
    # During the login's set-up stage the agent has no factor by definition.
    first_factor = (
        session.get("stage") != STAGE_DONE
        or factor_of(session["agent_id"]).get("method") is None
    )
    response = otp().post(
        path,
        {
            "agent_id": session["agent_id"],
            "token": form.token.data,
            "client_ip": client_ip(),
        },
    )
    if response.status == 429:
        return throttled_page(
            template, page, response.body.get("retry_after", 60), form=form, **context
        )
    if response.status == 400:
        if response.body.get("error") == "expired_token" and page == "2fa-setup-app":
            session["app_enrollment_expired"] = True
        record_audit(
            "second_factor_failed",
            {"reason": response.body.get("error"), "during": "enrollment"},
        )
        return render_page(
            template,
            page,
            status=400,
            form=form,
            error=response.body.get("message", "Invalid code."),
            **context,
        )
    return _finish_enrollment(expect(response, 200), first_factor)


@blueprint.route("/2fa/setup/email", methods=["GET", "POST"])
@requires_stage(STAGE_SETUP_2FA, STAGE_DONE)
@requires_recent_password
def twofa_setup_email():
    enrollment = session.get("email_enrollment")
    if enrollment is None:
        return redirect(url_for("agent.twofa_setup"))
    form = TokenForm()
    resend_form = ResendForm(email_security=enrollment["email_security"])
    context = {"resend_form": resend_form, "enrollment": enrollment}
    if not form.validate_on_submit():
        return render_page(
            "twofa_setup_email.html",
            "2fa-setup-email",
            status=400 if form.is_submitted() else 200,
            form=form,
            **context,
        )
    return _confirm(
        "/v1/enrollments/email/confirm",
        form,
        "twofa_setup_email.html",
        "2fa-setup-email",
        **context,
    )


@blueprint.post("/2fa/setup/email/resend")
@requires_stage(STAGE_SETUP_2FA, STAGE_DONE)
@requires_recent_password
def twofa_setup_email_resend():
    form = ResendForm()
    if not form.validate_on_submit():
        return redirect(url_for("agent.twofa_setup_email"))
    return _start_email_enrollment(bool(form.email_security.data))


@blueprint.route("/2fa/setup/app", methods=["GET", "POST"])
@requires_stage(STAGE_SETUP_2FA, STAGE_DONE)
@requires_recent_password
def twofa_setup_app():
    form = TokenForm()
    enrollment = session.get("app_enrollment")
    if form.validate_on_submit() and enrollment is not None:
        response = _confirm(
            "/v1/enrollments/app/confirm",
            form,
            "twofa_setup_app.html",
            "2fa-setup-app",
            enrollment=enrollment,
        )
        if session.get("app_enrollment_expired"):
            session.pop("app_enrollment_expired")
            session.pop("app_enrollment", None)
            flash("The set-up took too long. Scan the new code below.")
            return redirect(url_for("agent.twofa_setup_app"))
        return response

    if enrollment is None:
        answer = expect(
            otp().post(
                "/v1/enrollments/app",
                {
                    "agent_id": session["agent_id"],
                    "account_name": session["login"],
                },
            ),
            200,
        )
        # The session keeps what the page shows, so a reload or a mistyped code
        # shows the same secret. The OTP service keeps the pending secret with the
        # same TTL, and only a confirmed first code enrolls it.
        enrollment = {
            "secret_groups": _group(answer["secret"]),
            "otpauth_uri": answer["otpauth_uri"],
            "qr_svg": answer["qr_svg"],
            "ttl_seconds": answer.get("ttl_seconds"),
        }
        session["app_enrollment"] = enrollment
    return render_page(
        "twofa_setup_app.html",
        "2fa-setup-app",
        status=400 if form.is_submitted() else 200,
        form=form,
        enrollment=enrollment,
    )


def _group(secret: str, size: int = 4) -> str:
    return " ".join(secret[i : i + size] for i in range(0, len(secret), size))
