"""A reset mail requested before identity stopped is sent once after its restart.

This module runs its own stack, because it stops and starts it. The first run
has no relay thread (IDENTITY_MAIL_RELAY=false), so the request is still an
outbox row when identity stops, as after a worker that died before publishing.
"""

from __future__ import annotations

import os
import time

import pytest
from sqlalchemy import create_engine, text
from support.flows import unique_login
from support.smtp import SmtpSink
from support.stack import LocalStack
from support.web import Browser, is_reset_mail, reset_link_in

NEW_PASSWORD = "set after the restart 6"


@pytest.fixture
def outbox_stack():
    if os.environ.get("GATEHOUSE_TARGET_URL"):
        pytest.skip("needs its own local stack to stop and start")
    sink = SmtpSink().start()
    stack = LocalStack(sink.port, extra_env={"IDENTITY_MAIL_RELAY": "false"})
    stack.smtp = sink
    yield stack.start()
    stack.stop()
    sink.stop()


def _outbox_attempts(stack) -> list[int]:
    engine = create_engine(f"sqlite:///{stack.data_dir / 'identity.sqlite3'}")
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT attempts FROM mail_outbox"))
            return [row.attempts for row in rows]
    finally:
        engine.dispose()


def _add_agent(stack) -> tuple[str, str]:
    login = unique_login("outbox")
    email = f"{login}@example.test"
    result = stack.agentctl(
        "agent",
        "add",
        login,
        *("--email", email, "--first-name", "Out", "--last-name", "Box"),
        *("--password", "initial password 1"),
    )
    assert result.returncode == 0, result.stderr
    return login, email


def test_reset_mail_sent_once_after_restart(outbox_stack):
    stack = outbox_stack
    login, email = _add_agent(stack)

    browser = Browser(stack.url)
    browser.get("/agent/password/forgot")
    page = browser.post("/agent/password/forgot", {"login": login})
    assert page.name == "password-forgot"
    assert _outbox_attempts(stack) == [0]

    stack.stop()
    assert _outbox_attempts(stack) == [0]
    assert stack.smtp.mails_to(email) == []
    stack.env["IDENTITY_MAIL_RELAY"] = "true"
    stack.start()

    [mail] = stack.smtp.wait_for(email, matching=is_reset_mail, timeout=60)
    # Past a few relay polls, a second copy would have arrived.
    time.sleep(5)
    assert len([m for m in stack.smtp.mails_to(email) if is_reset_mail(m)]) == 1
    assert _outbox_attempts(stack) == []

    reset = Browser(stack.url)
    assert reset.get(reset_link_in(mail.message)).name == "password-reset"
    page = reset.post(
        "/agent/password/reset",
        {"new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD},
    )
    assert page.name == "login"
