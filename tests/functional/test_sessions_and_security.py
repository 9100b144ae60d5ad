"""Sessions, CSRF, the security page, internal credentials and health probes."""

import time

import pytest
import requests
from gatehouse.common.servicekeys import generate_signing_key
from support.flows import NEW_PASSWORD, enroll_app, first_login
from support.signing import ServiceAuth
from support.web import Browser, is_token_mail, token_in, totp_now

FORM_POSTS = [
    ("/agent", {"login": "a", "password": "b"}),
    ("/agent/password/forgot", {"login": "a"}),
    (
        "/agent/password/change",
        {"new_password": "x" * 12, "new_password_confirm": "x" * 12},
    ),
    (
        "/agent/password/reset",
        {"new_password": "x" * 12, "new_password_confirm": "x" * 12},
    ),
    ("/agent/2fa/setup", {"method": "app"}),
    ("/agent/2fa/setup/email", {"token": "123456"}),
    ("/agent/2fa/setup/app", {"token": "123456"}),
    ("/agent/2fa", {"token": "123456"}),
    ("/agent/2fa/resend", {}),
    ("/agent/logout", {}),
    ("/agent/preferences/security/password", {"current_password": "x"}),
    ("/agent/preferences/security/recovery-codes", {}),
    ("/agent/preferences/security/forget-browsers", {}),
    ("/agent/preferences/security/forget-browser", {"handle": "x"}),
    ("/agent/preferences/security/sign-out-everywhere", {}),
    ("/agent/preferences/security/sessions/end", {"handle": "x"}),
]


def _signed_in(stack, make_agent):
    agent = make_agent(first_name="Grace", last_name="Hopper")
    browser = Browser(stack.url)
    first_login(browser, agent)
    agent.secret, page = enroll_app(browser)
    assert page.name == "dashboard"
    return agent, browser


def test_every_form_rejects_missing_csrf(stack, make_agent):
    _, browser = _signed_in(stack, make_agent)

    for path, data in FORM_POSTS:
        page = browser.post(path, data, csrf=False)
        assert page.status == 400, path
        assert "no longer valid" in page.text, path
    assert browser.get("/agent/dashboard").name == "dashboard"


def test_logout_ends_session_on_server(stack, make_agent):
    _, browser = _signed_in(stack, make_agent)
    cookie = browser.session.cookies.get("gatehouse_session")

    page = browser.post("/agent/logout", {})

    assert page.name == "login"
    replay = requests.get(
        f"{stack.url}/agent/dashboard",
        cookies={"gatehouse_session": cookie},
        timeout=10,
    )
    assert 'data-page="login"' in replay.text


