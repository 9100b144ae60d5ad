"""Bad input on the identity endpoints that the new features changed: 4xx, never 500."""

from __future__ import annotations

import pytest
from gatehouse.identity.models import MailOutboxRow
from sqlalchemy import select

BASE = "http://127.0.0.1:8080/agent/password/reset/"
GOOD = "correct horse battery"
WELL_FORMED_ENTRY = "0" * 32 + ".1700000000." + "0" * 32


def outbox_rows(api):
    with api.services.agents.repository.session_factory() as session:
        return list(session.scalars(select(MailOutboxRow)))


@pytest.mark.parametrize(
    "field, value",
    [
        ("login", "alice\ud800"),
        ("password", "\udfff"),
        ("device_cookie", "\ud800"),
        ("device_cookie", 12),
        ("device_cookie", ["x"]),
    ],
)
def test_authenticate_bad_field_400(api, field, value):
    api.make_agent()
    body = {"login": "alice", "password": GOOD, "client_ip": "192.0.2.10", field: value}
    answer = api.post("/v1/authenticate", body)
    assert answer.status_code == 400
    assert answer.json["error"]


def test_device_entry_with_surrogate_login_400(api):
    api.make_agent()
    body = {
        "login": "alice\ud800",
        "password": GOOD,
        "device_cookie": WELL_FORMED_ENTRY,
    }
    answer = api.post("/v1/authenticate", body)
    assert answer.status_code == 400


@pytest.mark.parametrize("login", ["alice\ud800", "\udc00"])
def test_reset_request_surrogate_login_400(api, login):
    answer = api.post(
        "/v1/password-resets",
        {"login": login, "reset_url_base": BASE, "client_ip": "192.0.2.30"},
    )
    assert answer.status_code == 400
    assert outbox_rows(api) == []


@pytest.mark.parametrize("browser", ["Firefox\ud800", 5, None, ["x"], "y" * 5000])
def test_notice_browser_garbage_never_500(api, browser):
    agent = api.make_agent()
    answer = api.post(
        f"/v1/agents/{agent.id}/notices",
        {"event": "new_browser", "browser": browser},
    )
    assert answer.status_code in (202, 400)
    for row in outbox_rows(api):
        browser_param = row.payload["params"]["browser"]
        assert len(browser_param) <= 60
        assert "\ud800" not in browser_param


@pytest.mark.parametrize("field", ["client_ip", "user_agent"])
def test_reset_request_surrogate_client_400(api, field):
    api.make_agent()
    body = {"login": "alice", "reset_url_base": BASE, field: "x\ud800"}
    answer = api.post("/v1/password-resets", body)
    assert answer.status_code == 400
    assert outbox_rows(api) == []


@pytest.mark.parametrize("field", ["client_ip", "user_agent"])
def test_authenticate_surrogate_client_400(api, field):
    api.make_agent()
    body = {"login": "alice", "password": GOOD, field: "x\ud800"}
    answer = api.post("/v1/authenticate", body)
    assert answer.status_code == 400


def test_deeply_nested_body_400(api):
    # The raw body is JSON nested deeper than Python's recursion limit.
    body = '{"login": "alice", "password": ' + "[" * 3000 + "]" * 3000 + "}"
    answer = api.client.post(
        "/v1/authenticate",
        data=body,
        headers={**api.headers, "Content-Type": "application/json"},
    )

    assert answer.status_code == 400
