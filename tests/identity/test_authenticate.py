"""POST /v1/authenticate: generic failures, throttling and the service credential."""

from __future__ import annotations

import statistics
import time

from gatehouse.agentctl.cli import main as agentctl
from gatehouse.common.config import load_settings
from gatehouse.common.servicekeys import sign_request
from support.signing import placeholder_headers

GOOD = "correct horse battery"
VOLATILE_HEADERS = {"X-Request-ID"}


def _comparable_headers(response):
    return {k: v for k, v in response.headers.items() if k not in VOLATILE_HEADERS}


def test_authenticate_returns_agent(api):
    agent = api.make_agent(login="Alice")
    response = api.login("aLiCe", GOOD)
    assert response.status_code == 200
    assert response.json["agent"]["id"] == agent.id
    assert response.json["agent"]["login"] == "Alice"
    assert response.json["agent"]["must_change_password"] is True
    assert "password_hash" not in response.json["agent"]


def test_unknown_and_wrong_password_identical(api):
    api.make_agent()
    unknown = api.login("nobody", GOOD)
    wrong = api.login("alice", "wrong horse battery")
    assert unknown.status_code == 401
    assert wrong.status_code == 401
    assert unknown.get_data() == wrong.get_data()
    assert _comparable_headers(unknown) == _comparable_headers(wrong)
    assert unknown.json == {
        "error": "invalid_credentials",
        "message": "invalid user name or password",
    }


def test_unknown_login_costs_same_time(make_api):
    # Default (OWASP) argon2 cost, where a missing verification would show.
    api = make_api(IDENTITY_ARGON2_MEMORY_KIB=19456, IDENTITY_ARGON2_TIME_COST=2)
    api.make_agent()

    def median_seconds(login):
        samples = []
        for _ in range(5):
            start = time.perf_counter()
            assert api.login(login, "wrong horse battery").status_code == 401
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)

    known, unknown = median_seconds("alice"), median_seconds("nobody")
    assert 0.5 < unknown / known < 2.0, (known, unknown)


def test_missing_service_credential_is_401(api):
    response = api.client.post("/v1/authenticate", json={"login": "a", "password": "b"})
    assert response.status_code == 401
    assert response.json["error"] == "unauthenticated"
    wrong = api.client.get("/v1/agents/1", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    gateway_key = load_settings().signing_key("gateway")
    stale = sign_request(
        gateway_key, "identity", "GET", "/v1/agents/1", now=time.time() - 120
    )
    expired = api.client.get("/v1/agents/1", headers={"Authorization": stale})
    assert expired.status_code == 401
    assert expired.json["error"] == "unauthenticated"


def test_only_gateway_may_call_identity(api):
    as_identity = api.client.post(
        "/v1/authenticate",
        json={"login": "a", "password": "b"},
        headers=placeholder_headers("identity"),
    )
    assert as_identity.status_code == 403
    assert as_identity.json["error"] == "forbidden"
    as_gateway = api.client.get("/v1/agents/999999", headers=api.headers)
    assert as_gateway.status_code == 404


def test_health_needs_no_credential(api):
    assert api.client.get("/healthz").status_code == 200
    ready = api.client.get("/readyz")
    assert ready.status_code == 200, ready.json


def test_malformed_body_is_400(api):
    not_json = api.client.post("/v1/authenticate", data="x", headers=api.headers)
    assert not_json.status_code == 400
    assert not_json.json["error"] == "invalid_request"
    wrong_type = api.post("/v1/authenticate", {"login": 5, "password": "x"})
    assert wrong_type.status_code == 400


def test_get_agent_and_not_found(api):
    agent = api.make_agent()
    assert api.get(f"/v1/agents/{agent.id}").json["agent"]["email"] == agent.email
    missing = api.get("/v1/agents/999")
    assert missing.status_code == 404
    assert missing.json["error"] == "not_found"


def _wait_until_accepted(api, login, password, deadline_seconds):
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        response = api.login(login, password)
        if response.status_code != 429:
            return response
        time.sleep(0.2)
    return response


def test_login_throttle_blocks_then_releases(make_api):
    api = make_api(IDENTITY_LOGIN_MAX_FAILURES=3, IDENTITY_LOGIN_WINDOW=2)
    api.make_agent()
    assert api.login("alice", "wrong one").status_code == 401
    assert api.login("ALICE", "wrong two").status_code == 401
    filled = api.login("alice", "wrong three")
    assert filled.status_code == 429

    # Even the right password waits while the window is full.
    blocked = api.login("alice", GOOD)
    assert blocked.status_code == 429
    assert blocked.json["error"] == "throttled"
    assert 1 <= int(blocked.headers["Retry-After"]) <= 2
    assert blocked.json["retry_after"] == int(blocked.headers["Retry-After"])

    assert _wait_until_accepted(api, "alice", GOOD, 5).status_code == 200


def test_login_throttle_applies_to_unknown_login(make_api):
    api = make_api(IDENTITY_LOGIN_MAX_FAILURES=2)
    assert api.login("ghost", "wrong one").status_code == 401
    assert api.login("ghost", "wrong two").status_code == 429
    assert api.login("ghost", "wrong three").status_code == 429


def test_ip_throttle_spans_logins(make_api):
    api = make_api(IDENTITY_IP_MAX_FAILURES=3)
    api.make_agent()
    for login in ("one", "two"):
        assert api.login(login, "wrong", client_ip="198.51.100.7").status_code == 401
    assert api.login("three", "wrong", client_ip="198.51.100.7").status_code == 429
    assert api.login("alice", GOOD, client_ip="198.51.100.7").status_code == 429
    assert api.login("alice", GOOD, client_ip="198.51.100.8").status_code == 200


def test_global_throttle(make_api):
    api = make_api(IDENTITY_GLOBAL_MAX_FAILURES=2)
    assert api.login("one", "wrong", client_ip="198.51.100.1").status_code == 401
    assert api.login("two", "wrong", client_ip="198.51.100.2").status_code == 429
    response = api.login("three", "wrong", client_ip="198.51.100.3")
    assert response.status_code == 429


def test_unlock_clears_login_throttle(make_api):
    api = make_api(IDENTITY_LOGIN_MAX_FAILURES=2, IDENTITY_LOGIN_WINDOW=600)
    api.make_agent(login="Locked")
    api.login("locked", "wrong")
    api.login("locked", "wrong")
    assert api.login("locked", GOOD).status_code == 429

    assert agentctl(["agent", "unlock", "LOCKED"]) == 0
    assert api.login("locked", GOOD).status_code == 200


def test_login_events_audited(api):
    agent = api.make_agent()
    api.login("alice", GOOD)
    api.login("alice", "wrong")
    events = api.get(f"/v1/agents/{agent.id}/audit?limit=10").json["events"]
    assert [event["event"] for event in events] == ["login_failed", "login_succeeded"]
    assert events[0]["ip_hash"] and events[0]["ip_hash"] != "192.0.2.10"
    assert events[0]["user_agent"] == "pytest"
    assert events[0]["request_id"]