def test_session_id_changes_at_each_step(stack, make_agent):
    agent = make_agent()
    browser = Browser(stack.url)
    browser.get("/agent")
    anonymous = browser.session.cookies.get("gatehouse_session")

    browser.post("/agent", {"login": agent.login, "password": agent.password})
    after_password = browser.session.cookies.get("gatehouse_session")
    browser.post(
        "/agent/password/change",
        {"new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD},
    )
    _, page = enroll_app(browser)
    after_second_factor = browser.session.cookies.get("gatehouse_session")

    assert page.name == "dashboard"
    assert len({anonymous, after_password, after_second_factor}) == 3


def test_security_page_shows_method(stack, make_agent):
    _, browser = _signed_in(stack, make_agent)

    page = browser.get("/agent/preferences/security")

    assert page.name == "security"
    assert "authenticator app" in page.text
    assert "current_password" in page.text


def test_password_change_requires_current_password(stack, make_agent):
    agent, browser = _signed_in(stack, make_agent)
    browser.get("/agent/preferences/security")
    new = "yet another long password 3"

    page = browser.post(
        "/agent/preferences/security/password",
        {
            "current_password": "wrong current password",
            "new_password": new,
            "new_password_confirm": new,
        },
    )
    assert page.status == 400
    assert page.name == "security"

    page = browser.post(
        "/agent/preferences/security/password",
        {
            "current_password": agent.password,
            "new_password": new,
            "new_password_confirm": new,
        },
    )
    assert page.name == "security"
    assert "password has been changed" in page.text
    assert Browser(stack.url).login(agent.login, new).name == "2fa-verify"


def test_switch_to_email_from_security_page(stack, smtp, make_agent):
    agent, browser = _signed_in(stack, make_agent)
    browser.get("/agent/preferences/security")

    page = browser.post("/agent/2fa/setup", {"method": "email"})
    assert page.name == "2fa-setup-email"
    token = token_in(smtp.wait_for(agent.email, matching=is_token_mail)[-1].message)
    page = browser.post("/agent/2fa/setup/email", {"token": token})

    assert page.name == "security"
    assert "code by email" in page.text
    browser.post("/agent/logout", {})
    later = Browser(stack.url)
    assert later.login(agent.login, agent.password).name == "2fa-verify"
    login_token = token_in(
        smtp.wait_for(agent.email, count=2, matching=is_token_mail)[-1].message
    )
    assert later.post("/agent/2fa", {"token": login_token}).name == "dashboard"


def test_internal_apis_require_credential(stack):
    if getattr(stack, "remote", False):
        pytest.skip("internal ports are not published by a remote stack")
    for base, path, audience in [
        (stack.identity_url, "/v1/agents/1", "identity"),
        (stack.otp_urls[0], "/v1/factors/1", "otp"),
    ]:
        answer = requests.get(base + path, timeout=10)
        assert answer.status_code == 401, base
        assert answer.json()["error"] == "unauthenticated"
        forged = requests.get(
            base + path, timeout=10, headers={"Authorization": "Bearer wrong"}
        )
        assert forged.status_code == 401, base
        foreign_key = generate_signing_key("gateway", "dev")
        impostor = requests.get(
            base + path, timeout=10, auth=ServiceAuth(foreign_key, audience)
        )
        assert impostor.status_code == 401, base
        assert impostor.json()["error"] == "unauthenticated"


def test_internal_apis_check_caller_per_route(stack):
    if getattr(stack, "remote", False):
        pytest.skip("internal ports are not published by a remote stack")
    gateway = ServiceAuth(stack.signing_key("gateway"), "identity")
    identity_at_identity = ServiceAuth(stack.signing_key("identity"), "identity")
    identity_at_otp = ServiceAuth(stack.signing_key("identity"), "otp")
    agent_url = f"{stack.identity_url}/v1/agents/999999"
    factor_url = f"{stack.otp_urls[0]}/v1/factors/999999"

    as_gateway = requests.get(agent_url, timeout=10, auth=gateway)
    forbidden = requests.get(agent_url, timeout=10, auth=identity_at_identity)
    factor = requests.get(factor_url, timeout=10, auth=identity_at_otp)
    devices = requests.delete(
        f"{stack.otp_urls[0]}/v1/devices/999999", timeout=10, auth=identity_at_otp
    )

    assert as_gateway.status_code == 404
    assert forbidden.status_code == 403
    assert forbidden.json()["error"] == "forbidden"
    assert factor.status_code == 200
    assert devices.status_code == 403


def test_internal_credential_works_once(stack):
    if getattr(stack, "remote", False):
        pytest.skip("internal ports are not published by a remote stack")
    auth = ServiceAuth(stack.signing_key("gateway"), "otp")
    prepared = requests.Request(
        "GET", f"{stack.otp_urls[0]}/v1/factors/999999", auth=auth
    ).prepare()

    with requests.Session() as session:
        first = session.send(prepared, timeout=10)
        replayed = session.send(prepared, timeout=10)

    assert first.status_code == 200
    assert replayed.status_code == 401
    assert replayed.json()["error"] == "unauthenticated"


def test_health_probes(stack):
    assert requests.get(f"{stack.url}/healthz", timeout=10).status_code == 200
    ready = requests.get(f"{stack.url}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text


def test_security_headers_on_pages(browser):
    page = browser.get("/agent")
    headers = page.response.headers

    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "script-src 'self';" in headers["Content-Security-Policy"]
    assert "unsafe-inline" not in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    cookie = page.response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_unknown_page_is_html_404(browser):
    page = browser.get("/agent/no-such-page")

    assert page.status == 404
    assert page.name == "error"


def test_security_page_lists_and_ends_sessions(stack, make_agent):
    agent, first = _signed_in(stack, make_agent)
    second = Browser(stack.url)
    second.login(agent.login, agent.password)
    second.post("/agent/2fa", {"token": totp_now(agent.secret, offset_steps=1)})
    assert second.get("/agent/dashboard").name == "dashboard"

    page = first.get("/agent/preferences/security")
    handles = [field["value"] for field in page.inputs if field.get("name") == "handle"]
    assert len(handles) == 1
    assert "this browser" in page.text
    page = first.post(
        "/agent/preferences/security/sessions/end", {"handle": handles[0]}
    )

    assert "That session was signed out." in page.text
    assert second.get("/agent/dashboard").name == "login"
    assert first.get("/agent/dashboard").name == "dashboard"


def test_sign_out_everywhere(stack, make_agent):
    agent, first = _signed_in(stack, make_agent)
    second = Browser(stack.url)
    second.login(agent.login, agent.password)
    second.post("/agent/2fa", {"token": totp_now(agent.secret, offset_steps=1)})
    first.get("/agent/preferences/security")

    page = first.post("/agent/preferences/security/sign-out-everywhere", {})

    assert page.name == "login"
    assert first.get("/agent/dashboard").name == "login"
    assert second.get("/agent/dashboard").name == "login"


def test_remembered_browser_skips_second_step(stack, make_agent):
    agent, browser = _signed_in(stack, make_agent)
    browser.post("/agent/logout", {})
    browser.login(agent.login, agent.password)
    page = browser.post(
        "/agent/2fa", {"token": totp_now(agent.secret, 1), "remember_device": "y"}
    )
    assert page.name == "dashboard"
    browser.post("/agent/logout", {})

    assert browser.login(agent.login, agent.password).name == "dashboard"
    assert Browser(stack.url).login(agent.login, agent.password).name == "2fa-verify"

    browser.get("/agent/preferences/security")
    browser.post("/agent/preferences/security/forget-browsers", {})
    browser.post("/agent/logout", {})
    assert browser.login(agent.login, agent.password).name == "2fa-verify"


def test_password_change_forgets_remembered_browsers(stack, make_agent):
    agent, browser = _signed_in(stack, make_agent)
    browser.post("/agent/logout", {})
    browser.login(agent.login, agent.password)
    browser.post(
        "/agent/2fa", {"token": totp_now(agent.secret, 1), "remember_device": "y"}
    )
    new = "the password after remembering 5"

    browser.get("/agent/preferences/security")
    browser.post(
        "/agent/preferences/security/password",
        {
            "current_password": agent.password,
            "new_password": new,
            "new_password_confirm": new,
        },
    )
    browser.post("/agent/logout", {})

    assert browser.login(agent.login, new).name == "2fa-verify"


def test_password_change_ends_other_sessions(stack, make_agent):
    agent, first = _signed_in(stack, make_agent)
    second = Browser(stack.url)
    second.login(agent.login, agent.password)
    second.post("/agent/2fa", {"token": totp_now(agent.secret, offset_steps=1)})
    assert second.get("/agent/dashboard").name == "dashboard"
    new = "a password changed in preferences 8"

    first.get("/agent/preferences/security")
    first.post(
        "/agent/preferences/security/password",
        {
            "current_password": agent.password,
            "new_password": new,
            "new_password_confirm": new,
        },
    )

    assert second.get("/agent/dashboard").name == "login"
    assert first.get("/agent/dashboard").name == "dashboard"


def test_operator_reset_ends_sessions_and_mails_notice(stack, smtp, make_agent):
    agent, browser = _signed_in(stack, make_agent)

    result = stack.agentctl("agent", "reset-2fa", agent.login)

    assert result.returncode == 0, result.stderr
    assert "ended 1 session" in result.stdout
    assert browser.get("/agent/dashboard").name == "login"
    notice = smtp.wait_for(
        agent.email, matching=lambda mail: "removed" in mail.message["Subject"]
    )
    assert notice
    # The plain form keeps the password: the next login sets up a new factor.
    assert Browser(stack.url).login(agent.login, agent.password).name == "2fa-setup"


def test_operator_reset_needs_new_password(stack, make_agent):
    agent, _ = _signed_in(stack, make_agent)
    result = stack.agentctl(
        "agent",
        "reset-2fa",
        agent.login,
        "--evidence",
        "ticket 4412, badge shown",
        "--new-password",
    )
    assert result.returncode == 0, result.stderr
    issued = result.stdout.splitlines()[-1]

    # The old password alone no longer opens the account.
    stale = Browser(stack.url).login(agent.login, agent.password)
    assert stale.status == 401
    assert stale.name == "login"

    browser = Browser(stack.url)
    page = browser.login(agent.login, issued)
    assert page.name == "password-change"
    new = "chosen again after the reset 3"
    page = browser.post(
        "/agent/password/change", {"new_password": new, "new_password_confirm": new}
    )
    assert page.name == "2fa-setup"


def test_operator_reset_rejects_blank_evidence(stack, make_agent):
    agent, _ = _signed_in(stack, make_agent)

    result = stack.agentctl(
        "agent", "reset-2fa", agent.login, "--evidence", " ", "--new-password"
    )

    assert result.returncode != 0
    assert "--evidence is empty" in result.stderr
    assert Browser(stack.url).login(agent.login, agent.password).name == "2fa-verify"


def test_security_page_shows_recent_events(stack, make_agent):
    _, browser = _signed_in(stack, make_agent)
    deadline = time.monotonic() + 10
    while True:
        page = browser.get("/agent/preferences/security")
        # The gateway queues its events; identity stores them within moments.
        if "Second factor set up" in page.text or time.monotonic() > deadline:
            break
        time.sleep(0.2)

    assert "Second factor set up" in page.text
    assert "Password changed" in page.text
    assert "Password accepted" in page.text
