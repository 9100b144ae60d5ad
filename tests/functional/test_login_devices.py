"""Login device cookies, sign-in notices and session controls seen from browsers.

This module runs its own stack: a per-login window of 3 failures, a device window
of 3 failures, and a re-authentication window of 5 seconds.
"""

import email
import email.policy
import os
import re
import time

import pytest
from support.crypto import GpgHome
from support.flows import Agent, enroll_app, first_login, unique_login
from support.smtp import SmtpSink
from support.stack import LocalStack
from support.web import TOKEN_PATTERN, Browser, text_part, totp_now

REAUTHENTICATION_WINDOW = 5
DEVICE_ENV = {
    "IDENTITY_IP_MAX_FAILURES": "10000",
    "IDENTITY_GLOBAL_MAX_FAILURES": "100000",
    "OTP_THROTTLE_IP_MAX": "10000",
    "OTP_THROTTLE_GLOBAL_MAX": "100000",
    "IDENTITY_LOGIN_MAX_FAILURES": "3",
    "IDENTITY_LOGIN_WINDOW": "300",
    "IDENTITY_DEVICE_MAX_FAILURES": "3",
    "IDENTITY_DEVICE_WINDOW": "300",
    "GATEWAY_REAUTHENTICATION_WINDOW": str(REAUTHENTICATION_WINDOW),
}
RECOVERY_CODE = re.compile(r"<code>([a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4})</code>")
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)

# One row of the trusted-browser table: handle, two times, then the browser.
REMEMBERED_ROW = re.compile(
    r'data-remembered-browser="([0-9a-f]+)">\s*<td>[^<]*</td>\s*<td>[^<]*</td>'
    r"\s*<td>([^<]*)</td>"
)


@pytest.fixture(scope="module")
def device_stack():
    if os.environ.get("GATEHOUSE_TARGET_URL"):
        pytest.skip("needs its own local stack with tight limits")
    sink = SmtpSink().start()
    stack = LocalStack(sink.port, extra_env=DEVICE_ENV).start()
    stack.smtp = sink
    yield stack
    stack.stop()
    sink.stop()


def _browser(stack, user_agent=FIREFOX) -> Browser:
    browser = Browser(stack.url)
    browser.session.headers["User-Agent"] = user_agent
    return browser


def _add_agent(stack) -> Agent:
    login = unique_login("device")
    agent = Agent(login, f"{login}@example.test", "Dee", "Vice", "initial password 1")
    result = stack.agentctl(
        "agent",
        "add",
        login,
        "--email",
        agent.email,
        "--first-name",
        agent.first_name,
        "--last-name",
        agent.last_name,
        "--password",
        agent.password,
    )
    assert result.returncode == 0, result.stderr
    return agent


def _enrolled_agent(stack, browser) -> Agent:
    """Create an agent, sign in with ``browser`` and set up the app; log out."""
    agent = _add_agent(stack)
    first_login(browser, agent)
    agent.secret, page = enroll_app(browser)
    assert page.name == "dashboard", page
    agent.codes = SecondStepCodes(agent.secret, RECOVERY_CODE.findall(page.text))
    browser.post("/agent/logout", {})
    return agent


class SecondStepCodes:
    """Codes for one agent's later second steps: the next TOTP step once (the
    enrollment used the current one and replays are rejected), then recovery
    codes, so a test needs no 30-second wait."""

    def __init__(self, secret: str, recovery_codes: list[str]) -> None:
        assert len(recovery_codes) == 10, recovery_codes
        self._secret = secret
        self._recovery_codes = list(recovery_codes)
        self._totp_used = False

    def next(self) -> str:
        if not self._totp_used:
            self._totp_used = True
            return totp_now(self._secret, 1)
        return self._recovery_codes.pop()


def _second_step(browser, agent, remember=False):
    data = {"token": agent.codes.next()}
    if remember:
        data["remember_device"] = "y"
    return browser.post("/agent/2fa", data)


def _subjects(stack, agent, words):
    return [
        mail
        for mail in stack.smtp.mails_to(agent.email)
        if words in str(mail.message["Subject"])
    ]


