"""Fixtures for the functional tests: one stack of real processes per test session.

The stack runs on the real Redis, RabbitMQ and SQLite, delivers mail to an aiosmtpd
server on loopback, and is reached only through the gateway's pages, the way a
browser and an operator reach it.
"""

from __future__ import annotations

import os
import uuid

import pytest
from support.flows import Agent, enroll_app, first_login, unique_login
from support.remote import MailpitMailbox, RemoteStack
from support.smtp import SmtpSink
from support.stack import LocalStack
from support.web import Browser

# Every functional test signs in from 127.0.0.1, so the per-IP and global throttles
# are raised here. The throttling tests use their own stack with tight limits.
FUNCTIONAL_ENV = {
    "IDENTITY_IP_MAX_FAILURES": "10000",
    "IDENTITY_GLOBAL_MAX_FAILURES": "100000",
    "IDENTITY_RESET_IP_MAX": "10000",
    "OTP_THROTTLE_IP_MAX": "10000",
    "OTP_THROTTLE_GLOBAL_MAX": "100000",
}

REMOTE_TARGET = os.environ.get("GATEHOUSE_TARGET_URL")


@pytest.fixture(scope="session")
def smtp():
    if REMOTE_TARGET:
        yield MailpitMailbox(os.environ["GATEHOUSE_MAILPIT_URL"])
        return
    sink = SmtpSink().start()
    yield sink
    sink.stop()


# The suite runs twice: on SQLite with one OTP replica, and on PostgreSQL with three
# replicas behind the gateway's round robin.
STACK_VARIANTS = {
    "sqlite-1-otp": {"database": "sqlite", "otp_replicas": 1},
    "postgresql-3-otp": {"database": "postgresql", "otp_replicas": 3},
}


@pytest.fixture(scope="session", params=sorted(STACK_VARIANTS))
def stack(request, smtp):
    if REMOTE_TARGET:
        if request.param != "sqlite-1-otp":
            pytest.skip("a remote target is tested once, as it was started")
        yield RemoteStack()
        return
    variant = STACK_VARIANTS[request.param]
    extra = dict(FUNCTIONAL_ENV)
    databases = []
    if variant["database"] == "postgresql":
        databases = _create_postgres_databases()
        extra.update(databases)
    local = LocalStack(
        smtp.port, otp_replicas=variant["otp_replicas"], extra_env=extra
    ).start()
    yield local
    local.stop()
    _drop_postgres_databases(databases)


POSTGRES_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def _create_postgres_databases() -> dict[str, str]:
    """Create one fresh database per service; return their URL variables."""
    import psycopg

    urls = {}
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as connection:
        for service in ("identity", "otp"):
            name = f"gatehouse_test_{service}_{uuid.uuid4().hex[:10]}"
            connection.execute(f'CREATE DATABASE "{name}"')
            urls[f"{service.upper()}_DATABASE_URL"] = (
                f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
            )
    return urls


def _drop_postgres_databases(urls) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as connection:
        for url in dict(urls).values():
            name = url.rsplit("/", 1)[1]
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def make_agent(stack):
    def create(
        first_name: str = "Ann",
        last_name: str = "Agent",
        password: str | None = "initial password 1",
    ) -> Agent:
        login = unique_login()
        email = f"{login}@example.test"
        arguments = [
            "agent",
            "add",
            login,
            "--email",
            email,
            "--first-name",
            first_name,
            "--last-name",
            last_name,
        ]
        if password is not None:
            arguments += ["--password", password]
        result = stack.agentctl(*arguments)
        assert result.returncode == 0, result.stderr
        if password is None:
            password = result.stdout.rstrip("\n").splitlines()[-1]
        return Agent(login, email, first_name, last_name, password)

    return create


@pytest.fixture
def browser(stack):
    return Browser(stack.url)


@pytest.fixture
def app_agent(make_agent, stack):
    """An agent who finished the first login with the authenticator app, logged out."""
    agent = make_agent()
    browser = Browser(stack.url)
    first_login(browser, agent)
    agent.secret, page = enroll_app(browser)
    assert page.name == "dashboard", page
    browser.post("/agent/logout", {})
    return agent
