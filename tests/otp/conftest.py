"""Fixtures for the OTP tests: real Redis, RabbitMQ and SQLite, with unique names."""

from __future__ import annotations

import os
import socket
import time
import uuid

import pika
import pyotp
import pytest
import redis
from cryptography.fernet import Fernet
from gatehouse.common.config import load_settings
from gatehouse.common.mail import MailJob, MailJobCipher
from gatehouse.otp.app import create_app
from gatehouse.otp.migrations import upgrade_database
from support.signing import install_signing, placeholder_headers

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
REDIS_URL = "redis://127.0.0.1:6379/0"


def find_free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def free_port():
    return find_free_port


def _private_env(data_dir) -> dict[str, str]:
    run_id = uuid.uuid4().hex[:12]
    return {
        "GATEHOUSE_ENV": "development",
        "GATEHOUSE_DATA_DIR": str(data_dir),
        "GATEHOUSE_REDIS_PREFIX": f"test-otp-{run_id}:",
        "GATEHOUSE_AMQP_PREFIX": f"test-otp-{run_id}",
        "REDIS_URL": REDIS_URL,
        "AMQP_URL": AMQP_URL,
        "GATEHOUSE_SECRET_KEY": "test-secret-" + uuid.uuid4().hex,
        "GATEHOUSE_OTP_KEYS": Fernet.generate_key().decode(),
        "GATEHOUSE_LOG_HASH_KEY": "test-log-hash-" + uuid.uuid4().hex,
    }


def _apply_env(monkeypatch, env: dict[str, str]) -> None:
    for name in list(os.environ):
        if name.startswith("OTP_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def _remove_server_state(env: dict[str, str]) -> None:
    """Delete the run's Redis keys and its RabbitMQ queues and exchanges."""
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=env["GATEHOUSE_REDIS_PREFIX"] + "*", count=500):
        client.delete(key)
    client.close()
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    prefix = env["GATEHOUSE_AMQP_PREFIX"]
    for name in (f"{prefix}.mail", f"{prefix}.mail.dead"):
        channel.queue_delete(name)
        channel.exchange_delete(name)
    connection.close()


@pytest.fixture
def otp_env(monkeypatch, tmp_path):
    """Point every setting at a private data folder and private server names."""
    env = _private_env(tmp_path / "data")
    _apply_env(monkeypatch, env)
    yield env
    _remove_server_state(env)


@pytest.fixture(scope="module")
def module_otp_env(tmp_path_factory):
    """Like ``otp_env``, shared by the tests of one module."""
    env = _private_env(tmp_path_factory.mktemp("otp") / "data")
    with pytest.MonkeyPatch.context() as monkeypatch:
        _apply_env(monkeypatch, env)
        yield env
    _remove_server_state(env)


class Api:
    """Flask test client that sends a credential signed as the gateway on every
    call. The signing keys are the development ones in the test's data folder."""

    def __init__(self, app) -> None:
        self.app = install_signing(app, "otp", load_settings().signing_keys)
        self.headers = placeholder_headers("gateway")

    def post(self, path: str, body: dict | None = None):
        return self.app.test_client().post(path, json=body or {}, headers=self.headers)

    def get(self, path: str):
        return self.app.test_client().get(path, headers=self.headers)

    def delete(self, path: str):
        return self.app.test_client().delete(path, headers=self.headers)


@pytest.fixture
def make_api(otp_env):
    """Return a factory of Api objects over freshly built apps (one database)."""
    upgrade_database()

    def factory(**overrides) -> Api:
        return Api(create_app({"TESTING": True, **overrides}))

    return factory


@pytest.fixture
def api(make_api) -> Api:
    return make_api()


