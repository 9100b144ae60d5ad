"""POST /v1/agents/<id>/notices for sign-in events: browser details, flood control."""

from __future__ import annotations


def test_new_browser_notice_names_browser(api, mail_jobs):
    agent = api.make_agent()
    response = api.post(
        f"/v1/agents/{agent.id}/notices",
        {"event": "new_browser", "browser": "Firefox on Linux\r\nBcc: x@example.com"},
    )

    assert response.status_code == 202
    [job] = mail_jobs(1)
    assert job.kind == "notice"
    assert job.params["event"] == "new_browser"
    assert job.params["browser"] == "Firefox on LinuxBcc: x@example.com"
    assert "client_ip" not in job.params


def test_new_browser_notices_limited_per_agent(make_api, mail_jobs):
    api = make_api(IDENTITY_NEW_BROWSER_NOTICE_INTERVAL=600)
    agent = api.make_agent()
    other = api.make_agent(login="bob")
    path = f"/v1/agents/{agent.id}/notices"

    first = api.post(path, {"event": "new_browser", "browser": "Chrome on Windows"})
    second = api.post(path, {"event": "new_browser", "browser": "Safari on macOS"})
    remembered = api.post(path, {"event": "browser_remembered", "browser": "Edge"})
    for_bob = api.post(f"/v1/agents/{other.id}/notices", {"event": "new_browser"})

    assert first.status_code == 202
    assert second.status_code == 202
    assert second.json == {"skipped": True}
    assert remembered.status_code == 202
    assert for_bob.status_code == 202
    jobs = mail_jobs(3)
    assert [(job.to, job.params["event"]) for job in jobs] == [
        (agent.email, "new_browser"),
        (agent.email, "browser_remembered"),
        (other.email, "new_browser"),
    ]
    assert jobs[0].params["browser"] == "Chrome on Windows"
    assert jobs[2].params["browser"] == "unknown browser"
    assert mail_jobs(1, timeout=0.5) == []


def test_zero_interval_sends_every_notice(make_api, mail_jobs):
    api = make_api(IDENTITY_NEW_BROWSER_NOTICE_INTERVAL=0)
    agent = api.make_agent()
    for _ in range(2):
        api.post(f"/v1/agents/{agent.id}/notices", {"event": "new_browser"})

    assert len(mail_jobs(2)) == 2


def test_factor_enrolled_notice_queued(api, mail_jobs):
    agent = api.make_agent()
    response = api.post(f"/v1/agents/{agent.id}/notices", {"event": "factor_enrolled"})

    assert response.status_code == 202
    [job] = mail_jobs(1)
    assert job.params == {"event": "factor_enrolled"}
