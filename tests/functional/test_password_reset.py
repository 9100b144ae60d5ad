"""Forgot password: same response for everyone, a single-use link, sessions ended."""

import re

from support.flows import NEW_PASSWORD, enroll_app, first_login, unique_login
from support.web import Browser, is_reset_mail, reset_link_in, totp_now

RESET_PASSWORD = "a freshly reset password 77"


def _request_reset(browser: Browser, login: str):
    browser.get("/agent/password/forgot")
    return browser.post("/agent/password/forgot", {"login": login})


def _without_csrf(page) -> str:
    return page.text.replace(page.csrf_token, "")


def test_forgot_page_fields(browser):
    page = browser.get("/agent/password/forgot")

    assert page.name == "password-forgot"
    assert page.input_named("login")["autocomplete"] == "username"


def test_forgot_answer_identical_for_unknown_login(stack, make_agent, smtp):
    agent = make_agent()

    known = _request_reset(Browser(stack.url), agent.login)
    unknown = _request_reset(Browser(stack.url), unique_login("nobody"))

    assert known.status == unknown.status == 200
    assert known.name == unknown.name == "password-forgot"
    assert _without_csrf(known) == _without_csrf(unknown)
    smtp.wait_for(agent.email, matching=is_reset_mail)


def test_reset_link_sets_password_once(stack, smtp, app_agent):
    _request_reset(Browser(stack.url), app_agent.login)
    link = reset_link_in(
        smtp.wait_for(app_agent.email, matching=is_reset_mail)[-1].message
    )
    assert re.match(r"^http://127\.0\.0\.1:\d+/agent/password/reset/", link)

    browser = Browser(stack.url)
    page = browser.get(link)
    assert page.name == "password-reset"
    assert page.input_named("new_password")["autocomplete"] == "new-password"
    assert "/password/reset/" not in page.url
    page = browser.post(
        "/agent/password/reset",
        {"new_password": RESET_PASSWORD, "new_password_confirm": RESET_PASSWORD},
    )
    assert page.name == "login"

    reused = Browser(stack.url).get(link)
    assert reused.status == 404
    assert reused.name == "password-reset"
    assert "invalid or has expired" in reused.text
    assert Browser(stack.url).login(app_agent.login, NEW_PASSWORD).status == 401
    second = Browser(stack.url)
    assert second.login(app_agent.login, RESET_PASSWORD).name == "2fa-verify"
    page = second.post("/agent/2fa", {"token": totp_now(app_agent.secret, 1)})
    assert page.name == "dashboard"


def test_reset_ends_other_sessions(stack, smtp, make_agent):
    agent = make_agent()
    signed_in = Browser(stack.url)
    first_login(signed_in, agent)
    enroll_app(signed_in)
    assert signed_in.get("/agent/dashboard").name == "dashboard"

    _request_reset(Browser(stack.url), agent.login)
    link = reset_link_in(smtp.wait_for(agent.email, matching=is_reset_mail)[-1].message)
    resetter = Browser(stack.url)
    resetter.get(link)
    resetter.post(
        "/agent/password/reset",
        {"new_password": RESET_PASSWORD, "new_password_confirm": RESET_PASSWORD},
    )

    assert signed_in.get("/agent/dashboard").name == "login"


def test_reset_rejects_weak_password(stack, smtp, make_agent):
    agent = make_agent()
    _request_reset(Browser(stack.url), agent.login)
    link = reset_link_in(smtp.wait_for(agent.email, matching=is_reset_mail)[-1].message)
    browser = Browser(stack.url)
    browser.get(link)

    page = browser.post(
        "/agent/password/reset",
        {"new_password": "short", "new_password_confirm": "short"},
    )

    assert page.status == 400
    assert page.name == "password-reset"
    page = browser.post(
        "/agent/password/reset",
        {"new_password": RESET_PASSWORD, "new_password_confirm": RESET_PASSWORD},
    )
    assert page.name == "login"


def test_unknown_reset_link_rejected(browser):
    page = browser.get("/agent/password/reset/not-a-real-token")

    assert page.status == 404
    assert page.name == "password-reset"
    assert "new_password" not in page.text
