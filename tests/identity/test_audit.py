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
