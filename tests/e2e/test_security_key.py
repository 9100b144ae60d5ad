"""Security-key enrollment and sign-in in headless Chromium with a virtual
authenticator (Chrome DevTools Protocol, WebAuthn domain).

The gateway is served as http://localhost:PORT: WebAuthn rejects an IP address as
RP ID, and Chromium treats localhost as a secure context.
"""

import uuid

import pytest
from support.smtp import SmtpSink
from support.stack import LocalStack

NEW_PASSWORD = "security key chosen password 2026"


@pytest.fixture(scope="module")
def localhost_stack():
    sink = SmtpSink().start()
    stack = LocalStack(sink.port, public_host="localhost").start()
    yield stack
    stack.stop()
    sink.stop()


def _page_name(page) -> str:
    return page.locator("body").get_attribute("data-page")


def _add_agent(stack) -> tuple[str, str]:
    login = f"key-{uuid.uuid4().hex[:6]}"
    created = stack.agentctl(
        "agent",
        "add",
        login,
        "--email",
        f"{login}@example.test",
        "--first-name",
        "Kira",
        "--last-name",
        "Key",
    )
    assert created.returncode == 0, created.stderr
    return login, created.stdout.rstrip("\n").splitlines()[-1]


def _virtual_authenticator(context, page):
    session = context.new_cdp_session(page)
    session.send("WebAuthn.enable")
    added = session.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "usb",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
            }
        },
    )
    return session, added["authenticatorId"]


def _sign_in(page, stack, login: str, password: str) -> None:
    page.goto(f"{stack.url}/agent")
    assert _page_name(page) == "login"
    page.get_by_label("User name").fill(login)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def _first_login_to_setup(page, stack) -> str:
    login, initial = _add_agent(stack)
    _sign_in(page, stack, login, initial)
    assert _page_name(page) == "password-change"
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    assert _page_name(page) == "2fa-setup"
    return login


def test_security_key_enroll_and_sign_in(localhost_stack, chromium, tmp_path):
    context = chromium.new_context()
    page = context.new_page()
    cdp, authenticator_id = _virtual_authenticator(context, page)

    login = _first_login_to_setup(page, localhost_stack)
    page.get_by_label("Security key").check()
    page.get_by_role("button", name="Continue").click()
    assert _page_name(page) == "2fa-setup-security-key"
    page.get_by_label("Name of the key").fill("Virtual key")
    page.get_by_role("button", name="Register security key").click()
    page.wait_for_url("**/agent/dashboard")
    assert _page_name(page) == "dashboard"
    page.screenshot(path=str(tmp_path / "enrolled.png"))

    stored = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})
    assert len(stored["credentials"]) == 1
    assert stored["credentials"][0]["rpId"] == "localhost"

    page.goto(f"{localhost_stack.url}/agent/preferences/security")
    assert _page_name(page) == "security"
    assert page.locator("[data-security-key]").count() == 1
    assert "Virtual key" in page.locator("[data-security-keys]").inner_text()

    # The registered key is excluded, so registering it again fails in the browser.
    page.get_by_role("link", name="Add a security key").click()
    assert _page_name(page) == "2fa-setup-security-key"
    page.get_by_label("Name of the key").fill("Same key again")
    page.get_by_role("button", name="Register security key").click()
    status = page.locator("[data-webauthn-status]")
    status.wait_for(state="visible")
    assert "already registered" in status.inner_text()

    page.get_by_role("button", name="Sign out").first.click()
    assert _page_name(page) == "login"

    _sign_in(page, localhost_stack, login, NEW_PASSWORD)
    assert _page_name(page) == "2fa-verify"
    # The browser rejects with NotAllowedError when the person presses Cancel in
    # its prompt; the replaced API below simulates that.
    page.evaluate(
        """() => {
            navigator.credentials.get = () =>
                Promise.reject(new DOMException("cancelled", "NotAllowedError"));
        }"""
    )
    page.get_by_role("button", name="Use security key").click()
    status = page.locator("[data-webauthn-status]")
    status.wait_for(state="visible")
    assert "cancelled or timed out" in status.inner_text()
    assert _page_name(page) == "2fa-verify"

    page.reload()
    page.get_by_role("button", name="Use security key").click()
    page.wait_for_url("**/agent/dashboard")
    assert _page_name(page) == "dashboard"

    used = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})
    assert used["credentials"][0]["signCount"] >= 1
    context.close()


def test_browser_without_webauthn_told(localhost_stack, chromium):
    context = chromium.new_context()
    # Hide the API before any page script runs, as in a browser without WebAuthn.
    context.add_init_script("delete window.PublicKeyCredential;")
    page = context.new_page()

    _first_login_to_setup(page, localhost_stack)
    page.get_by_label("Security key").check()
    page.get_by_role("button", name="Continue").click()
    assert _page_name(page) == "2fa-setup-security-key"
    status = page.locator("[data-webauthn-status]")
    status.wait_for(state="visible")
    assert "does not support security keys" in status.inner_text()
    assert page.get_by_role("button", name="Register security key").is_disabled()
    context.close()
