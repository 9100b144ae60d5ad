"""Throttling seen from the browser: 429 with Retry-After, released by time or unlock.

This module runs its own stack with tight limits and short windows.
"""

import os
import time

import pytest
from support.flows import Agent, enroll_app, first_login, unique_login
from support.smtp import SmtpSink
from support.stack import LocalStack
from support.web import Browser

TIGHT_LIMITS = {
    "IDENTITY_LOGIN_MAX_FAILURES": "3",
    "IDENTITY_LOGIN_WINDOW": "4",
    "IDENTITY_RESET_LOGIN_MAX": "2",
    "IDENTITY_RESET_WINDOW": "4",
    "OTP_THROTTLE_AGENT_SHORT_MAX": "3",
    "OTP_THROTTLE_AGENT_SHORT_WINDOW": "4",
}


@pytest.fixture(scope="module")
def tight_stack():
    if os.environ.get("GATEHOUSE_TARGET_URL"):
        pytest.skip("needs its own local stack with tight limits")
    sink = SmtpSink().start()
    stack = LocalStack(sink.port, extra_env=TIGHT_LIMITS).start()
    stack.smtp = sink
    yield stack
    stack.stop()
    sink.stop()


def _add_agent(stack):
    login = unique_login()
    password = "initial password 1"
    result = stack.agentctl(
        "agent",
        "add",
        login,
        "--email",
        f"{login}@example.test",
        "--first-name",
        "T",
        "--last-name",
        "Hrottle",
        "--password",
        password,
    )
    assert result.returncode == 0, result.stderr
    return login, password


def test_login_throttled_then_released(tight_stack):
    login, password = _add_agent(tight_stack)
    browser = Browser(tight_stack.url)
    for _ in range(3):
        browser.login(login, "wrong password guess")

    throttled = browser.login(login, password)

    assert throttled.status == 429
    assert throttled.name == "login"
    assert 1 <= int(throttled.response.headers["Retry-After"]) <= 4
    assert "Please wait" in throttled.text
    time.sleep(int(throttled.response.headers["Retry-After"]) + 0.5)
    assert browser.login(login, password).name == "password-change"


def test_unknown_login_throttled_the_same(tight_stack):
    login = unique_login("ghost")
    browser = Browser(tight_stack.url)
    for _ in range(3):
        browser.login(login, "wrong password guess")

    assert browser.login(login, "wrong password guess").status == 429


def test_agentctl_unlock_lifts_throttle(tight_stack):
    login, password = _add_agent(tight_stack)
    browser = Browser(tight_stack.url)
    for _ in range(4):
        browser.login(login, "wrong password guess")
    assert browser.login(login, password).status == 429

    result = tight_stack.agentctl("agent", "unlock", login)

    assert result.returncode == 0, result.stderr
    assert browser.login(login, password).name == "password-change"


def test_forgot_password_throttled_per_login(tight_stack):
    login, _ = _add_agent(tight_stack)
    browser = Browser(tight_stack.url)
    statuses = []
    for _ in range(4):
        browser.get("/agent/password/forgot")
        statuses.append(browser.post("/agent/password/forgot", {"login": login}).status)

    assert statuses[0] == 200
    assert 429 in statuses


def test_second_factor_throttled_then_released(tight_stack):
    login, password = _add_agent(tight_stack)
    browser = Browser(tight_stack.url)
    agent = Agent(login, f"{login}@example.test", "T", "Hrottle", password)
    first_login(browser, agent)
    secret, _ = enroll_app(browser)
    browser.post("/agent/logout", {})
    browser.login(login, agent.password)
    for _ in range(3):
        browser.post("/agent/2fa", {"token": "000000"})

    page = browser.post("/agent/2fa", {"token": "000000"})

    assert page.status == 429
    assert page.name == "2fa-verify"
    assert int(page.response.headers["Retry-After"]) >= 1
