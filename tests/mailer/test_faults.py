"""Delivery faults against the real mailer process, RabbitMQ, Redis and SMTP.

Each test counts the mails that reach an aiosmtpd server on loopback: every
queued mail must arrive, and none twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter

import pika
import pytest
from gatehouse.common.mail import MailJob, MailPublisher, Topology

from .conftest import AMQP_URL, wait_for

pytestmark = pytest.mark.timeout(120)


def token_job(number: int) -> MailJob:
    return MailJob(
        kind="token",
        to=f"agent{number}@example.test",
        agent_id=number,
        first_name="Agent",
        params={"token": f"{100000 + number}", "ttl_seconds": 600},
        request_id=f"fault-test-{number:04d}",
    )


def publish(env: dict, jobs: list[MailJob]) -> None:
    publisher = MailPublisher(AMQP_URL, env["GATEHOUSE_AMQP_PREFIX"])
    for job in jobs:
        publisher.publish(job)
    publisher._discard()


def received_ids(smtp_server) -> Counter:
    """Count received mails by their Message-ID's local part (the job id)."""
    return Counter(
        message["Message-ID"].strip("<>").split("@")[0]
        for message in smtp_server.handler.parsed()
    )


def queue_depth(env: dict, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        result = connection.channel().queue_declare(queue, passive=True)
        return result.method.message_count
    finally:
        connection.close()


@pytest.fixture
def smtp_env(mail_env, smtp_server, monkeypatch):
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(smtp_server.port))
    return mail_env


def test_sigterm_exits_zero(smtp_env, smtp_server, mailer_process):
    mailer = mailer_process()
    mailer.wait_consuming()
    jobs = [token_job(n) for n in range(3)]
    publish(smtp_env, jobs)
    wait_for(lambda: len(received_ids(smtp_server)) == 3, 20, message="3 mails")

    assert mailer.terminate() == 0
    assert "mailer.stopped" in mailer.log()
    assert "482913" not in mailer.log()


def assert_each_once(counts: Counter, jobs: list[MailJob]) -> None:
    for job in jobs:
        assert counts[job.message_id] == 1, (
            f"{job.message_id}: {counts[job.message_id]}"
        )
    assert sum(counts.values()) == len(jobs)


def test_kill_9_midway_delivers_each_once(smtp_env, smtp_server, mailer_process):
    jobs = [token_job(n) for n in range(20)]
    publish(smtp_env, jobs)
    smtp_server.handler.delay = 0.05
    first = mailer_process(SMTP_TIMEOUT="2")
    wait_for(lambda: len(smtp_server.handler.messages) >= 6, 20, message="6 mails")

    # Hold every further DATA reply, let mails already accepted finish their
    # Redis write, then kill the mailer while the held ones are in flight.
    smtp_server.handler.hold = True
    wait_for(lambda: smtp_server.handler.waiting >= 1, 10, message="a held mail")
    time.sleep(0.5)
    first.kill()
    before_restart = len(smtp_server.handler.messages)
    smtp_server.handler.hold = False
    assert before_restart < len(jobs)

    second = mailer_process(SMTP_TIMEOUT="2")
    wait_for(
        lambda: len(received_ids(smtp_server)) == len(jobs),
        40,
        message=f"all mails after restart:\n{second.log()}",
    )
    time.sleep(1.5)

    assert_each_once(received_ids(smtp_server), jobs)
    assert second.terminate() == 0


