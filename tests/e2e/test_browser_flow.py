"""The whole first login and a second login in headless Chromium."""

import uuid

from support.web import totp_now

NEW_PASSWORD = "browser chosen password 2026"


def _page_name(page) -> str:
    return page.locator("body").get_attribute("data-page")


def test_first_login_app_setup_and_second_login(e2e_stack, chromium, tmp_path):
    login = f"browser-{uuid.uuid4().hex[:6]}"
    created = e2e_stack.agentctl(
        "agent",
        "add",
        login,
        "--email",
        f"{login}@example.test",
        "--first-name",
        "Brigitte",
        "--last-name",
        "Browser",
    )
    assert created.returncode == 0, created.stderr
    initial = created.stdout.rstrip("\n").splitlines()[-1]
    context = chromium.new_context()
    page = context.new_page()

    page.goto(f"{e2e_stack.url}/agent")
    assert _page_name(page) == "login"
    page.get_by_label("User name").fill(login)
    page.get_by_label("Password").fill(initial)
    page.get_by_role("button", name="Sign in").click()

    assert _page_name(page) == "password-change"
    new_password = page.get_by_label("New password", exact=True)
    # The meter is added by password.js, which may run after the click returns.
    page.locator("#new_password-strength").wait_for()
    new_password.fill("short")
    assert page.locator("#new_password-strength").get_attribute("value") == "1"
    page.get_by_role("button", name="Show").first.click()
    assert new_password.get_attribute("type") == "text"
    page.screenshot(path=str(tmp_path / "password-change.png"))
    new_password.fill(NEW_PASSWORD)
    page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()

    assert _page_name(page) == "2fa-setup"
    page.get_by_label("Authenticator app").check()
    page.get_by_role("button", name="Continue").click()

    assert _page_name(page) == "2fa-setup-app"
    uri = page.locator("[data-otpauth-uri]").get_attribute("data-otpauth-uri")
    secret = uri.split("secret=")[1].split("&")[0]
    assert page.locator(".qr svg").is_visible()
    page.screenshot(path=str(tmp_path / "app-setup.png"))
    page.get_by_role("textbox", name="Code").fill(totp_now(secret))
    page.get_by_role("button", name="Confirm").click()

    assert _page_name(page) == "dashboard"
    assert "Brigitte Browser" in page.content()
    page.get_by_role("button", name="Sign out").first.click()
    assert _page_name(page) == "login"

    page.get_by_label("User name").fill(login)
    page.get_by_label("Password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    assert _page_name(page) == "2fa-verify"
    page.get_by_role("textbox", name="Code").fill(totp_now(secret, offset_steps=1))
    page.get_by_role("button", name="Verify").click()

    assert _page_name(page) == "dashboard"
    context.close()