def test_attacker_cannot_lock_out_known_browser(device_stack):
    home = _browser(device_stack)
    agent = _enrolled_agent(device_stack, home)
    attacker = _browser(device_stack)
    statuses = [attacker.login(agent.login, "a wrong guess").status for _ in range(3)]

    fresh = _browser(device_stack).login(agent.login, agent.password)
    known = home.login(agent.login, agent.password)

    assert statuses[-1] == 429
    assert attacker.login(agent.login, agent.password).status == 429
    assert fresh.status == 429
    assert fresh.name == "login"
    assert int(fresh.response.headers["Retry-After"]) >= 1
    assert known.status == 200
    assert known.name == "2fa-verify"
    assert _second_step(home, agent).name == "dashboard"


def test_known_browser_locked_out_on_its_own(device_stack):
    home = _browser(device_stack)
    agent = _enrolled_agent(device_stack, home)
    other_home = _browser(device_stack, CHROME)
    other_home.login(agent.login, agent.password)
    assert _second_step(other_home, agent).name == "dashboard"
    other_home.post("/agent/logout", {})

    for _ in range(3):
        home.login(agent.login, "a typo of mine")

    assert home.login(agent.login, agent.password).status == 429
    assert other_home.login(agent.login, agent.password).name == "2fa-verify"
    fresh = _browser(device_stack).login(agent.login, agent.password)
    assert fresh.name == "2fa-verify"


def test_enrollment_and_new_browser_notices(device_stack):
    home = _browser(device_stack)
    agent = _enrolled_agent(device_stack, home)
    smtp = device_stack.smtp

    enrolled = smtp.wait_for(
        agent.email, matching=lambda mail: "was added" in mail.message["Subject"]
    )
    new_browser = smtp.wait_for(
        agent.email, matching=lambda mail: "New sign-in" in mail.message["Subject"]
    )

    assert len(enrolled) == 1
    assert len(new_browser) == 1
    body = text_part(new_browser[0].message)
    assert "Browser: Firefox on Linux" in body
    assert "Time: " in body
    assert "127.0.0.1" not in new_browser[0].raw.decode()


def test_new_browser_notices_do_not_flood(device_stack):
    home = _browser(device_stack)
    agent = _enrolled_agent(device_stack, home)
    device_stack.smtp.wait_for(
        agent.email, matching=lambda mail: "New sign-in" in mail.message["Subject"]
    )

    other = _browser(device_stack, CHROME)
    other.login(agent.login, agent.password)
    assert _second_step(other, agent).name == "dashboard"
    home.login(agent.login, agent.password)
    assert _second_step(home, agent).name == "dashboard"
    # A notice that was wrongly queued would arrive within a few seconds.
    time.sleep(3)

    assert len(_subjects(device_stack, agent, "New sign-in")) == 1


def test_remembered_browser_notice(device_stack):
    home = _browser(device_stack, CHROME)
    agent = _enrolled_agent(device_stack, home)
    home.login(agent.login, agent.password)

    assert _second_step(home, agent, remember=True).name == "dashboard"

    [mail] = device_stack.smtp.wait_for(
        agent.email, matching=lambda mail: "remembered" in mail.message["Subject"]
    )
    assert "Browser: Chrome on Windows" in text_part(mail.message)


def _confirm_password(browser, agent):
    page = browser.get("/agent/preferences/security/confirm")
    assert page.name == "reauth"
    page = browser.post(
        "/agent/preferences/security/confirm", {"current_password": agent.password}
    )
    assert page.name == "security", page


def test_ending_a_session_needs_recent_password(device_stack):
    first = _browser(device_stack)
    agent = _enrolled_agent(device_stack, first)
    first.login(agent.login, agent.password)
    _second_step(first, agent)
    second = _browser(device_stack, CHROME)
    second.login(agent.login, agent.password)
    assert _second_step(second, agent).name == "dashboard"
    time.sleep(REAUTHENTICATION_WINDOW + 0.5)

    page = first.get("/agent/preferences/security")
    handles = [field["value"] for field in page.inputs if field.get("name") == "handle"]
    reauth_page = first.post(
        "/agent/preferences/security/sessions/end", {"handle": handles[0]}
    )

    assert reauth_page.name == "reauth"
    assert second.get("/agent/dashboard").name == "dashboard"
    _confirm_password(first, agent)
    ended = first.post(
        "/agent/preferences/security/sessions/end", {"handle": handles[0]}
    )
    assert "That session was signed out." in ended.text
    assert second.get("/agent/dashboard").name == "login"


