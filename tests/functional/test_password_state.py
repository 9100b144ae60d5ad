"""Checks after a correct password, through the browser pages: an expired initial
password and a password found on the breach list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from gatehouse.identity.passwords import common_passwords
from sqlalchemy import create_engine, text
from support.flows import first_login
from support.stack import LocalStack
from support.web import Browser, totp_now

CHANGED_PASSWORD = "a replacement after the breach 5"


@pytest.fixture
def identity_database(stack):
    """Return a function running one UPDATE on the stack's identity database."""
    if not isinstance(stack, LocalStack):
        pytest.skip("needs the identity database of a local stack")
    url = stack.env.get(
        "IDENTITY_DATABASE_URL", f"sqlite:///{stack.data_dir / 'identity.sqlite3'}"
    )
    engine = create_engine(url)

    def execute(sql: str, **parameters) -> None:
        with engine.begin() as connection:
            assert connection.execute(text(sql), parameters).rowcount == 1

    yield execute
    engine.dispose()


def test_expired_initial_password_says_so(stack, make_agent, identity_database):
    agent = make_agent()
    identity_database(
        "UPDATE agents SET initial_password_expires_at = :past WHERE login = :login",
        past=datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=1),
        login=agent.login,
    )

    page = Browser(stack.url).login(agent.login, agent.password)

    assert page.name == "login"
    assert page.status == 403
    assert "initial password has expired" in page.text
    assert "ask an operator" in page.text
    assert "Set a new one with" in page.text


def test_expired_initial_wrong_password_generic(stack, make_agent, identity_database):
    agent = make_agent()
    identity_database(
        "UPDATE agents SET initial_password_expires_at = :past WHERE login = :login",
        past=datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=1),
        login=agent.login,
    )

    page = Browser(stack.url).login(agent.login, "not the initial password 9")

    assert page.status == 401
    assert "Invalid user name or password." in page.text
    assert "expired" not in page.text


def test_changed_password_never_expires(stack, make_agent, identity_database):
    agent = make_agent()
    first_login(Browser(stack.url), agent)

    page = Browser(stack.url).login(agent.login, agent.password)

    assert page.name == "2fa-setup"


def test_breached_password_changed_after_second_factor(
    stack, app_agent, identity_database
):
    breached = sorted(word for word in common_passwords() if len(word) >= 12)[0]
    identity_database(
        "UPDATE agents SET password_hash = :hash WHERE login = :login",
        hash=PasswordHasher().hash(breached),
        login=app_agent.login,
    )
    browser = Browser(stack.url)

    page = browser.login(app_agent.login, breached)
    # The second factor comes first, so the breached password alone cannot
    # replace itself.
    assert page.name == "2fa-verify"
    page = browser.post("/agent/2fa", {"token": totp_now(app_agent.secret, 1)})
    assert page.name == "password-change"
    assert "exposed in data breaches" in page.text
    assert browser.get("/agent/dashboard").name == "password-change"

    page = browser.post(
        "/agent/password/change",
        {"new_password": CHANGED_PASSWORD, "new_password_confirm": CHANGED_PASSWORD},
    )

    assert page.name == "dashboard"
    again = Browser(stack.url).login(app_agent.login, CHANGED_PASSWORD)
    assert again.name == "2fa-verify"
    assert Browser(stack.url).login(app_agent.login, breached).status == 401
