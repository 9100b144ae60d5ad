"""A used second-factor code entered again: rejected, audited, mailed to the agent."""

from __future__ import annotations

import time

from support.flows import enroll_email, first_login
from support.web import Browser, is_token_mail, text_part, token_in, totp_now

NOTICE_SUBJECT = "A used gatehouse sign-in code was entered again"


def is_replay_notice(mail) -> bool:
    return mail.message["Subject"] == NOTICE_SUBJECT


def replay_notices(smtp, agent) -> list:
    return [mail for mail in smtp.mails_to(agent.email) if is_replay_notice(mail)]


def wait_for_security_event(browser: Browser, text: str, timeout: float = 15.0):
    """Reload the security page until its event list shows ``text``. Identity
    stores the gateway's audit events from a queue a moment later."""
    deadline = time.monotonic() + timeout
    while True:
        page = browser.get("/agent/preferences/security")
        if text in page.text or time.monotonic() > deadline:
            return page
        time.sleep(0.3)


def test_replayed_totp_code_reported(stack, smtp, app_agent):
    agent = app_agent
    code = totp_now(agent.secret, offset_steps=1)
    owner = Browser(stack.url)
    assert owner.login(agent.login, agent.password).name == "2fa-verify"
    assert owner.post("/agent/2fa", {"token": code}).name == "dashboard"

    intruder = Browser(stack.url)
    assert intruder.login(agent.login, agent.password).name == "2fa-verify"
    first_replay = intruder.post("/agent/2fa", {"token": code})

    assert first_replay.status == 400
    assert first_replay.name == "2fa-verify"
    assert "already used" in first_replay.text
    notice = smtp.wait_for(agent.email, matching=is_replay_notice)[0]
    body = " ".join(text_part(notice.message).split())
    assert "change your password now" in body
    assert code not in text_part(notice.message)

    second_replay = intruder.post("/agent/2fa", {"token": code})
    assert second_replay.status == 400
    # The second replay within the hour is audited but mails nothing more. The
    # first notice took the whole path already, so a few seconds are plenty.
    time.sleep(3)
    assert len(replay_notices(smtp, agent)) == 1
    page = wait_for_security_event(owner, "A code was used twice")
    assert page.text.count("A code was used twice") == 2
    assert intruder.get("/agent/dashboard").name == "2fa-verify"


def test_replayed_email_token_reported(stack, smtp, make_agent):
    agent = make_agent()
    owner = Browser(stack.url)
    first_login(owner, agent)
    assert enroll_email(owner, smtp, agent).name == "dashboard"
    owner.post("/agent/logout", {})
    tokens_before = len([m for m in smtp.mails_to(agent.email) if is_token_mail(m)])

    assert owner.login(agent.login, agent.password).name == "2fa-verify"
    mail = smtp.wait_for(agent.email, count=tokens_before + 1, matching=is_token_mail)
    code = token_in(mail[-1].message)
    assert owner.post("/agent/2fa", {"token": code}).name == "dashboard"

    intruder = Browser(stack.url)
    assert intruder.login(agent.login, agent.password).name == "2fa-verify"
    replay = intruder.post("/agent/2fa", {"token": code})

    assert replay.status == 400
    assert "already used" in replay.text
    smtp.wait_for(agent.email, matching=is_replay_notice)
    page = wait_for_security_event(owner, "A code was used twice")
    assert "A code was used twice" in page.text
