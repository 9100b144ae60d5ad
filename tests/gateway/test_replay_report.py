"""The second step's response to an already-used code: audit event and notice."""

from __future__ import annotations

import json

import pytest
import redis
from gatehouse.common.audit_queue import QUEUE_KEY

from .test_pages import _csrf, _login

REPLAYED = {
    "error": "replayed_token",
    "message": "This code was already used. Wait for the next code in your "
    "authenticator app.",
}


def _audit_events(prefix: str) -> list[dict]:
    client = redis.Redis()
    return [json.loads(raw) for raw in client.lrange(prefix + QUEUE_KEY, 0, -1)]


def _notice_calls(services) -> list[dict]:
    return [
        body
        for method, path, body in services["identity"].calls
        if method == "POST" and path == "/v1/agents/7/notices"
    ]


def _submit_code(client, code: str = "123456"):
    token = _csrf(client.get("/agent/2fa"))
    return client.post("/agent/2fa", data={"token": code, "csrf_token": token})


@pytest.fixture
def replaying(client, services):
    _login(client, services)
    services["otp"].answer("POST", "/v1/verifications", 400, REPLAYED)
    services["identity"].answer("POST", "/v1/agents/7/notices", 202, {})
    return client


def test_replay_audited_and_noticed_once(replaying, services, redis_prefix):
    first = _submit_code(replaying)
    second = _submit_code(replaying)

    assert first.status_code == 400
    assert b"This code was already used." in first.data
    assert b'data-page="2fa-verify"' in second.data
    events = _audit_events(redis_prefix)
    replayed = [e for e in events if e["event"].startswith("second_factor")]
    assert [e["event"] for e in replayed] == ["second_factor_replayed"] * 2
    assert replayed[0]["detail"] == {"method": "app"}
    assert _notice_calls(services) == [{"event": "second_factor_replayed"}]
    key = f"{redis_prefix}gw:notice-sent:second_factor_replayed:7"
    assert 3500 < redis.Redis().ttl(key) <= 3600


def test_wrong_code_not_reported_as_replay(client, services, redis_prefix):
    _login(client, services)
    services["otp"].answer(
        "POST",
        "/v1/verifications",
        400,
        {"error": "invalid_token", "message": "The code is not valid."},
    )

    _submit_code(client)

    events = [e["event"] for e in _audit_events(redis_prefix)]
    assert "second_factor_failed" in events
    assert "second_factor_replayed" not in events
    assert _notice_calls(services) == []


def test_replay_notice_interval_zero_sends_each(redis_prefix, services, monkeypatch):
    from gatehouse.gateway.app import create_app

    monkeypatch.setenv("GATEWAY_REPLAY_NOTICE_INTERVAL", "0")
    application = create_app({"TESTING": True})
    application.extensions["identity"] = services["identity"]
    application.extensions["otp"] = services["otp"]
    client = application.test_client()
    _login(client, services)
    services["otp"].answer("POST", "/v1/verifications", 400, REPLAYED)
    services["identity"].answer("POST", "/v1/agents/7/notices", 202, {})

    _submit_code(client)
    _submit_code(client)

    assert len(_notice_calls(services)) == 2