def rabbit_connection_pid(name: str) -> str | None:
    listing = subprocess.run(
        [
            "rabbitmqctl",
            "list_connections",
            "pid",
            "client_properties",
            "--no-table-headers",
            "-q",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    for line in listing.splitlines():
        if f'{{"connection_name","{name}"}}' in line:
            return line.split("\t")[0]
    return None


def test_connection_closed_reconnects(smtp_env, smtp_server, mailer_process):
    name = smtp_env["MAILER_CONNECTION_NAME"]
    mailer = mailer_process()
    mailer.wait_consuming()
    pid = wait_for(lambda: rabbit_connection_pid(name), 15, message="connection")
    smtp_server.handler.delay = 0.3
    jobs = [token_job(n) for n in range(10)]
    publish(smtp_env, jobs)
    wait_for(lambda: len(smtp_server.handler.messages) >= 2, 20, message="2 mails")

    subprocess.run(
        ["rabbitmqctl", "close_connection", pid, "fault test"],
        capture_output=True,
        check=True,
        timeout=30,
    )

    mailer.wait_consuming(count=2, timeout=20)
    assert "mailer.reconnect" in mailer.log()
    new_pid = wait_for(lambda: rabbit_connection_pid(name), 15, message="reconnect")
    assert new_pid != pid
    wait_for(
        lambda: len(received_ids(smtp_server)) == len(jobs),
        40,
        message=f"all mails after reconnect:\n{mailer.log()}",
    )
    time.sleep(1.5)
    assert_each_once(received_ids(smtp_server), jobs)
    assert mailer.terminate() == 0


def test_smtp_down_then_back_retries(smtp_env, smtp_server, mailer_process):
    smtp_server.stop()
    down_since = time.monotonic()
    mailer = mailer_process()
    mailer.wait_consuming()
    jobs = [token_job(n) for n in range(5)]
    publish(smtp_env, jobs)
    wait_for(
        lambda: mailer.log().count("mailer.retry_scheduled") >= 10,
        20,
        message=f"retries while SMTP is down:\n{mailer.log()}",
    )
    time.sleep(max(0.0, 10 - (time.monotonic() - down_since)))

    smtp_server.start()
    wait_for(
        lambda: len(received_ids(smtp_server)) == len(jobs),
        30,
        message=f"all mails after SMTP came back:\n{mailer.log()}",
    )
    time.sleep(1)
    assert_each_once(received_ids(smtp_server), jobs)
    assert (
        queue_depth(smtp_env, Topology(smtp_env["GATEHOUSE_AMQP_PREFIX"]).dead_queue)
        == 0
    )
    assert mailer.terminate() == 0


def test_smtp_slower_than_heartbeat(smtp_env, smtp_server, mailer_process):
    smtp_server.handler.delay = 6
    mailer = mailer_process(MAILER_HEARTBEAT="2", SMTP_TIMEOUT="15")
    mailer.wait_consuming()
    jobs = [token_job(n) for n in range(2)]
    started = time.monotonic()
    publish(smtp_env, jobs)

    wait_for(
        lambda: len(received_ids(smtp_server)) == len(jobs),
        30,
        message=f"slow mails:\n{mailer.log()}",
    )
    assert time.monotonic() - started >= 6
    time.sleep(1)
    assert_each_once(received_ids(smtp_server), jobs)
    assert "mailer.connection_lost" not in mailer.log()
    assert mailer.log().count("mailer.consuming") == 1
    assert mailer.terminate() == 0


def test_smtp_550_dead_letters(smtp_env, smtp_server, mailer_process):
    smtp_server.handler.mode = "reject"
    dead_queue = Topology(smtp_env["GATEHOUSE_AMQP_PREFIX"]).dead_queue
    mailer = mailer_process()
    mailer.wait_consuming()
    jobs = [token_job(n) for n in range(3)]
    publish(smtp_env, jobs)

    wait_for(
        lambda: queue_depth(smtp_env, dead_queue) == 3,
        20,
        message=f"dead-lettered mails:\n{mailer.log()}",
    )
    assert smtp_server.handler.attempts == 3
    assert smtp_server.handler.messages == []
    for job in jobs:
        assert f"mailer.dead_lettered request_id={job.request_id}" in mailer.log()
        assert f"message_id={job.message_id}" in mailer.log()
    assert "mailer.retry_scheduled" not in mailer.log()
    assert mailer.terminate() == 0


def test_invalid_body_dead_letters(smtp_env, smtp_server, mailer_process):
    topology = Topology(smtp_env["GATEHOUSE_AMQP_PREFIX"])
    mailer = mailer_process()
    mailer.wait_consuming()
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    channel.basic_publish(
        topology.exchange,
        "mail",
        b"{not json",
        pika.BasicProperties(message_id="broken-1", delivery_mode=2),
    )
    connection.close()

    wait_for(
        lambda: queue_depth(smtp_env, topology.dead_queue) == 1,
        20,
        message=f"dead-lettered body:\n{mailer.log()}",
    )
    assert "message_id=broken-1" in mailer.log()
    assert mailer.terminate() == 0


def test_redelivered_job_sent_once(smtp_env, smtp_server, mailer_process):
    job = token_job(1)
    publish(smtp_env, [job])
    mailer = mailer_process()
    wait_for(lambda: len(smtp_server.handler.messages) == 1, 20, message="first mail")

    publish(smtp_env, [job])
    wait_for(
        lambda: "mailer.duplicate_skipped" in mailer.log(),
        20,
        message=f"duplicate skipped:\n{mailer.log()}",
    )
    assert received_ids(smtp_server) == Counter({job.message_id: 1})
    assert mailer.terminate() == 0


def test_mailbox_without_smtp_host(mail_env, mailer_process):
    mailer = mailer_process()
    mailer.wait_consuming()
    publish(mail_env, [token_job(1)])

    mailbox = os.path.join(mail_env["GATEHOUSE_DATA_DIR"], "mailbox")
    # The transport writes a .tmp file and renames it, so wait for the rename.
    wait_for(
        lambda: (
            os.path.isdir(mailbox)
            and any(entry.endswith(".eml") for entry in os.listdir(mailbox))
        ),
        20,
        message=f"mailbox file:\n{mailer.log()}",
    )
    (name,) = os.listdir(mailbox)
    assert name.endswith(".eml")
    assert f"mailer.saved_to_mailbox request_id=fault-test-0001 path={mailbox}" in (
        mailer.log()
    )
    with open(os.path.join(mailbox, name), "rb") as handle:
        assert b"\r\n100001\r\n" in handle.read()
    assert mailer.terminate() == 0


def test_alive_key_and_check(mail_env, mailer_process):
    import sys

    check = [sys.executable, "-m", "gatehouse.mailer.worker", "--check"]
    assert subprocess.run(check, capture_output=True, check=False).returncode == 1
    mailer = mailer_process()
    mailer.wait_consuming()
    wait_for(
        lambda: subprocess.run(check, capture_output=True, check=False).returncode == 0,
        10,
        message="alive key",
    )
    mailer.process.send_signal(signal.SIGINT)
    assert mailer.process.wait(15) == 0


def test_sigterm_finishes_in_flight_mail(smtp_env, smtp_server, mailer_process):
    smtp_server.handler.delay = 2
    mailer = mailer_process()
    mailer.wait_consuming()
    job = token_job(1)
    publish(smtp_env, [job])
    wait_for(lambda: smtp_server.handler.attempts == 1, 10, message="mail in flight")

    assert mailer.terminate() == 0
    assert received_ids(smtp_server) == Counter({job.message_id: 1})
    assert "mailer.requeued_on_stop" not in mailer.log()
    queue = Topology(smtp_env["GATEHOUSE_AMQP_PREFIX"]).queue
    assert queue_depth(smtp_env, queue) == 0


def test_sigterm_requeues_after_grace(smtp_env, smtp_server, mailer_process):
    smtp_server.handler.delay = 3
    first = mailer_process(MAILER_SHUTDOWN_GRACE="0")
    first.wait_consuming()
    job = token_job(1)
    publish(smtp_env, [job])
    wait_for(lambda: smtp_server.handler.attempts == 1, 10, message="mail in flight")

    assert first.terminate() == 0
    assert "mailer.requeued_on_stop" in first.log()
    smtp_server.handler.delay = 0
    second = mailer_process()
    wait_for(
        lambda: "mailer.duplicate_skipped" in second.log(),
        20,
        message=f"requeued copy skipped:\n{second.log()}",
    )
    assert received_ids(smtp_server) == Counter({job.message_id: 1})
    assert second.terminate() == 0