class MailQueue:
    """Reads the mail jobs the service published, straight from RabbitMQ."""

    def __init__(self, prefix: str) -> None:
        self.queue = f"{prefix}.mail"
        self._connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        self._channel = self._connection.channel()
        self._seen: list[tuple[MailJob, pika.BasicProperties]] = []
        self._cipher = MailJobCipher(load_settings().mail_job_keys)

    def _drain(self) -> None:
        while True:
            try:
                method, properties, body = self._channel.basic_get(
                    self.queue, auto_ack=True
                )
            except pika.exceptions.ChannelClosedByBroker:
                # The queue does not exist until the first publish declares it.
                self._channel = self._connection.channel()
                return
            if method is None:
                return
            self._seen.append((self._cipher.open(body), properties))

    def jobs(self, agent_id: int) -> list[MailJob]:
        self._drain()
        return [job for job, _ in self._seen if job.agent_id == agent_id]

    def wait_for(self, agent_id: int, count: int = 1, timeout: float = 5.0) -> MailJob:
        """Return the newest job for the agent once ``count`` have arrived."""
        deadline = time.monotonic() + timeout
        while True:
            jobs = self.jobs(agent_id)
            if len(jobs) >= count:
                return jobs[-1]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(jobs)} of {count} mail jobs arrived for agent {agent_id}"
                )
            time.sleep(0.05)

    def properties(self, job: MailJob) -> pika.BasicProperties:
        return next(
            props for seen, props in self._seen if seen.message_id == job.message_id
        )

    def close(self) -> None:
        self._connection.close()


@pytest.fixture(scope="session")
def mail_queue_class():
    return MailQueue


@pytest.fixture
def mail_queue(otp_env):
    queue = MailQueue(otp_env["GATEHOUSE_AMQP_PREFIX"])
    yield queue
    queue.close()


AGENT = 41


class Flows:
    """One-call steps of the API that most tests need."""

    def __init__(self, mail_queue: MailQueue) -> None:
        self.mail_queue = mail_queue

    def enroll_email(
        self, api: Api, agent_id: int = AGENT, email_security: bool = False
    ) -> list[str]:
        before = len(self.mail_queue.jobs(agent_id))
        answer = api.post(
            "/v1/enrollments/email",
            {
                "agent_id": agent_id,
                "email": "ada@example.test",
                "first_name": "Ada",
                "email_security": email_security,
            },
        )
        assert answer.status_code == 202, answer.json
        job = self.mail_queue.wait_for(agent_id, count=before + 1)
        confirmed = api.post(
            "/v1/enrollments/email/confirm",
            {
                "agent_id": agent_id,
                "token": job.params["token"],
                "client_ip": "127.0.0.1",
            },
        )
        assert confirmed.status_code == 200, confirmed.json
        return confirmed.json["recovery_codes"]

    def enroll_app(self, api: Api, agent_id: int = AGENT) -> tuple[str, list[str]]:
        """Enroll an app factor; return the secret and the recovery codes.

        The confirming code is the previous time step's, so the current step's
        code stays usable for a login right afterwards.
        """
        started = api.post(
            "/v1/enrollments/app", {"agent_id": agent_id, "account_name": "ada"}
        )
        assert started.status_code == 200, started.json
        secret = started.json["secret"]
        code = pyotp.TOTP(secret).at(time.time() - 30)
        confirmed = api.post(
            "/v1/enrollments/app/confirm",
            {
                "agent_id": agent_id,
                "token": code,
                "client_ip": "127.0.0.1",
            },
        )
        assert confirmed.status_code == 200, confirmed.json
        return secret, confirmed.json["recovery_codes"]

    def challenge(self, api: Api, agent_id: int = AGENT):
        return api.post(
            "/v1/challenges",
            {
                "agent_id": agent_id,
                "email": "ada@example.test",
                "first_name": "Ada",
                "client_ip": "127.0.0.1",
            },
        )

    def login_code(self, api: Api, agent_id: int = AGENT) -> str:
        """Request a login challenge and return the code from its mail."""
        before = len(self.mail_queue.jobs(agent_id))
        answer = self.challenge(api, agent_id)
        assert answer.status_code == 202, answer.json
        return self.mail_queue.wait_for(agent_id, count=before + 1).params["token"]

    @staticmethod
    def verify(
        api: Api, token: str, agent_id: int = AGENT, client_ip: str = "127.0.0.1"
    ):
        return api.post(
            "/v1/verifications",
            {
                "agent_id": agent_id,
                "token": token,
                "client_ip": client_ip,
            },
        )


@pytest.fixture
def flows(mail_queue) -> Flows:
    return Flows(mail_queue)


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()
