"""Steps of the login flow that many functional tests repeat."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass

from support.smtp import SmtpSink
from support.web import Browser, is_token_mail, token_in, totp_now

_sequence = itertools.count(1)


def unique_login(stem: str = "agent") -> str:
    return f"{stem}{next(_sequence)}-{uuid.uuid4().hex[:6]}"


@dataclass
class Agent:
    login: str
    email: str
    first_name: str
    last_name: str
    password: str
    agent_id: int | None = None
    secret: str | None = None


NEW_PASSWORD = "correct horse battery staple 42"


def first_login(browser: Browser, agent: Agent, new_password: str = NEW_PASSWORD):
    """Sign in for the first time and replace the initial password."""
    page = browser.login(agent.login, agent.password)
    assert page.name == "password-change", page
    page = browser.post(
        "/agent/password/change",
        {"new_password": new_password, "new_password_confirm": new_password},
    )
    agent.password = new_password
    return page


def enroll_app(browser: Browser) -> tuple[str, object]:
    """Set up the authenticator app from the 2fa-setup page; return its secret."""
    page = browser.post("/agent/2fa/setup", {"method": "app"})
    assert page.name == "2fa-setup-app", page
    uri = page.attribute("data-otpauth-uri")
    secret = uri.split("secret=")[1].split("&")[0]
    page = browser.post("/agent/2fa/setup/app", {"token": totp_now(secret)})
    return secret, page


def enroll_email(
    browser: Browser, smtp: SmtpSink, agent: Agent, email_security: bool = False
):
    data = {"method": "email"}
    if email_security:
        data["email_security"] = "on"
    before = len([m for m in smtp.mails_to(agent.email) if is_token_mail(m)])
    page = browser.post("/agent/2fa/setup", data)
    assert page.name == "2fa-setup-email", page
    mail = smtp.wait_for(agent.email, count=before + 1, matching=is_token_mail)[-1]
    return browser.post("/agent/2fa/setup/email", {"token": token_in(mail.message)})
