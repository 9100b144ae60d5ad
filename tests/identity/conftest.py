"""Fixtures for the identity tests: real SQLite, Redis and RabbitMQ, unique names."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pika
import pytest
import redis
from gatehouse.common.config import load_settings
from gatehouse.common.mail import MailJob, MailJobCipher, Topology
from gatehouse.identity.app import create_app
from gatehouse.identity.database import upgrade_database
from support.signing import install_signing, placeholder_headers

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
REDIS_URL = "redis://127.0.0.1:6379/0"

# Cheap argon2 parameters keep the suite fast; tests of the defaults override them.
CHEAP_ARGON2 = {
    "IDENTITY_ARGON2_MEMORY_KIB": 64,
    "IDENTITY_ARGON2_TIME_COST": 1,
    "IDENTITY_ARGON2_PARALLELISM": 1,
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def stack_env(monkeypatch, tmp_path):
    """Point every setting at a private data folder, prefixes and a closed OTP port."""
    run_id = uuid.uuid4().hex[:12]
    redis_prefix = f"test-identity-{run_id}:"
    amqp_prefix = f"test-identity-{run_id}"
    monkeypatch.setenv("GATEHOUSE_ENV", "development")
    monkeypatch.setenv("GATEHOUSE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GATEHOUSE_REDIS_PREFIX", redis_prefix)
    monkeypatch.setenv("GATEHOUSE_AMQP_PREFIX", amqp_prefix)
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setenv("AMQP_URL", AMQP_URL)
    monkeypatch.setenv("OTP_URLS", f"http://127.0.0.1:{free_port()}")
    for name in (
        "IDENTITY_DATABASE_URL",
        "GATEHOUSE_HIBP_ENABLED",
        "GATEHOUSE_CHANGE_INITIAL_PASSWORD",
        "GATEHOUSE_PASSWORD_MIN_LENGTH",
    ):
        monkeypatch.delenv(name, raising=False)
    yield {
        "redis_prefix": redis_prefix,
        "amqp_prefix": amqp_prefix,
        "data_dir": tmp_path / "data",
    }

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=redis_prefix + "*", count=500):
        client.delete(key)
    client.close()
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    for name in (f"{amqp_prefix}.mail", f"{amqp_prefix}.mail.dead"):
        channel.queue_delete(name)
        channel.exchange_delete(name)
    connection.close()


@pytest.fixture
def built_apps():
    """The identity apps this test built, whose outboxes mail_jobs relays."""
    return []


@pytest.fixture
def make_app(stack_env, built_apps):
    """Return a factory building an identity app on a migrated SQLite database."""
    built = built_apps

    def factory(**overrides):
        # The tests drain the audit queue themselves, so no thread outlives them.
        config = {
            **CHEAP_ARGON2,
            "IDENTITY_MAIL_RETRY_DELAYS": (0.05,),
            "AUDIT_QUEUE_DRAINER": False,
            "IDENTITY_MAIL_RELAY": False,
            **overrides,
        }
        settings = load_settings()
        url = config.get(
            "IDENTITY_DATABASE_URL",
            f"sqlite:///{settings.data_dir / 'identity.sqlite3'}",
        )
        upgrade_database(url)
        app = create_app(config)
        built.append(app)
        return app

    yield factory


class Api:
    """The test client with a credential signed as the gateway on every call."""

    def __init__(self, app):
        self.app = install_signing(app, "identity", load_settings().signing_keys)
        self.client = app.test_client()
        self.headers = placeholder_headers("gateway")

    def get(self, path):
        return self.client.get(path, headers=self.headers)

    def post(self, path, body=None):
        return self.client.post(
            path, json=body if body is not None else {}, headers=self.headers
        )

    @property
    def services(self):
        return self.app.extensions["identity"]

    def make_agent(
        self,
        login="alice",
        password="correct horse battery",
        email=None,
        first_name="Alice",
        last_name="Liddell",
    ):
        return self.services.agents.create_agent(
            login,
            email or f"{login.lower()}@example.com",
            first_name,
            last_name,
            password,
        )

    def login(self, login, password, client_ip="192.0.2.10"):
        return self.post(
            "/v1/authenticate",
            {
                "login": login,
                "password": password,
                "client_ip": client_ip,
                "user_agent": "pytest",
            },
        )

    def drain(self):
        assert self.services.outbox.drain(10), "outbox did not finish in 10 s"


@pytest.fixture
def make_api(make_app):
    """Return a factory building an Api on a new app with config overrides."""
    return lambda **overrides: Api(make_app(**overrides))


@pytest.fixture
def api(make_api):
    return make_api()


@pytest.fixture
def closed_port():
    return free_port()


@pytest.fixture
def mail_jobs(stack_env, built_apps):
    """Return a function that relays the outbox of every app this test built,
    then takes ``count`` jobs from this test's real mail queue."""

    def take(count, timeout=10.0):
        for app in built_apps:
            app.extensions["identity"].outbox.drain(timeout)
        return consume_jobs(stack_env["amqp_prefix"], count, timeout)

    return take


@pytest.fixture
def json_server():
    """Return a factory starting loopback HTTP servers, shut down after the test."""
    servers = []

    def start(respond):
        server = JsonServer(respond)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def consume_jobs(amqp_prefix: str, count: int, timeout: float = 10.0) -> list[MailJob]:
    """Take ``count`` jobs from the real mail queue, polling until ``timeout``."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    Topology(amqp_prefix).declare(channel)
    jobs = []
    deadline = time.monotonic() + timeout
    try:
        while len(jobs) < count and time.monotonic() < deadline:
            method, _properties, body = channel.basic_get(f"{amqp_prefix}.mail")
            if method is None:
                time.sleep(0.05)
                continue
            channel.basic_ack(method.delivery_tag)
            jobs.append(MailJobCipher(load_settings().mail_job_keys).open(body))
    finally:
        connection.close()
    return jobs


class JsonServer:
    """A loopback HTTP server serving GET requests from a function (path -> body)."""

    def __init__(self, respond):
        requests_seen = self.paths = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - name fixed by http.server
                requests_seen.append(self.path)
                status, body, content_type = respond(self.path)
                data = (
                    body.encode()
                    if isinstance(body, str)
                    else json.dumps(body).encode()
                )
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
