"""The mail processor against real Redis and an aiosmtpd server: one job at a time."""

from __future__ import annotations

import logging
import time

import pytest
import redis
from gatehouse.common.mail import MailJob
from gatehouse.mailer.delivery import ACK, DEAD, RETRY, build_processor
from gatehouse.mailer.keystore import build_selector
from gatehouse.mailer.settings import load_mailer_settings

from .conftest import REDIS_URL

TOKEN = "7305518"


def token_job(**changes) -> MailJob:
    fields = {
        "kind": "token",
        "to": "dave@example.test",
        "agent_id": 9,
        "first_name": "Dave",
        "params": {"token": TOKEN, "ttl_seconds": 600},
        "request_id": "req-delivery-1",
    }
    return MailJob(**{**fields, **changes})


@pytest.fixture
def processor(mail_env, smtp_server, monkeypatch):
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(smtp_server.port))
    settings = load_mailer_settings()
    return build_processor(
        settings, redis.Redis.from_url(REDIS_URL), build_selector(settings)
    )


def run(processor, job: MailJob):
    return processor.process(
        processor.cipher.seal(job), {"x-request-id": "hdr-request-1"}, job.message_id
    )


def test_delivered_once_then_skipped(processor, smtp_server, mail_env, caplog):
    caplog.set_level(logging.INFO)
    job = token_job()

    first = run(processor, job)
    second = run(processor, job)

    assert first.action == ACK
    assert first.reason == "delivered"
    assert second.action == ACK
    assert second.reason == "already sent"
    assert len(smtp_server.handler.messages) == 1
    client = redis.Redis.from_url(REDIS_URL)
    key = f"{mail_env['GATEHOUSE_REDIS_PREFIX']}mail:sent:{job.message_id}"
    assert 0 < client.ttl(key) <= 7 * 24 * 3600
    assert "mailer.duplicate_skipped" in caplog.messages
    assert TOKEN not in caplog.text


def test_request_id_bound_from_job(processor, caplog):
    caplog.set_level(logging.INFO)
    run(processor, token_job())
    delivered = [r for r in caplog.records if r.getMessage() == "mailer.delivered"]
    assert len(delivered) == 1
    assert delivered[0].message_id
    assert run(processor, token_job()).request_id == "req-delivery-1"


def test_expired_token_dropped(processor, smtp_server, caplog):
    caplog.set_level(logging.INFO)
    outcome = run(processor, token_job(expires_at=time.time() - 1))
    assert outcome.action == ACK
    assert outcome.reason == "expired"
    assert smtp_server.handler.attempts == 0
    assert "mailer.expired_dropped" in caplog.messages


def test_unexpired_token_sent(processor, smtp_server):
    assert run(processor, token_job(expires_at=time.time() + 60)).action == ACK
    assert len(smtp_server.handler.messages) == 1


def test_smtp_451_retries(processor, smtp_server):
    smtp_server.handler.mode = "tempfail"
    outcome = run(processor, token_job())
    assert outcome.action == RETRY
    assert "451" in outcome.reason


def test_smtp_550_dead(processor, smtp_server):
    smtp_server.handler.mode = "reject"
    outcome = run(processor, token_job())
    assert outcome.action == DEAD
    assert "550" in outcome.reason


def test_smtp_refused_retries_and_releases_claim(processor, smtp_server):
    smtp_server.stop()
    job = token_job()
    assert run(processor, job).action == RETRY
    smtp_server.start()
    assert run(processor, job).action == ACK
    assert len(smtp_server.handler.messages) == 1


def test_claimed_elsewhere_retries(processor, smtp_server):
    job = token_job()
    assert processor.sent_log.claim(job.message_id)
    outcome = run(processor, job)
    assert outcome.action == RETRY
    assert smtp_server.handler.attempts == 0


def test_invalid_body_dead(processor):
    outcome = processor.process(b"[1, 2]", {"x-request-id": "hdr-request-1"}, "m-1")
    assert outcome.action == DEAD
    assert outcome.message_id == "m-1"
    assert outcome.request_id == "hdr-request-1"


def test_malformed_address_dead(processor, smtp_server):
    outcome = run(processor, token_job(to="dave@example.test>, eve@example.test"))
    assert outcome.action == DEAD
    assert "malformed" in outcome.reason
    assert smtp_server.handler.attempts == 0


def test_malformed_request_id_replaced(processor):
    outcome = run(processor, token_job(request_id="bad\nid"))
    assert outcome.request_id != "bad\nid"


def test_mailbox_atomic_file(mail_env, caplog):
    caplog.set_level(logging.INFO)
    settings = load_mailer_settings()
    processor = build_processor(
        settings, redis.Redis.from_url(REDIS_URL), build_selector(settings)
    )
    assert run(processor, token_job()).action == ACK
    files = list(settings.mailbox_dir.iterdir())
    assert [path.suffix for path in files] == [".eml"]
    assert f"\r\n{TOKEN}\r\n".encode() in files[0].read_bytes()
    saved = [r for r in caplog.records if r.getMessage() == "mailer.saved_to_mailbox"]
    assert saved[0].path == str(files[0])


@pytest.mark.parametrize(
    "changes", [{"expires_at": "tomorrow"}, {"email_security": "yes"}]
)
def test_invalid_field_types_dead(processor, smtp_server, changes):
    outcome = run(processor, token_job(**changes))
    assert outcome.action == DEAD
    assert "invalid job" in outcome.reason
    assert smtp_server.handler.attempts == 0
