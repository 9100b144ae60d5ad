"""Operator creates an agent; the first login changes the password and sets up 2FA."""

from support.flows import (
    NEW_PASSWORD,
    enroll_app,
    enroll_email,
    first_login,
    unique_login,
)
from support.web import Browser, is_token_mail, token_in, totp_now


def test_agentctl_prints_generated_password_last(stack):
    login = unique_login()

    result = stack.agentctl(
        "agent",
        "add",
        login,
        "--email",
        f"{login}@example.test",
        "--first-name",
        "Gen",
        "--last-name",
        "Erated",
    )

    assert result.returncode == 0, result.stderr
    generated = result.stdout.rstrip("\n").splitlines()[-1]
    assert len(generated) >= 12
    page = Browser(stack.url).login(login, generated)
    assert page.name == "password-change"


def test_agentctl_rejects_duplicate_login(stack, make_agent):
    agent = make_agent()

    result = stack.agentctl(
        "agent",
        "add",
        agent.login.upper(),
        "--email",
        "other@example.test",
        "--first-name",
        "A",
        "--last-name",
        "B",
        "--password",
        "another password 9",
    )

    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1
    assert agent.login.upper() in result.stderr or "exists" in result.stderr


def test_agentctl_rejects_malformed_email(stack):
    login = unique_login()

    result = stack.agentctl(
        "agent",
        "add",
        login,
        "--email",
        "not an address",
        "--first-name",
        "A",
        "--last-name",
        "B",
    )

    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1
    assert "email" in result.stderr.lower()
    assert Browser(stack.url).login(login, "whatever password").status == 401


def test_login_page_fields(browser):
    page = browser.get("/agent")

    assert page.status == 200
    assert page.name == "login"
    assert page.input_named("login")["autocomplete"] == "username"
    assert page.input_named("password")["autocomplete"] == "current-password"
    assert page.input_named("csrf_token")["type"] == "hidden"
    assert 'href="/agent/password/forgot"' in page.text


def test_wrong_password_and_unknown_login_look_identical(browser, make_agent):
    agent = make_agent()
    ghost = unique_login("ghost")

    wrong = browser.login(agent.login, "not the password at all")
    unknown = browser.login(ghost, "not the password at all")

    assert wrong.status == unknown.status == 401
    assert wrong.name == unknown.name == "login"
    assert "Invalid user name or password." in wrong.text
    # Apart from the CSRF token and the login typed back into the form, the two
    # responses are the same page.
    wrong_text = wrong.text.replace(wrong.csrf_token, "").replace(agent.login, "L")
    unknown_text = unknown.text.replace(unknown.csrf_token, "").replace(ghost, "L")
    assert wrong_text == unknown_text
    assert sorted(wrong.response.headers) == sorted(unknown.response.headers)


def test_first_login_forces_password_change(browser, make_agent):
    agent = make_agent()

    page = browser.login(agent.login, agent.password)

    assert page.name == "password-change"
    for path in (
        "/agent/dashboard",
        "/agent/2fa/setup",
        "/agent/2fa",
        "/agent/preferences/security",
        "/agent",
    ):
        assert browser.get(path).name == "password-change", path


def test_initial_change_rejects_bad_passwords(browser, make_agent):
    agent = make_agent()
    browser.login(agent.login, agent.password)
    cases = [
        (agent.password, agent.password),
        ("short pw", "short pw"),
        ("long enough password 1", "a different password"),
        ("x" * 1025, "x" * 1025),
    ]

    for new, confirm in cases:
        page = browser.post(
            "/agent/password/change",
            {"new_password": new, "new_password_confirm": confirm},
        )
        assert page.status == 400, (new, page)
        assert page.name == "password-change"
        assert 'class="error"' in page.text or 'class="field-error"' in page.text


def test_initial_change_leads_to_2fa_setup(browser, make_agent):
    agent = make_agent()

    page = first_login(browser, agent)

    assert page.name == "2fa-setup"
    assert browser.get("/agent/password/change").name == "2fa-setup"
    assert browser.get("/agent/dashboard").name == "2fa-setup"


def test_setup_page_offers_app_first_unselected(browser, make_agent):
    page = first_login(browser, make_agent())

    methods = [field for field in page.inputs if field.get("name") == "method"]
    assert [field["value"] for field in methods][0] == "app"
    assert "email" in [field["value"] for field in methods]
    assert not any("checked" in field for field in methods)
    assert "(recommended)" in page.text.split('id="method-webauthn"')[0]


def test_old_password_dead_after_change(stack, make_agent):
    agent = make_agent()
    initial = agent.password
    first_login(Browser(stack.url), agent)

    assert Browser(stack.url).login(agent.login, initial).status == 401
    assert Browser(stack.url).login(agent.login, NEW_PASSWORD).name == "2fa-setup"


