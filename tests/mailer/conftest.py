"""Fixtures for the mailer tests: isolated settings, keys, certificates, SMTP.

Every test gets its own data folder, Redis prefix and AMQP prefix, and removes
its Redis keys, queues and exchanges afterwards, because other test runs share
the same servers.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pika
import pytest
import redis
from aiosmtpd.controller import Controller
from gatehouse.common.mail import Topology
from support.crypto import GpgHome

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
REDIS_URL = "redis://127.0.0.1:6379/0"
TEST_RETRY_DELAYS = "1,1,2,2,3,3,3,3,3,3"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout: float, interval: float = 0.1, message: str = ""):
    """Poll ``condition`` until it returns a true value or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s: {message}")


# --- SMTP -----------------------------------------------------------------


@dataclass
class CapturingHandler:
    """An aiosmtpd handler that keeps every accepted mail.

    ``mode``: "accept", "reject" (550 on DATA), "tempfail" (451 on DATA).
    ``delay`` seconds pass before each DATA reply; while ``hold`` is set, DATA
    replies wait. A mail whose client went away during the wait is not kept,
    as a server that commits and replies in one step would do.
    """

    mode: str = "accept"
    delay: float = 0.0
    hold: bool = False
    messages: list = field(default_factory=list)
    attempts: int = 0
    waiting: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd API
        with self.lock:
            self.attempts += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        self.waiting += 1
        while self.hold:
            await asyncio.sleep(0.05)
        self.waiting -= 1
        if server.transport is None or server.transport.is_closing():
            return "421 4.4.2 client went away"
        if self.mode == "reject":
            return "550 5.1.1 mailbox unavailable"
        if self.mode == "tempfail":
            return "451 4.3.0 try again later"
        with self.lock:
            self.messages.append((envelope.rcpt_tos, envelope.content))
        return "250 2.0.0 accepted"

    def parsed(self) -> list[email.message.EmailMessage]:
        with self.lock:
            contents = [content for _, content in self.messages]
        return [
            email.message_from_bytes(content, policy=email.policy.default)
            for content in contents
        ]


class SmtpServer:
    """An aiosmtpd server on a loopback port that can be stopped and restarted."""

    def __init__(self, handler: CapturingHandler | None = None) -> None:
        self.handler = handler or CapturingHandler()
        self.port = free_port()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp_server():
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


# --- isolated settings ----------------------------------------------------


@pytest.fixture
def short_tmp():
    """A temporary folder with a short path (GnuPG socket paths are limited)."""
    path = Path(tempfile.mkdtemp(prefix="ghm-", dir="/tmp"))
    yield path
    for home in path.rglob("pubring.kbx"):
        subprocess.run(
            ["gpgconf", "--homedir", str(home.parent), "--kill", "all"],
            check=False,
            capture_output=True,
        )
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def mail_env(short_tmp, monkeypatch):
    """Environment for one mailer: unique prefixes, own data folder, fast retries."""
    run = uuid.uuid4().hex[:12]
    data_dir = short_tmp / "data"
    values = {
        "GATEHOUSE_ENV": "development",
        "GATEHOUSE_DATA_DIR": str(data_dir),
        "GATEHOUSE_REDIS_PREFIX": f"test-mailer-{run}:",
        "GATEHOUSE_AMQP_PREFIX": f"test-mailer-{run}",
        "REDIS_URL": REDIS_URL,
        "AMQP_URL": AMQP_URL,
        "GATEHOUSE_MAIL_RETRY_DELAYS": TEST_RETRY_DELAYS,
        "MAILER_CONNECTION_NAME": f"test-mailer-{run}",
        "SMTP_TIMEOUT": "5",
        "MAILER_SHUTDOWN_GRACE": "5",
    }
    for name in (
        "SMTP_HOST",
        "SMTP_PORT",
        "SMTP_USERNAME",
        "SMTP_PASSWORD",
        "SMTP_STARTTLS",
        "SMTP_TLS",
        "SMTP_CA_FILE",
        "GATEHOUSE_MAIL_JOB_KEYS",
        "GATEHOUSE_PGP_ENABLED",
        "GATEHOUSE_SMIME_ENABLED",
        "GATEHOUSE_ENCRYPTION_ORDER",
        "GATEHOUSE_ENCRYPTION_FALLBACK",
        "MAIL_FROM",
        "MAILER_HEARTBEAT",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    yield values

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=values["GATEHOUSE_REDIS_PREFIX"] + "*"))
    if keys:
        client.delete(*keys)
    delete_topology(values["GATEHOUSE_AMQP_PREFIX"])


def delete_topology(prefix: str) -> None:
    topology = Topology(prefix)
    delays = [int(item) for item in TEST_RETRY_DELAYS.split(",")]
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        for queue in topology.queue_names(delays):
            channel.queue_delete(queue)
        channel.exchange_delete(topology.exchange)
        channel.exchange_delete(topology.dead_exchange)
    finally:
        connection.close()


# --- PGP ------------------------------------------------------------------


@pytest.fixture
def recipient_gpg(short_tmp) -> GpgHome:
    return GpgHome(short_tmp / "recipient-gnupg")


# --- the mailer process -----------------------------------------------------


class MailerProcess:
    """``python -m gatehouse.mailer.worker`` with the test's environment."""

    def __init__(self, log_path: Path, extra_env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        import os
        import sys

        environment = {**os.environ, **self.extra_env, "GATEHOUSE_LOG_FORMAT": "text"}
        self.log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gatehouse.mailer.worker"],
            env=environment,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_consuming(self, count: int = 1, timeout: float = 15) -> None:
        wait_for(
            lambda: self.log().count("mailer.consuming") >= count,
            timeout,
            message=f"mailer did not start consuming:\n{self.log()}",
        )

    def terminate(self, timeout: float = 15) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.terminate()
        try:
            return self.process.wait(timeout)
        finally:
            self.log_file.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(5)
        self.log_file.close()


@pytest.fixture
def mailer_process(mail_env, short_tmp):
    """Start mailer processes on demand; terminate every one at the end."""
    started: list[MailerProcess] = []

    def start(**extra_env: str) -> MailerProcess:
        process = MailerProcess(short_tmp / f"mailer-{len(started)}.log", extra_env)
        process.start()
        started.append(process)
        return process

    yield start
    for process in started:
        if process.process.poll() is None:
            process.process.kill()
            process.process.wait(5)