def test_sign_out_everywhere_needs_recent_password(device_stack):
    browser = _browser(device_stack)
    agent = _enrolled_agent(device_stack, browser)
    browser.login(agent.login, agent.password)
    _second_step(browser, agent)
    time.sleep(REAUTHENTICATION_WINDOW + 0.5)
    browser.get("/agent/preferences/security")

    reauth_page = browser.post("/agent/preferences/security/sign-out-everywhere", {})

    assert reauth_page.name == "reauth"
    assert browser.get("/agent/dashboard").name == "dashboard"
    _confirm_password(browser, agent)
    assert browser.post("/agent/preferences/security/sign-out-everywhere", {}).name == (
        "login"
    )


def test_forget_one_remembered_browser(device_stack):
    firefox = _browser(device_stack)
    agent = _enrolled_agent(device_stack, firefox)
    chrome = _browser(device_stack, CHROME)
    for browser in (firefox, chrome):
        browser.login(agent.login, agent.password)
        assert _second_step(browser, agent, remember=True).name == "dashboard"

    _confirm_password(firefox, agent)
    page = firefox.get("/agent/preferences/security")
    rows = dict(
        (browser, handle) for handle, browser in REMEMBERED_ROW.findall(page.text)
    )
    assert sorted(rows) == ["Chrome on Windows", "Firefox on Linux"]
    page = firefox.post(
        "/agent/preferences/security/forget-browser",
        {"handle": rows["Chrome on Windows"]},
    )

    assert "That browser is no longer trusted" in page.text
    remaining = [browser for _, browser in REMEMBERED_ROW.findall(page.text)]
    assert remaining == ["Firefox on Linux"]
    for browser in (firefox, chrome):
        browser.post("/agent/logout", {})
    assert chrome.login(agent.login, agent.password).name == "2fa-verify"
    assert firefox.login(agent.login, agent.password).name == "dashboard"


def _pgp_text(mail, gpg: GpgHome) -> str:
    message = mail.message
    assert message.get_content_type() == "multipart/encrypted"
    armored = list(message.iter_parts())[1].get_payload(decode=True)
    inner = email.message_from_bytes(gpg.decrypt(armored), policy=email.policy.default)
    return inner.get_body(preferencelist=("plain",)).get_content()


def test_notices_encrypted_with_email_security(device_stack, tmp_path):
    agent = _add_agent(device_stack)
    smtp = device_stack.smtp
    gpg = GpgHome(tmp_path / "gnupg")
    fingerprint = gpg.generate(f"Dee Vice <{agent.email}>")
    key_file = gpg.export(fingerprint, tmp_path / "key.asc")
    assert device_stack.agentctl("pgp", "import", str(key_file)).returncode == 0
    browser = _browser(device_stack)
    first_login(browser, agent)
    browser.post("/agent/2fa/setup", {"method": "email", "email_security": "on"})
    [token_mail] = smtp.wait_for(
        agent.email, matching=lambda mail: "sign-in code" in mail.message["Subject"]
    )
    [token] = TOKEN_PATTERN.findall(_pgp_text(token_mail, gpg))

    assert browser.post("/agent/2fa/setup/email", {"token": token}).name == "dashboard"

    [enrolled] = smtp.wait_for(
        agent.email, matching=lambda mail: "was added" in mail.message["Subject"]
    )
    [new_browser] = smtp.wait_for(
        agent.email, matching=lambda mail: "New sign-in" in mail.message["Subject"]
    )
    assert "two-factor authentication" in _pgp_text(enrolled, gpg)
    assert "Browser: Firefox on Linux" in _pgp_text(new_browser, gpg)
    assert b"Firefox" not in new_browser.raw
