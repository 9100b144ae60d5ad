"""The login device cookie and the session controls, against fake services."""

from __future__ import annotations

import re

import pytest
from gatehouse.common.config import load_settings
from gatehouse.common.device_cookie import DeviceCookieCodec
from gatehouse.gateway.app import create_app

AGENT = {
    "id": 7,
    "login": "ann",
    "email": "ann@example.test",
    "first_name": "Ann",
    "last_name": "Smith",
    "must_change_password": False,
}
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def _csrf(response) -> str:
    return re.search(
        r'name="csrf_token" type="hidden" value="([^"]+)"',
        response.get_data(as_text=True),
    ).group(1)


def _answer_login(services):
    services["identity"].answer("POST", "/v1/authenticate", 200, {"agent": AGENT})
    services["identity"].answer("POST", "/v1/agents/7/notices", 202, {})
    services["otp"].answer(
        "GET", "/v1/factors/7", 200, {"method": None, "email_security": False}
    )


def _sign_in(client, base_url="http://localhost"):
    page = client.get("/agent", base_url=base_url)
    return client.post(
        "/agent",
        data={"login": "ann", "password": "pw", "csrf_token": _csrf(page)},
        base_url=base_url,
        headers={"User-Agent": FIREFOX},
    )


def _set_cookie_header(response, name: str) -> str:
    for header in response.headers.getlist("Set-Cookie"):
        if header.startswith(name + "="):
            return header
    raise AssertionError(f"no Set-Cookie for {name}")


@pytest.fixture
def plain_app(app):
    app.config["REQUIRE_2FA"] = False
    return app


def test_sign_in_sets_device_cookie_attributes(plain_app, services):
    _answer_login(services)
    client = plain_app.test_client()

    response = _sign_in(client)

    header = _set_cookie_header(response, "gatehouse_login_device")
    assert "HttpOnly" in header
    assert "SameSite=Lax" in header
    assert "Path=/" in header
    assert "Domain" not in header
    assert f"Max-Age={180 * 86400}" in header
    value = header.split(";")[0].split("=", 1)[1]
    assert len(value) <= 1024
    codec = DeviceCookieCodec(load_settings().secret_key, 180 * 86400)
    assert codec.find(value, "ANN") is not None


def test_https_device_cookie_secure_and_host_prefixed(redis_prefix, services):
    application = create_app({"TESTING": True, "HTTPS": True, "REQUIRE_2FA": False})
    application.extensions["identity"] = services["identity"]
    application.extensions["otp"] = services["otp"]
    _answer_login(services)
    client = application.test_client()

    response = _sign_in(client, base_url="https://localhost")

    header = _set_cookie_header(response, "__Host-gatehouse_login_device")
    assert "Secure" in header
    assert "HttpOnly" in header
    assert "SameSite=Lax" in header
    assert "Path=/" in header
    assert "Domain" not in header


def test_new_browser_notice_only_without_cookie(plain_app, services):
    _answer_login(services)
    client = plain_app.test_client()

    _sign_in(client)
    dashboard = client.get("/agent/dashboard")
    client.post("/agent/logout", data={"csrf_token": _csrf(dashboard)})
    services["identity"].calls.clear()
    _sign_in(client)

    second_sign_in_notices = [
        call for call in services["identity"].calls if call[1].endswith("/notices")
    ]
    assert second_sign_in_notices == []
    authenticate = services["identity"].calls[0]
    assert authenticate[1] == "/v1/authenticate"
    assert authenticate[2]["device_cookie"]


def test_first_sign_in_sends_new_browser_notice(plain_app, services):
    _answer_login(services)
    client = plain_app.test_client()

    _sign_in(client)

    notices = [
        call for call in services["identity"].calls if call[1].endswith("/notices")
    ]
    assert notices == [
        (
            "POST",
            "/v1/agents/7/notices",
            {"event": "new_browser", "browser": "Firefox on Linux"},
        )
    ]
    assert services["identity"].calls[0][2]["device_cookie"] is None