def test_email_setup_and_later_login(browser, stack, smtp, make_agent):
    agent = make_agent(first_name="Émile", last_name="Zola")
    first_login(browser, agent)
    setup = browser.get("/agent/2fa/setup")
    assert setup.input_named("email_security")["value"] == "on"

    page = browser.post("/agent/2fa/setup", {"method": "email"})
    assert page.name == "2fa-setup-email"
    assert page.input_named("token")["autocomplete"] == "one-time-code"
    assert page.input_named("token")["inputmode"] == "numeric"
    mail = smtp.wait_for(agent.email, matching=is_token_mail)[-1]
    token = token_in(mail.message)
    assert token not in mail.message["Subject"]
    assert len(token) == 6

    wrong = "000000" if token != "000000" else "111111"
    page = browser.post("/agent/2fa/setup/email", {"token": wrong})
    assert page.status == 400
    assert page.name == "2fa-setup-email"

    page = browser.post("/agent/2fa/setup/email", {"token": token})
    assert page.name == "dashboard"
    assert "Émile" in page.text
    browser.post("/agent/logout", {})

    later = Browser(stack.url)
    page = later.login(agent.login, agent.password)
    assert page.name == "2fa-verify"
    login_mail = smtp.wait_for(agent.email, count=2, matching=is_token_mail)[-1]
    page = later.post("/agent/2fa", {"token": token_in(login_mail.message)})
    assert page.name == "dashboard"


def test_email_token_single_use(stack, smtp, make_agent):
    agent = make_agent()
    browser = Browser(stack.url)
    first_login(browser, agent)
    enroll_email(browser, smtp, agent)
    browser.post("/agent/logout", {})

    browser.login(agent.login, agent.password)
    token = token_in(
        smtp.wait_for(agent.email, count=2, matching=is_token_mail)[-1].message
    )
    assert browser.post("/agent/2fa", {"token": token}).name == "dashboard"
    browser.post("/agent/logout", {})

    page = browser.login(agent.login, agent.password)
    smtp.wait_for(agent.email, count=3, matching=is_token_mail)
    page = browser.post("/agent/2fa", {"token": token})
    assert page.status == 400
    assert page.name == "2fa-verify"


def test_resend_sends_new_token(stack, smtp, make_agent):
    agent = make_agent()
    browser = Browser(stack.url)
    first_login(browser, agent)
    enroll_email(browser, smtp, agent)
    browser.post("/agent/logout", {})
    browser.login(agent.login, agent.password)
    smtp.wait_for(agent.email, count=2, matching=is_token_mail)

    page = browser.post("/agent/2fa/resend", {})

    assert page.name == "2fa-verify"
    assert "Send a new code" in page.text


def test_app_setup_page_shows_secret_qr_and_uri(browser, make_agent):
    agent = make_agent()
    first_login(browser, agent)

    page = browser.post("/agent/2fa/setup", {"method": "app"})

    assert page.name == "2fa-setup-app"
    uri = page.attribute("data-otpauth-uri")
    assert uri.startswith("otpauth://totp/")
    assert "issuer=gatehouse" in uri
    secret = uri.split("secret=")[1].split("&")[0]
    assert len(secret) >= 32
    grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
    assert grouped in page.text
    assert "<svg" in page.text
    assert browser.get("/agent/2fa/setup/app").attribute("data-otpauth-uri") == uri


def test_app_setup_and_later_login(stack, make_agent):
    agent = make_agent(first_name="Ada", last_name="Lovelace")
    browser = Browser(stack.url)
    first_login(browser, agent)

    secret, page = enroll_app(browser)

    assert page.name == "dashboard"
    assert "Ada Lovelace" in page.text
    assert browser.post("/agent/logout", {}).name == "login"
    later = Browser(stack.url)
    assert later.login(agent.login, agent.password).name == "2fa-verify"
    page = later.post("/agent/2fa", {"token": "123"})
    assert page.status == 400
    page = later.post("/agent/2fa", {"token": totp_now(secret, offset_steps=1)})
    assert page.name == "dashboard"


def test_app_setup_rejects_wrong_first_code(browser, make_agent):
    agent = make_agent()
    first_login(browser, agent)
    page = browser.post("/agent/2fa/setup", {"method": "app"})
    secret = page.attribute("data-otpauth-uri").split("secret=")[1].split("&")[0]
    code = totp_now(secret)
    wrong = f"{(int(code) + 500000) % 1000000:06d}"

    page = browser.post("/agent/2fa/setup/app", {"token": wrong})

    assert page.status == 400
    assert page.name == "2fa-setup-app"
    assert browser.get("/agent/dashboard").name == "2fa-setup"


def test_recovery_codes_shown_once_and_work(stack, make_agent):
    agent = make_agent()
    browser = Browser(stack.url)
    first_login(browser, agent)
    _, dashboard = enroll_app(browser)
    codes = [
        line.split("<code>")[1].split("</code>")[0]
        for line in dashboard.text.split("<li>")[1:]
        if "<code>" in line
    ]
    assert len(codes) == 10
    assert codes[0] not in browser.get("/agent/dashboard").text
    browser.post("/agent/logout", {})

    browser.login(agent.login, agent.password)
    page = browser.post("/agent/2fa", {"token": codes[0]})
    assert page.name == "dashboard"
    assert "recovery code" in page.text
    browser.post("/agent/logout", {})
    browser.login(agent.login, agent.password)
    assert browser.post("/agent/2fa", {"token": codes[0]}).status == 400
