"""Unit tests for rendering: bodies, subjects, headers and job validation."""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import replace
from email.policy import SMTP

import pytest
from gatehouse.common.config import ConfigError
from gatehouse.common.mail import MailJob
from gatehouse.mailer.interfaces import PermanentDeliveryError
from gatehouse.mailer.render import (
    NOTICES,
    clean_address,
    describe_validity,
    render_text,
    set_headers,
    text_part,
)
from gatehouse.mailer.settings import load_mailer_settings

RESET_LINK = "https://desk.example.test/agent/password/reset/Zx81_token-Part"


def job(kind: str = "token", **params) -> MailJob:
    defaults = {
        "token": {"token": "0412345", "ttl_seconds": 600, "purpose": "login"},
        "password_reset": {"link": RESET_LINK, "ttl_seconds": 1800},
        "notice": {"event": "password_changed"},
    }[kind]
    return MailJob(
        kind=kind,
        to="bob@example.test",
        agent_id=3,
        first_name="Bob",
        params={**defaults, **params},
        message_id="job-1234",
    )


@pytest.fixture
def settings(mail_env):
    return load_mailer_settings()


def full_message(mail_job: MailJob, settings) -> email.message.EmailMessage:
    subject, text = render_text(mail_job, settings.product_name)
    message = text_part(text)
    set_headers(message, mail_job, subject, settings)
    return email.message_from_bytes(
        message.as_bytes(policy=SMTP), policy=email.policy.default
    )


def test_token_mail_token_on_own_line():
    subject, text = render_text(job())
    assert re.search(r"^0412345$", text, re.MULTILINE)
    assert "valid for 10 minutes" in text
    assert "0412345" not in subject
    assert subject == "Your gatehouse sign-in code"
    assert text.startswith("Hello Bob,\n")


def test_token_mail_enrollment_purpose():
    _, text = render_text(job(purpose="enrollment"))
    assert "confirm email as your gatehouse sign-in method" in text
    assert re.search(r"^0412345$", text, re.MULTILINE)


@pytest.mark.parametrize("token", ["12ab56", "", "123", "1234567890123", 123456, None])
def test_token_mail_rejects_bad_token(token):
    with pytest.raises(PermanentDeliveryError, match="token"):
        render_text(job(token=token))


@pytest.mark.parametrize("ttl", [0, -5, "600", None, True])
def test_token_mail_rejects_bad_ttl(ttl):
    with pytest.raises(PermanentDeliveryError, match="ttl_seconds"):
        render_text(job(ttl_seconds=ttl))


def test_reset_mail_one_absolute_link():
    subject, text = render_text(job("password_reset"))
    links = re.findall(r"https?://\S+", text)
    assert links == [RESET_LINK]
    assert "valid for 30 minutes" in text
    assert subject == "Reset your gatehouse password"
    assert "Zx81" not in subject


@pytest.mark.parametrize(
    "link",
    [
        "/agent/password/reset/abc",
        "https://desk.example.test/agent/login",
        "javascript:alert(1)//agent/password/reset/",
        "https://desk.example.test/agent/password/reset/a b",
        "https://desk.example.test/agent/password/reset/a\nb",
        None,
    ],
)
def test_reset_mail_rejects_bad_link(link):
    with pytest.raises(PermanentDeliveryError, match="link"):
        render_text(job("password_reset", link=link))


@pytest.mark.parametrize("event", sorted(NOTICES))
def test_notice_mail_per_event(event):
    subject, text = render_text(job("notice", event=event))
    assert subject == NOTICES[event][0].format(product="gatehouse")
    assert "tell your administrator" in text


def test_new_browser_notice_shows_time_and_browser():
    notice = job("notice", event="new_browser", browser="Firefox on Linux\r\nBcc: x")
    notice.created_at = 1796405400.0

    _, text = render_text(notice)

    assert "Time: 2026-12-04 17:30 UTC" in text
    assert "Browser: Firefox on LinuxBcc: x" in text
    assert "\r" not in text


def test_browser_notice_without_browser_still_renders():
    _, text = render_text(job("notice", event="browser_remembered"))

    assert "Browser: unknown browser" in text


def test_notice_mail_rejects_unknown_event():
    with pytest.raises(PermanentDeliveryError, match="event"):
        render_text(job("notice", event="coffee_made"))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (600, "10 minutes"),
        (60, "1 minute"),
        (3600, "1 hour"),
        (7200, "2 hours"),
        (86400, "1 day"),
        (45, "45 seconds"),
        (610, "10 minutes"),
    ],
)
def test_describe_validity(seconds, text):
    assert describe_validity(seconds) == text


@pytest.mark.parametrize(
    "address",
    [
        "bob@example.test",
        "Bob.Smith+desk@Example.TEST",
    ],
)
def test_clean_address_accepts(address):
    assert clean_address(address) == address


@pytest.mark.parametrize(
    "address",
    [
        "bob",
        "bob@",
        "@example.test",
        "Bob <bob@example.test>",
        "a@b.test, c@d.test",
        "bob@example.test\r\nBcc: eve@example.test",
        "bob @example.test",
        "",
    ],
)
def test_clean_address_rejects(address):
    with pytest.raises(PermanentDeliveryError, match="malformed"):
        clean_address(address)


def test_headers_complete(settings):
    message = full_message(job(), settings)
    assert message["From"] == "gatehouse <gatehouse@localhost>"
    assert message["To"] == "Bob <bob@example.test>"
    assert message["Message-ID"] == "<job-1234@localhost>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"].datetime is not None
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"


def test_headers_non_ascii_subject_encoded(settings):
    settings = replace(settings, product_name="Pförtner")
    mail_job = replace(job(), first_name="Jürgen\r\nBcc: eve@example.test")
    subject, text = render_text(mail_job, settings.product_name)
    message = text_part(text)
    set_headers(message, mail_job, subject, settings)
    raw = message.as_bytes(policy=SMTP)

    assert b"=?utf-8?" in raw.split(b"\r\n\r\n")[0]
    assert re.search(rb"(?mi)^bcc:", raw) is None
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "Your Pförtner sign-in code"
    assert "Hello JürgenBcc: eve@example.test," in parsed.get_content()
    assert re.search(r"^0412345\r?$", parsed.get_content(), re.MULTILINE)


def test_mail_from_setting(mail_env, monkeypatch):
    monkeypatch.setenv("MAIL_FROM", "Help Desk <desk@example.test>")
    message = full_message(job(), load_mailer_settings())
    assert message["From"] == "Help Desk <desk@example.test>"
    assert message["Message-ID"] == "<job-1234@example.test>"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAIL_FROM", "not an address"),
        ("GATEHOUSE_ENCRYPTION_ORDER", "pgp,rot13"),
        ("GATEHOUSE_ENCRYPTION_FALLBACK", "maybe"),
        ("GATEHOUSE_MAIL_RETRY_DELAYS", "5,soon"),
        ("GATEHOUSE_MAIL_RETRY_DELAYS", "0"),
        ("GATEHOUSE_PGP_ENABLED", "perhaps"),
    ],
)
def test_settings_reject_invalid(mail_env, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_mailer_settings()


def test_replay_notice_says_what_to_do():
    subject, text = render_text(job("notice", event="second_factor_replayed"))
    assert subject == "A used gatehouse sign-in code was entered again"
    flat = " ".join(text.split())
    assert "already been used" in flat
    assert "was rejected" in flat
    assert "change your password now" in flat
