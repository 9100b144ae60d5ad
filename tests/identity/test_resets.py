"""Password reset links and notices, with jobs read from the real RabbitMQ queue."""

from __future__ import annotations

from datetime import timedelta

from gatehouse.identity.models import ResetTokenRow, utcnow
from sqlalchemy import update

GOOD = "correct horse battery"
BASE = "http://127.0.0.1:8080/agent/password/reset/"


def request_reset(api, login, client_ip="192.0.2.20"):
    return api.post(
        "/v1/password-resets",
        {
            "login": login,
            "reset_url_base": BASE,
            "client_ip": client_ip,
            "user_agent": "pytest",
        },
    )


def reset_jobs(mail_jobs, count):
    jobs = [job for job in mail_jobs(count) if job.kind == "password_reset"]
    assert len(jobs) == count
    return jobs


def token_of(job):
    assert job.params["link"].startswith(BASE)
    return job.params["link"][len(BASE) :]


def complete(api, token, password):
    return api.post(
        f"/v1/password-resets/{token}",
        {
            "new_password": password,
            "new_password_confirm": password,
            "client_ip": "192.0.2.20",
        },
    )


def test_reset_publishes_mail_job(api, mail_jobs):
    agent = api.make_agent()
    response = request_reset(api, "ALICE")
    assert response.status_code == 202
    assert response.json == {}

    [job] = reset_jobs(mail_jobs, 1)
    assert job.to == "alice@example.com"
    assert job.agent_id == agent.id
    assert job.first_name == "Alice"
    assert job.params["ttl_seconds"] == 1800
    assert len(token_of(job)) >= 43
    # OTP is unreachable in this test, so encryption is requested.
    assert job.email_security is True
    assert job.expires_at is not None

    check = api.get(f"/v1/password-resets/{token_of(job)}")
    assert check.status_code == 200
    assert check.json == {"agent_id": agent.id}


def test_reset_unknown_login_same_answer(api, mail_jobs):
    api.make_agent()
    known = request_reset(api, "alice")
    unknown = request_reset(api, "nobody")
    assert unknown.status_code == known.status_code == 202
    assert unknown.get_data() == known.get_data()
    api.drain()
    assert len(mail_jobs(2, timeout=1.0)) == 1


def test_reset_email_security_from_otp(make_api, mail_jobs, json_server, monkeypatch):
    otp = json_server(
        lambda path: (
            200,
            {"method": "email", "email_security": False, "recovery_codes_left": 8},
            "application/json",
        )
    )
    monkeypatch.setenv("OTP_URLS", otp.url)
    api = make_api()
    agent = api.make_agent()
    request_reset(api, "alice")
    [job] = reset_jobs(mail_jobs, 1)
    assert job.email_security is False
    assert otp.paths == [f"/v1/factors/{agent.id}"]


def test_reset_link_sets_password_once(api, mail_jobs):
    api.make_agent()
    request_reset(api, "alice")
    token = token_of(reset_jobs(mail_jobs, 1)[0])

    done = complete(api, token, "  reset with spaces  ")
    assert done.status_code == 200
    assert done.json["agent"]["must_change_password"] is False
    assert api.login("alice", "  reset with spaces  ").status_code == 200
    assert api.login("alice", "reset with spaces").status_code == 401
    assert api.login("alice", GOOD).status_code == 401

    again = complete(api, token, "another new password")
    assert again.status_code == 404
    assert again.json["error"] == "invalid_or_expired"
    assert api.get(f"/v1/password-resets/{token}").status_code == 404


def test_reset_link_dead_after_password_change(api, mail_jobs):
    agent = api.make_agent()
    request_reset(api, "alice")
    token = token_of(reset_jobs(mail_jobs, 1)[0])

    changed = api.post(
        f"/v1/agents/{agent.id}/password",
        {
            "new_password": "changed meanwhile",
            "new_password_confirm": "changed meanwhile",
        },
    )
    assert changed.status_code == 200
    assert api.get(f"/v1/password-resets/{token}").status_code == 404
    assert complete(api, token, "too late for this").status_code == 404


def test_reset_older_link_dead_newer_works(api, mail_jobs):
    api.make_agent()
    request_reset(api, "alice")
    first = token_of(reset_jobs(mail_jobs, 1)[0])
    request_reset(api, "alice")
    second = token_of(reset_jobs(mail_jobs, 1)[0])
    assert first != second

    assert api.get(f"/v1/password-resets/{first}").status_code == 404
    assert complete(api, first, "from the old link").status_code == 404
    assert complete(api, second, "from the new link").status_code == 200


def test_reset_link_expires(api, mail_jobs):
    api.make_agent()
    request_reset(api, "alice")
    token = token_of(reset_jobs(mail_jobs, 1)[0])
    with api.services.agents.repository.session_factory.begin() as session:
        session.execute(
            update(ResetTokenRow).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert api.get(f"/v1/password-resets/{token}").status_code == 404
    assert complete(api, token, "expired link try").status_code == 404


def test_reset_policy_violation_keeps_link(api, mail_jobs):
    api.make_agent()
    request_reset(api, "alice")
    token = token_of(reset_jobs(mail_jobs, 1)[0])
    rejected = complete(api, token, GOOD)
    assert rejected.status_code == 400
    assert rejected.json["error"] == "invalid_password"
    assert complete(api, token, "a fresh long password").status_code == 200


def test_reset_malformed_token_is_404(api):
    for token in ("x", "a" * 200, "not-a-real-token-but-long-enough-0000000000"):
        assert api.get(f"/v1/password-resets/{token}").status_code == 404


def test_reset_requests_throttled(make_api, mail_jobs):
    api = make_api(IDENTITY_RESET_LOGIN_MAX=2)
    api.make_agent()
    assert request_reset(api, "alice").status_code == 202
    assert request_reset(api, "alice").status_code == 202
    throttled = request_reset(api, "Alice")
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) >= 1
    unknown = [request_reset(api, "ghost").status_code for _ in range(3)]
    assert unknown == [202, 202, 429]


def test_reset_rejects_bad_url_base(api):
    response = api.post(
        "/v1/password-resets", {"login": "a", "reset_url_base": "ftp://x/"}
    )
    assert response.status_code == 400


def test_reset_sends_notice_and_audits(api, mail_jobs):
    agent = api.make_agent()
    request_reset(api, "alice")
    token = token_of(reset_jobs(mail_jobs, 1)[0])
    assert complete(api, token, "after the reset mail").status_code == 200

    [notice] = mail_jobs(1)
    assert notice.kind == "notice"
    assert notice.params == {"event": "password_changed"}
    assert notice.agent_id == agent.id
    events = [
        e["event"] for e in api.get(f"/v1/agents/{agent.id}/audit").json["events"]
    ]
    assert events == ["password_reset_completed", "password_reset_requested"]


def test_notice_endpoint_queues_job(api, mail_jobs):
    agent = api.make_agent()
    response = api.post(f"/v1/agents/{agent.id}/notices", {"event": "factor_changed"})
    assert response.status_code == 202
    [notice] = mail_jobs(1)
    assert notice.kind == "notice"
    assert notice.params == {"event": "factor_changed"}
    assert notice.to == agent.email
    bad = api.post(f"/v1/agents/{agent.id}/notices", {"event": "anything"})
    assert bad.status_code == 400
    assert (
        api.post("/v1/agents/999/notices", {"event": "factor_changed"}).status_code
        == 404
    )
