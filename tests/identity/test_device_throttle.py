"""Login device cookies in identity's password throttle.

A request with a valid device cookie entry for its login counts its failures per
(login, device), and every other request counts per login. The cookies here are minted
with the development secret key, as the gateway would mint them.
"""

from __future__ import annotations

import time

import pytest
from gatehouse.agentctl.cli import main as agentctl
from gatehouse.common import device_cookie
from gatehouse.common.config import load_settings
from gatehouse.common.device_cookie import DeviceCookieCodec

GOOD = "correct horse battery"
WRONG = "wrong horse battery"
LIFETIME = 180 * 86400
VOLATILE_HEADERS = {"X-Request-ID"}


@pytest.fixture
def codec(stack_env):
    return DeviceCookieCodec(load_settings().secret_key, LIFETIME)


def _login(api, login, password, cookie=None, client_ip="192.0.2.10"):
    body = {
        "login": login,
        "password": password,
        "client_ip": client_ip,
        "user_agent": "pytest",
    }
    if cookie is not None:
        body["device_cookie"] = cookie
    return api.post("/v1/authenticate", body)


def _fill_login_window(api, login, cookie=None, failures=10):
    """Send ``failures`` wrong passwords from several addresses; return the last."""
    for number in range(failures):
        response = _login(api, login, WRONG, cookie, client_ip=f"203.0.113.{number}")
    return response


def _expired_cookie(codec, login, monkeypatch):
    past = time.time() - LIFETIME - 3600
    with monkeypatch.context() as patch:
        patch.setattr(device_cookie.time, "time", lambda: past)
        return codec.issue(None, login)


def _forged_cookie(codec, login):
    device_id, issued, mac = codec.issue(None, login).split(".")
    flipped = "0" if mac[0] != "0" else "1"
    return f"{device_id}.{issued}.{flipped}{mac[1:]}"


def test_full_login_window_spares_device_holder(api, codec):
    api.make_agent()
    cookie = codec.issue(None, "alice")

    assert _fill_login_window(api, "alice").status_code == 429
    blocked = _login(api, "alice", GOOD)
    allowed = _login(api, "ALICE", GOOD, cookie)

    assert blocked.status_code == 429
    assert allowed.status_code == 200
    assert allowed.json["agent"]["login"] == "alice"


def test_device_windows_are_separate(make_api, codec):
    api = make_api(IDENTITY_DEVICE_MAX_FAILURES=3)
    api.make_agent()
    first = codec.issue(None, "alice")
    second = codec.issue(None, "alice")

    statuses = [_login(api, "alice", WRONG, first).status_code for _ in range(3)]
    locked = _login(api, "alice", GOOD, first)

    assert statuses == [401, 401, 429]
    assert locked.status_code == 429
    assert 1 <= int(locked.headers["Retry-After"]) <= 300
    assert _login(api, "alice", GOOD, second).status_code == 200
    assert _login(api, "alice", GOOD).status_code == 200


def test_device_window_releases_after_time(make_api, codec):
    api = make_api(IDENTITY_DEVICE_MAX_FAILURES=2, IDENTITY_DEVICE_WINDOW=2)
    api.make_agent()
    cookie = codec.issue(None, "alice")
    _login(api, "alice", WRONG, cookie)
    assert _login(api, "alice", WRONG, cookie).status_code == 429

    deadline = time.monotonic() + 5
    response = _login(api, "alice", GOOD, cookie)
    while response.status_code == 429 and time.monotonic() < deadline:
        time.sleep(0.2)
        response = _login(api, "alice", GOOD, cookie)

    assert response.status_code == 200


@pytest.mark.parametrize("kind", ["forged", "expired", "other_login", "garbage"])
def test_invalid_cookie_counts_as_untrusted(api, codec, monkeypatch, kind):
    api.make_agent()
    api.make_agent(login="bob")
    cookie = {
        "forged": lambda: _forged_cookie(codec, "alice"),
        "expired": lambda: _expired_cookie(codec, "alice", monkeypatch),
        "other_login": lambda: codec.issue(None, "bob"),
        "garbage": lambda: "x" * 5000,
    }[kind]()

    assert _fill_login_window(api, "alice", cookie).status_code == 429

    assert _login(api, "alice", GOOD, cookie).status_code == 429
    assert _login(api, "alice", GOOD).status_code == 429
    assert _login(api, "bob", GOOD, cookie).status_code == 200


def test_device_failures_leave_login_window_alone(make_api, codec):
    api = make_api(IDENTITY_LOGIN_MAX_FAILURES=3, IDENTITY_DEVICE_MAX_FAILURES=5)
    api.make_agent()
    cookie = codec.issue(None, "alice")

    for _ in range(4):
        assert _login(api, "alice", WRONG, cookie).status_code == 401

    assert _login(api, "alice", GOOD).status_code == 200


def test_cookie_does_not_change_failure_response(api, codec):
    api.make_agent()
    unknown = _login(api, "nobody", WRONG, codec.issue(None, "nobody"))
    known_with_cookie = _login(api, "alice", WRONG, codec.issue(None, "alice"))
    known_without = _login(api, "alice", WRONG)

    for response in (unknown, known_with_cookie, known_without):
        assert response.status_code == 401
        assert "Set-Cookie" not in response.headers
    assert unknown.get_data() == known_with_cookie.get_data()
    assert unknown.get_data() == known_without.get_data()
    comparable = [
        {k: v for k, v in response.headers.items() if k not in VOLATILE_HEADERS}
        for response in (unknown, known_with_cookie, known_without)
    ]
    assert comparable[0] == comparable[1]
    assert comparable[0] == comparable[2]


def test_unlock_clears_device_windows(make_api, codec):
    api = make_api(IDENTITY_DEVICE_MAX_FAILURES=2, IDENTITY_DEVICE_WINDOW=600)
    api.make_agent(login="Locked")
    cookie = codec.issue(None, "locked")
    _login(api, "locked", WRONG, cookie)
    _login(api, "locked", WRONG, cookie)
    _fill_login_window(api, "locked")
    assert _login(api, "locked", GOOD, cookie).status_code == 429
    assert _login(api, "locked", GOOD).status_code == 429

    assert agentctl(["agent", "unlock", "LOCKED"]) == 0

    assert _login(api, "locked", GOOD, cookie).status_code == 200
    assert _login(api, "locked", GOOD).status_code == 200


def test_device_holder_still_meets_ip_throttle(make_api, codec):
    api = make_api(IDENTITY_IP_MAX_FAILURES=2)
    api.make_agent()
    cookie = codec.issue(None, "alice")
    _login(api, "one", WRONG, client_ip="198.51.100.9")
    _login(api, "two", WRONG, client_ip="198.51.100.9")

    response = _login(api, "alice", GOOD, cookie, client_ip="198.51.100.9")

    assert response.status_code == 429
    assert response.json["error"] == "throttled"


def test_change_password_uses_device_window(api, codec):
    agent = api.make_agent()
    api.services.agents.change_password(
        agent.id, "a brand new secret 1", "a brand new secret 1", None, "ip"
    )
    cookie = codec.issue(None, "alice")
    _fill_login_window(api, "alice")
    body = {
        "current_password": "a brand new secret 1",
        "new_password": "another new secret 2",
        "new_password_confirm": "another new secret 2",
    }

    blocked = api.post(f"/v1/agents/{agent.id}/password", body)
    allowed = api.post(
        f"/v1/agents/{agent.id}/password", {**body, "device_cookie": cookie}
    )

    assert blocked.status_code == 429
    assert allowed.status_code == 200
