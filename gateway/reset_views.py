"""Forgotten password: the request form and the page behind the mailed link.

The link's token moves from the URL into the session at once, so it does not stay
in the address bar, the history or a proxy log, and the form page never carries it.
"""

from __future__ import annotations

import logging
import re

from flask import current_app, flash, redirect, session, url_for

from .blueprint import blueprint
from .flow import (
    client_ip,
    expect,
    identity,
    otp,
    render_page,
    throttled_page,
    user_agent,
)
from .forms import ForgotPasswordForm, NewPasswordForm

log = logging.getLogger(__name__)

MAX_RESET_TOKEN_LENGTH = 128
# identity issues secrets.token_urlsafe tokens. Anything else is not a token, and
# a "..", "?" or "#" in it would change the internal URL it is put into.
RESET_TOKEN = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_RESET_TOKEN_LENGTH}}}")
FORGOT_ANSWER = (
    "If this user name belongs to an agent, a mail with a link to set a new "
    "password is on its way. The link works for 30 minutes."
)


@blueprint.route("/password/forgot", methods=["GET", "POST"])
def password_forgot():
    form = ForgotPasswordForm()
    if not form.validate_on_submit():
        return render_page(
            "password_forgot.html",
            "password-forgot",
            status=400 if form.is_submitted() else 200,
            form=form,
        )
    base = current_app.config["PUBLIC_URL"].rstrip("/") + "/agent/password/reset/"
    response = identity().post(
        "/v1/password-resets",
        {
            "login": form.login.data,
            "reset_url_base": base,
            "client_ip": client_ip(),
            "user_agent": user_agent(),
        },
    )
    if response.status == 429:
        return throttled_page(
            "password_forgot.html",
            "password-forgot",
            response.body.get("retry_after", 60),
            form=form,
        )
    expect(response, 202)
    return render_page(
        "password_forgot.html",
        "password-forgot",
        form=ForgotPasswordForm(formdata=None),
        sent=FORGOT_ANSWER,
    )


@blueprint.get("/password/reset/<token>")
def password_reset_link(token: str):
    if not RESET_TOKEN.fullmatch(token):
        return _invalid_link()
    session["reset_token"] = token
    return redirect(url_for("agent.password_reset"))


def _invalid_link():
    session.pop("reset_token", None)
    return render_page(
        "password_reset.html", "password-reset", status=404, form=None, invalid=True
    )


@blueprint.route("/password/reset", methods=["GET", "POST"])
def password_reset():
    token = session.get("reset_token")
    if not token:
        return _invalid_link()
    check = identity().get(f"/v1/password-resets/{token}")
    if check.status == 404:
        return _invalid_link()
    agent_id = expect(check, 200)["agent_id"]

    form = NewPasswordForm()
    if not form.validate_on_submit():
        return render_page(
            "password_reset.html",
            "password-reset",
            status=400 if form.is_submitted() else 200,
            form=form,
        )
    response = identity().post(
        f"/v1/password-resets/{token}",
        {
            "new_password": form.new_password.data,
            "new_password_confirm": form.new_password_confirm.data,
            "client_ip": client_ip(),
            "user_agent": user_agent(),
        },
    )
    if response.status == 404:
        return _invalid_link()
    if response.status == 400:
        return render_page(
            "password_reset.html",
            "password-reset",
            status=400,
            form=form,
            error=response.body.get("message"),
        )
    expect(response, 200)

    ended = current_app.extensions["session_store"].end_all(agent_id)
    expect(otp().delete(f"/v1/devices/{agent_id}"), 204)
    log.info(
        "gateway.password_reset", extra={"agent_id": agent_id, "sessions_ended": ended}
    )
    session.clear()
    session.rotate()
    flash("Your password has been changed. Sign in with the new password.")
    return redirect(url_for("agent.login"))
