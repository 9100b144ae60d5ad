"""Gateway unit tests: the real gateway app and Redis, with fake backend services.

The identity and OTP clients are replaced by small fakes here; the functional
tests run the same pages against the real services.
"""

from __future__ import annotations

import uuid

import pytest
import redis
from gatehouse.common.internal import ServiceResponse
from gatehouse.gateway.app import create_app


class FakeService:
    """Return canned responses to internal calls, looked up by (method, path)."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], ServiceResponse] = {}
        self.calls: list[tuple[str, str, dict | None]] = []
        self.base_urls: list[str] = []

    def answer(self, method: str, path: str, status: int, body: dict | None = None):
        self.routes[(method, path)] = ServiceResponse(status, body or {}, {})

    def call(self, method, path, json=None):
        self.calls.append((method, path, json))
        try:
            return self.routes[(method, path)]
        except KeyError:
            raise AssertionError(f"unexpected call {method} {path}") from None

    def get(self, path):
        return self.call("GET", path)

    def post(self, path, json=None):
        return self.call("POST", path, json)

    def delete(self, path):
        return self.call("DELETE", path)


@pytest.fixture
def redis_prefix(monkeypatch, tmp_path):
    prefix = f"test-{uuid.uuid4().hex}:"
    monkeypatch.setenv("GATEHOUSE_REDIS_PREFIX", prefix)
    monkeypatch.setenv("GATEHOUSE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("GATEHOUSE_ENV", "development")
    yield prefix
    client = redis.Redis()
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)


@pytest.fixture
def services():
    return {"identity": FakeService(), "otp": FakeService()}


@pytest.fixture
def app(redis_prefix, services):
    application = create_app({"TESTING": True})
    application.extensions["identity"] = services["identity"]
    application.extensions["otp"] = services["otp"]
    return application


@pytest.fixture
def client(app):
    return app.test_client()