def test_failed_login_sets_no_device_cookie(client, services):
    services["identity"].answer(
        "POST", "/v1/authenticate", 401, {"error": "invalid_credentials"}
    )
    page = client.get("/agent")

    response = client.post(
        "/agent", data={"login": "ann", "password": "x", "csrf_token": _csrf(page)}
    )

    assert response.status_code == 401
    cookies = " ".join(response.headers.getlist("Set-Cookie"))
    assert "gatehouse_login_device" not in cookies


def _signed_in_security_page(app, client, services):
    _answer_login(services)
    services["otp"].answer("GET", "/v1/encryption/ann@example.test", 200, {})
    services["identity"].answer("GET", "/v1/agents/7/audit?limit=20", 200, {})
    services["otp"].answer(
        "GET",
        "/v1/devices/7",
        200,
        {
            "devices": [
                {
                    "handle": "abc123",
                    "created": 1796400000,
                    "last_used": 1796403600,
                    "browser": "Chrome on Windows",
                }
            ]
        },
    )
    _sign_in(client)
    return client.get("/agent/preferences/security")


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/agent/preferences/security/sign-out-everywhere", {}),
        ("/agent/preferences/security/sessions/end", {"handle": "x" * 20}),
        ("/agent/preferences/security/forget-browser", {"handle": "abc123"}),
    ],
)
def test_session_controls_need_recent_password(plain_app, services, path, data):
    client = plain_app.test_client()
    page = _signed_in_security_page(plain_app, client, services)
    plain_app.config["REAUTHENTICATION_WINDOW"] = 0

    response = client.post(path, data={**data, "csrf_token": _csrf(page)})

    assert response.status_code == 302
    assert response.headers["Location"].endswith("/agent/preferences/security/confirm")
    assert not [call for call in services["otp"].calls if call[0] == "DELETE"]
    assert client.get("/agent/dashboard").status_code == 200


def test_security_page_lists_remembered_browsers(plain_app, services):
    client = plain_app.test_client()

    page = _signed_in_security_page(plain_app, client, services)

    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'data-remembered-browser="abc123"' in text
    assert "Chrome on Windows" in text
    assert "2026-12-04" in text


def test_forget_one_browser(plain_app, services):
    client = plain_app.test_client()
    page = _signed_in_security_page(plain_app, client, services)
    services["otp"].answer("DELETE", "/v1/devices/7/abc123", 204)

    response = client.post(
        "/agent/preferences/security/forget-browser",
        data={"handle": "abc123", "csrf_token": _csrf(page)},
    )

    assert response.headers["Location"].endswith("/agent/preferences/security")
    assert ("DELETE", "/v1/devices/7/abc123", None) in services["otp"].calls


@pytest.mark.parametrize(
    "handle",
    [
        # The internal HTTP client resolves dot segments, so these would reach
        # other OTP routes and other agents.
        "../../factors/8",
        "../../webauthn/credentials/8/3",
        "../8",
        "..",
        "abc/def",
        "abc%2Fdef",
        "abc?x=1",
        "\u00e9t\u00e9",
    ],
)
def test_forget_browser_bad_handle_not_sent(plain_app, services, handle):
    client = plain_app.test_client()
    page = _signed_in_security_page(plain_app, client, services)

    response = client.post(
        "/agent/preferences/security/forget-browser",
        data={"handle": handle, "csrf_token": _csrf(page)},
    )

    assert response.status_code == 302
    assert response.headers["Location"].endswith("/agent/preferences/security")
    assert not [call for call in services["otp"].calls if call[0] == "DELETE"]


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        ("Call +1 555 0100 now to cancel this sign-in", "unknown browser"),
        ("curl/8.5.0", "unknown browser"),
        ("Mozilla/5.0 (Windows NT 10.0) Gecko Firefox/128.0", "Firefox on Windows"),
    ],
)
def test_notice_names_only_known_browsers(plain_app, services, user_agent, expected):
    # The notice mail must not carry text that the request sender chose.
    _answer_login(services)
    client = plain_app.test_client()
    page = client.get("/agent")

    client.post(
        "/agent",
        data={"login": "ann", "password": "pw", "csrf_token": _csrf(page)},
        headers={"User-Agent": user_agent},
    )

    [notice] = [
        call for call in services["identity"].calls if call[1].endswith("/notices")
    ]
    assert notice[2]["browser"] == expected
