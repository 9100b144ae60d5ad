"""Sealed mail jobs: what rests in RabbitMQ, and how the mailer opens it."""

from __future__ import annotations

from dataclasses import replace

import pika
import pytest
from cryptography.fernet import Fernet
from gatehouse.common.config import ConfigError, load_settings
from gatehouse.common.mail import (
    SEALED_CONTENT_TYPE,
    InvalidMailJob,
    MailJob,
    MailJobCipher,
    MailPublisher,
    Topology,
    UnreadableMailJob,
)
from gatehouse.mailer.settings import load_mailer_settings

from .conftest import AMQP_URL, wait_for
from .test_faults import queue_depth, received_ids

pytestmark = pytest.mark.timeout(120)

TOKEN = "3917264"
RESET_LINK = "https://desk.example.test/agent/password/reset/Qv7_secret-Reset-Part"
ADDRESS = "frank@example.test"


def token_job() -> MailJob:
    return MailJob(
        kind="token",
        to=ADDRESS,
        agent_id=21,
        first_name="Frank",
        params={"token": TOKEN, "ttl_seconds": 600, "purpose": "login"},
    )


def reset_job() -> MailJob:
    return MailJob(
        kind="password_reset",
        to=ADDRESS,
        agent_id=21,
        first_name="Frank",
        params={"link": RESET_LINK, "ttl_seconds": 1800},
    )


def publish(env: dict, jobs: list[MailJob], keys: list[str] | None = None) -> None:
    publisher = MailPublisher(AMQP_URL, env["GATEHOUSE_AMQP_PREFIX"], keys)
    for job in jobs:
        publisher.publish(job)
    publisher._discard()


def take_raw(queue: str, count: int) -> list[tuple[pika.BasicProperties, bytes]]:
    """Take ``count`` messages off ``queue`` as they rest in the broker."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    messages = []
    try:
        channel = connection.channel()
        for _ in range(count):
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            assert method is not None, f"{queue} has fewer than {count} messages"
            messages.append((properties, body))
    finally:
        connection.close()
    return messages


@pytest.fixture
def smtp_env(mail_env, smtp_server, monkeypatch):
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(smtp_server.port))
    return mail_env


def test_queued_body_has_no_secret(mail_env):
    jobs = [token_job(), reset_job()]
    publish(mail_env, jobs)

    messages = take_raw(Topology(mail_env["GATEHOUSE_AMQP_PREFIX"]).queue, 2)

    cipher = MailJobCipher(load_settings().mail_job_keys)
    for (properties, body), job in zip(messages, jobs, strict=True):
        assert properties.content_type == SEALED_CONTENT_TYPE
        assert properties.message_id == job.message_id
        assert TOKEN.encode() not in body
        assert b"/agent/password/reset/" not in body
        assert b"Qv7_secret-Reset-Part" not in body
        assert ADDRESS.encode() not in body
        assert cipher.open(body) == job


def test_mailer_delivers_sealed_job(smtp_env, smtp_server, mailer_process):
    job = token_job()
    mailer = mailer_process()
    mailer.wait_consuming()

    publish(smtp_env, [job])

    wait_for(
        lambda: received_ids(smtp_server)[job.message_id] == 1, 20, message="delivery"
    )
    text = smtp_server.handler.parsed()[0].get_content()
    assert TOKEN in text.splitlines()
    assert mailer.terminate() == 0


def test_unknown_key_dead_lettered(smtp_env, smtp_server, mailer_process):
    topology = Topology(smtp_env["GATEHOUSE_AMQP_PREFIX"])
    job = token_job()
    mailer = mailer_process()
    mailer.wait_consuming()

    publish(smtp_env, [job], keys=[Fernet.generate_key().decode()])

    wait_for(
        lambda: queue_depth(smtp_env, topology.dead_queue) == 1,
        20,
        message=f"sealed job not dead-lettered:\n{mailer.log()}",
    )
    assert smtp_server.handler.attempts == 0
    log = mailer.log()
    assert "mailer.job_unreadable" in log
    assert f"message_id={job.message_id}" in log
    assert TOKEN not in log
    assert ADDRESS not in log
    properties, body = take_raw(topology.dead_queue, 1)[0]
    assert "GATEHOUSE_MAIL_JOB_KEYS" in properties.headers["x-gatehouse-error"]
    assert TOKEN.encode() not in body
    assert mailer.terminate() == 0


def test_rotation_opens_jobs_under_old_key(smtp_env, smtp_server, mailer_process):
    old_key = load_settings().mail_job_keys[0]
    new_key = Fernet.generate_key().decode()
    old_job, new_job = token_job(), token_job()
    mailer = mailer_process(GATEHOUSE_MAIL_JOB_KEYS=f"{new_key},{old_key}")
    mailer.wait_consuming()

    publish(smtp_env, [old_job], keys=[old_key])
    publish(smtp_env, [new_job], keys=[new_key, old_key])

    wait_for(lambda: len(received_ids(smtp_server)) == 2, 20, message="both deliveries")
    assert received_ids(smtp_server)[old_job.message_id] == 1
    assert received_ids(smtp_server)[new_job.message_id] == 1
    assert mailer.terminate() == 0


def test_first_key_seals_every_key_opens():
    old_key = Fernet.generate_key().decode()
    new_key = Fernet.generate_key().decode()
    job = token_job()

    sealed_new = MailJobCipher([new_key, old_key]).seal(job)

    assert MailJobCipher([new_key]).open(sealed_new) == job
    with pytest.raises(UnreadableMailJob):
        MailJobCipher([old_key]).open(sealed_new)


def test_altered_body_unreadable():
    key = Fernet.generate_key().decode()
    sealed = bytearray(MailJobCipher([key]).seal(token_job()))
    sealed[40] = ord("A") if sealed[40] != ord("A") else ord("B")

    with pytest.raises(UnreadableMailJob):
        MailJobCipher([key]).open(bytes(sealed))


@pytest.mark.parametrize("keys", [[], ["not-a-fernet-key"]])
def test_cipher_rejects_bad_keys(keys):
    with pytest.raises(ConfigError, match="GATEHOUSE_MAIL_JOB_KEYS"):
        MailJobCipher(keys)


def test_sealed_non_job_is_invalid_not_unreadable():
    key = Fernet.generate_key().decode()
    body = Fernet(key.encode()).encrypt(b"[1, 2]")

    with pytest.raises(InvalidMailJob) as raised:
        MailJobCipher([key]).open(body)

    assert not isinstance(raised.value, UnreadableMailJob)


def test_mailer_settings_need_job_keys(mail_env):
    production = replace(load_settings(), environment="production", mail_job_keys=[])

    with pytest.raises(ConfigError, match="GATEHOUSE_MAIL_JOB_KEYS is not set"):
        load_mailer_settings(production)
