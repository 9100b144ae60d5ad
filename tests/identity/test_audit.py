"""POST /v1/audit and GET /v1/agents/<id>/audit."""

from __future__ import annotations

from gatehouse.common.config import load_settings
from gatehouse.common.logs import hash_ip


def test_audit_event_recorded_and_listed(api):
    agent = api.make_agent()
    created = api.post(
        "/v1/audit",
        {
            "agent_id": agent.id,
            "event": "factor_enrolled",
            "client_ip": "203.0.113.9",
            "user_agent": "Mozilla/5.0 " + "x" * 500,
            "detail": {"method": "app"},
        },
    )
    assert created.status_code == 201

    [event] = api.get(f"/v1/agents/{agent.id}/audit").json["events"]
    assert event["event"] == "factor_enrolled"
    assert event["detail"] == {"method": "app"}
    assert event["ip_hash"] == hash_ip(load_settings().log_hash_key, "203.0.113.9")
    assert len(event["user_agent"]) == 256
    assert event["time"].endswith("Z")


def test_audit_list_newest_first_with_limit(api):
    agent = api.make_agent()
    for number in range(5):
        api.post("/v1/audit", {"agent_id": agent.id, "event": f"step_{number}"})
    events = api.get(f"/v1/agents/{agent.id}/audit?limit=3").json["events"]
    assert [event["event"] for event in events] == ["step_4", "step_3", "step_2"]


def test_audit_rejects_bad_input(api):
    cases = [
        {"agent_id": "7", "event": "x"},
        {"agent_id": 1, "event": "Bad Event"},
        {"agent_id": 1, "event": "ok", "detail": ["not", "an", "object"]},
        {"agent_id": 1, "event": "ok", "detail": {"big": "y" * 5000}},
        {"agent_id": 1},
    ]
    for body in cases:
        response = api.post("/v1/audit", body)
        assert response.status_code == 400, body
        assert response.json["error"] == "invalid_request"
    for limit in ("0", "abc", "100000"):
        assert api.get(f"/v1/agents/1/audit?limit={limit}").status_code == 400


def test_password_change_audited_and_notified(api, mail_jobs):
    agent = api.make_agent()
    response = api.post(
        f"/v1/agents/{agent.id}/password",
        {
            "new_password": "my own new secret",
            "new_password_confirm": "my own new secret",
            "client_ip": "192.0.2.1",
            "user_agent": "pytest",
        },
    )
    assert response.status_code == 200
    assert response.json["agent"]["must_change_password"] is False
    events = api.get(f"/v1/agents/{agent.id}/audit").json["events"]
    assert events[0]["event"] == "password_changed"
    [notice] = mail_jobs(1)
    assert notice.params == {"event": "password_changed"}


def test_odd_input_is_4xx_not_500(api):
    agent = api.make_agent()
    cases = [
        api.get("/v1/agents/99999999999999999999"),
        api.get("/v1/agents/99999999999999999999/audit"),
        api.post("/v1/audit", {"agent_id": 2**40, "event": "ok"}),
        api.login("nul\x00login", "correct horse battery"),
        api.login("x" * 5000, "y" * 5000),
        api.post(f"/v1/agents/{agent.id}/password", {"new_password": 5}),
        api.post(
            "/v1/password-resets", {"login": ["a"], "reset_url_base": "http://x/"}
        ),
    ]
    for response in cases:
        assert 400 <= response.status_code < 500, response.get_data()
    ok = api.post(
        "/v1/audit", {"agent_id": agent.id, "event": "ok", "user_agent": "nul\x00agent"}
    )
    assert ok.status_code == 201


def _drainer(api):
    import redis as redis_module
    from gatehouse.common.audit_queue import QUEUE_KEY
    from gatehouse.identity.audit import AuditQueueDrainer

    settings = load_settings()
    client = redis_module.Redis.from_url(settings.redis_url)
    sessions = api.app.extensions["identity"].agents.repository.session_factory
    drainer = AuditQueueDrainer(client, settings.redis_prefix + QUEUE_KEY, sessions)
    return drainer, client, settings


def test_queued_events_stored_in_one_batch(api):
    from gatehouse.common.audit_queue import queue_audit_event

    agent = api.make_agent()
    drainer, client, settings = _drainer(api)
    for event in ("second_factor_succeeded", "session_ended"):
        queue_audit_event(
            client,
            settings.redis_prefix,
            agent.id,
            event,
            "abc123",
            "Firefox",
            {"method": "app"},
        )

    stored = drainer.drain_once(wait=False)

    assert stored == 2
    events = api.get(f"/v1/agents/{agent.id}/audit?limit=10").get_json()["events"]
    names = [event["event"] for event in events]
    assert "second_factor_succeeded" in names
    assert "session_ended" in names
    queued = next(e for e in events if e["event"] == "session_ended")
    assert queued["ip_hash"] == "abc123"
    assert queued["user_agent"] == "Firefox"


def test_invalid_queued_event_dropped(api):
    from gatehouse.common.audit_queue import QUEUE_KEY

    drainer, client, settings = _drainer(api)
    client.rpush(
        settings.redis_prefix + QUEUE_KEY,
        b"not json",
        b'{"time": 1, "event": "Bad Name!"}',
    )

    assert drainer.drain_once(wait=False) == 0
    assert client.llen(settings.redis_prefix + QUEUE_KEY) == 0
