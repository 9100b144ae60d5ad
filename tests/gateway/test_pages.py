import re

import pytest
from gatehouse.gateway.app import create_app

AGENT = {
    "id": 7,
    "login": "ann",
    "email": "ann@example.test",
    "first_name": "Ann",
    "last_name": "Smith",
    "must_change_password": False,
}


def _csrf(response) -> str:
    return re.search(
        r'name="csrf_token" type="hidden" value="([^"]+)"',
        response.get_data(as_text=True),
    ).group(1)


def _login(client, services, must_change=False, method="app"):
    agent = dict(AGENT, must_change_password=must_change)
    services["identity"].answer("POST", "/v1/authenticate", 200, {"agent": agent})
    services["otp"].answer(
        "GET", "/v1/factors/7", 200, {"method": method, "email_security": False}
    )
    token = _csrf(client.get("/agent"))
    return client.post(
        "/agent", data={"login": "ann", "password": "pw", "csrf_token": token}
    )


def test_login_page_marks_its_step(client):
    response = client.get("/agent")

    assert response.status_code == 200
    assert b'<body data-page="login">' in response.data


def test_invalid_credentials_give_generic_message(client, services):
    services["identity"].answer(
        "POST", "/v1/authenticate", 401, {"error": "invalid_credentials"}
    )
    token = _csrf(client.get("/agent"))

    response = client.post(
        "/agent", data={"login": "x", "password": "y", "csrf_token": token}
    )

    assert response.status_code == 401
    assert b"Invalid user name or password." in response.data


def test_throttled_login_answers_429_with_retry_after(client, services):
    services["identity"].answer(
        "POST", "/v1/authenticate", 429, {"error": "throttled", "retry_after": 125}
    )
    token = _csrf(client.get("/agent"))

    response = client.post(
        "/agent", data={"login": "x", "password": "y", "csrf_token": token}
    )

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "125"
    assert b"2 minutes 5 seconds" in response.data


def test_password_step_leads_to_change_when_required(client, services):
    response = _login(client, services, must_change=True)

    assert response.status_code == 302
    assert response.headers["Location"].endswith("/agent/password/change")
    assert (
        client.get("/agent/dashboard")
        .headers["Location"]
        .endswith("/agent/password/change")
    )


def test_password_step_leads_to_second_factor(client, services):
    response = _login(client, services)

    assert response.headers["Location"].endswith("/agent/2fa")
    assert client.get("/agent/dashboard").headers["Location"].endswith("/agent/2fa")


def test_missing_factor_leads_to_setup(client, services):
    response = _login(client, services, method=None)

    assert response.headers["Location"].endswith("/agent/2fa/setup")


def test_password_not_trimmed(client, services):
    services["identity"].answer("POST", "/v1/authenticate", 401, {})
    token = _csrf(client.get("/agent"))

    client.post(
        "/agent", data={"login": "ann", "password": "  padded  ", "csrf_token": token}
    )

    sent = services["identity"].calls[-1][2]
    assert sent["password"] == "  padded  "


def test_unreachable_service_gives_503_page(client, services):
    from gatehouse.common.internal import ServiceUnavailable

    def unreachable(*args, **kwargs):
        raise ServiceUnavailable("identity is unreachable")

    services["identity"].post = unreachable
    token = _csrf(client.get("/agent"))

    response = client.post(
        "/agent", data={"login": "x", "password": "y", "csrf_token": token}
    )

    assert response.status_code == 503
    assert b"temporarily unavailable" in response.data


def test_reset_token_leaves_the_url(client, services):
    response = client.get("/agent/password/reset/abc123")

    assert response.status_code == 302
    assert response.headers["Location"].endswith("/agent/password/reset")


@pytest.mark.parametrize("token", ["..", "abc%3Fnext", "abc%23x", "a.b", "x" * 129])
def test_reset_link_malformed_token_not_sent(client, services, token):
    response = client.get(f"/agent/password/reset/{token}")

    assert response.status_code == 404
    assert b'data-page="password-reset"' in response.data
    assert services["identity"].calls == []


def test_forgot_uses_configured_public_url(app, client, services):
    app.config["PUBLIC_URL"] = "https://help.example.test"
    services["identity"].answer("POST", "/v1/password-resets", 202, {})
    forged_host = {"Host": "attacker.example"}
    token = _csrf(client.get("/agent/password/forgot", headers=forged_host))

    client.post(
        "/agent/password/forgot",
        data={"login": "ann", "csrf_token": token},
        headers=forged_host,
    )

    sent = services["identity"].calls[-1][2]
    assert sent["reset_url_base"] == "https://help.example.test/agent/password/reset/"


def test_health_probe_needs_no_session(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers


def test_cross_site_origin_rejected(client, services):
    services["identity"].answer("POST", "/v1/authenticate", 401, {})
    token = _csrf(client.get("/agent"))

    response = client.post(
        "/agent",
        data={"login": "x", "password": "y", "csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )

    assert response.status_code == 400
    assert services["identity"].calls == []


def test_https_mode_sets_host_prefixed_secure_cookie(redis_prefix, services):
    from gatehouse.gateway.app import create_app

    application = create_app({"TESTING": True, "HTTPS": True})
    client = application.test_client()

    response = client.get("/agent", base_url="https://localhost")

    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__Host-gatehouse_session=")
    assert "Secure" in cookie
    assert "Path=/" in cookie
    assert "Domain" not in cookie
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_idle_session_ends(redis_prefix, services):
    import time

    from gatehouse.gateway.app import create_app

    application = create_app({"TESTING": True, "SESSION_IDLE_TIMEOUT": 1})
    application.extensions["identity"] = services["identity"]
    application.extensions["otp"] = services["otp"]
    client = application.test_client()
    _login(client, services)
    assert client.get("/agent/2fa").status_code == 200

    time.sleep(2.1)

    assert client.get("/agent/2fa").headers["Location"].endswith("/agent")


def test_absolute_timeout_counts_from_login(redis_prefix, services):
    import time

    from gatehouse.gateway.app import create_app

    application = create_app({"TESTING": True, "SESSION_ABSOLUTE_TIMEOUT": 2})
    application.extensions["identity"] = services["identity"]
    application.extensions["otp"] = services["otp"]
    client = application.test_client()
    _login(client, services)
    for _ in range(3):
        time.sleep(0.8)
        client.get("/agent/2fa")

    assert client.get("/agent/2fa").headers["Location"].endswith("/agent")


def _complete_login(client, services):
    _login(client, services, method=None)
    with client.session_transaction() as session:
        session["stage"] = "done"


def test_factor_change_needs_recent_password(app, client, services):
    app.config["REAUTHENTICATION_WINDOW"] = 0
    _complete_login(client, services)

    response = client.get("/agent/2fa/setup/app")

    assert response.status_code == 302
    assert response.headers["Location"].endswith("/agent/preferences/security/confirm")


def test_confirm_password_returns_to_requested_page(app, client, services):
    app.config["REAUTHENTICATION_WINDOW"] = 0
    _complete_login(client, services)
    client.get("/agent/2fa/setup/app")
    page = client.get("/agent/preferences/security/confirm")
    assert b'data-page="reauth"' in page.data
    app.config["REAUTHENTICATION_WINDOW"] = 600

    response = client.post(
        "/agent/preferences/security/confirm",
        data={"current_password": "pw", "csrf_token": _csrf(page)},
    )

    assert response.headers["Location"].endswith("/agent/2fa/setup/app")
    assert services["identity"].calls[-1][2]["password"] == "pw"


def test_confirm_after_post_says_repeat_action(app, client, services):
    app.config["REAUTHENTICATION_WINDOW"] = 0
    _complete_login(client, services)
    page = client.get("/agent/preferences/security/confirm")
    client.post(
        "/agent/preferences/security/recovery-codes",
        data={"csrf_token": _csrf(page)},
    )
    app.config["REAUTHENTICATION_WINDOW"] = 600

    response = client.post(
        "/agent/preferences/security/confirm",
        data={"current_password": "pw", "csrf_token": _csrf(page)},
        follow_redirects=False,
    )

    assert response.headers["Location"].endswith("/agent/preferences/security")
    with client.session_transaction() as session:
        flashed = [message for _, message in session.get("_flashes", [])]
    assert flashed == [
        "Password confirmed. Nothing was changed yet, so choose the action again."
    ]
    assert "/v1/factors/7/recovery-codes" not in [
        path for _method, path, _body in services["otp"].calls
    ]


def test_wrong_confirm_password_rejected(app, client, services):
    app.config["REAUTHENTICATION_WINDOW"] = 0
    _complete_login(client, services)
    page = client.get("/agent/preferences/security/confirm")
    services["identity"].answer("POST", "/v1/authenticate", 401, {})

    response = client.post(
        "/agent/preferences/security/confirm",
        data={"current_password": "bad", "csrf_token": _csrf(page)},
    )

    assert response.status_code == 401
    assert b"The password is not correct." in response.data


def test_first_setup_needs_no_confirmation(app, client, services):
    app.config["REAUTHENTICATION_WINDOW"] = 0
    _login(client, services, method=None)
    services["otp"].answer(
        "POST",
        "/v1/enrollments/app",
        200,
        {
            "secret": "A" * 32,
            "otpauth_uri": "otpauth://totp/x?secret=" + "A" * 32,
            "qr_svg": "<svg></svg>",
            "ttl_seconds": 600,
        },
    )

    response = client.get("/agent/2fa/setup/app")

    assert response.status_code == 200
    assert b'data-page="2fa-setup-app"' in response.data


def test_login_spaces_stripped_but_password_kept(client, services):
    services["identity"].answer("POST", "/v1/authenticate", 401, {})
    token = _csrf(client.get("/agent"))

    client.post(
        "/agent", data={"login": "  ann ", "password": " pw ", "csrf_token": token}
    )

    sent = services["identity"].calls[-1][2]
    assert sent["login"] == "ann"
    assert sent["password"] == " pw "


def test_expired_login_form_comes_back_filled(client, services):
    response = client.post(
        "/agent", data={"login": "ann", "password": "pw", "csrf_token": "stale"}
    )

    assert response.status_code == 400
    assert b'<body data-page="login">' in response.data
    assert b'value="ann"' in response.data
    assert b"no longer valid" in response.data
    assert services["identity"].calls == []


@pytest.mark.parametrize(
    ("bind", "expected"),
    [
        ("127.0.0.1", "http://localhost:8181"),
        ("0.0.0.0", "http://localhost:8181"),  # noqa: S104
        ("helpdesk.example.test", "http://helpdesk.example.test:8181"),
    ],
)
def test_default_public_url_names_host(monkeypatch, redis_prefix, bind, expected):
    monkeypatch.delenv("GATEHOUSE_PUBLIC_URL", raising=False)
    monkeypatch.setenv("GATEWAY_HOST", bind)
    monkeypatch.setenv("GATEWAY_PORT", "8181")

    assert create_app({"TESTING": True}).config["PUBLIC_URL"] == expected


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/agent", {"csrf_token", "login", "password"}),
        ("/agent/password/forgot", {"csrf_token", "login"}),
    ],
)
def test_recovery_forms_have_no_hints_or_questions(client, path, fields):
    page = client.get(path).get_data(as_text=True)

    assert set(re.findall(r'<input[^>]* name="([^"]+)"', page)) == fields
    assert "hint" not in page.lower().replace('class="hint"', "")
    assert "question" not in page.lower()


def test_session_ids_random_256_bits(app):
    ids = set()
    for _ in range(200):
        response = app.test_client().get("/agent")
        cookie = response.headers["Set-Cookie"]
        ids.add(re.match(r"[^=]+=([^;]*);", cookie).group(1))

    assert len(ids) == 200
    for session_id in ids:
        # secrets.token_urlsafe(32): 32 bytes from the OS CSPRNG, 43 characters.
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", session_id)


def test_bare_address_redirects_to_sign_in(client):
    response = client.get("/")

    assert response.status_code == 302
    assert response.headers["Location"].endswith("/agent")


def test_hourly_mail_cap_points_to_recovery_code(client, services):
    services["otp"].answer(
        "POST",
        "/v1/challenges",
        429,
        {"error": "resend_too_soon", "retry_after": 2700, "hourly_cap": True},
    )
    _login(client, services, method="email")

    page = client.get("/agent/2fa").get_data(as_text=True)

    assert "No new code can be mailed for 45 minutes" in page
    assert "sign in with a recovery code" in page
    assert "moments ago" not in page


def test_cooldown_says_code_was_just_mailed(client, services):
    services["otp"].answer(
        "POST",
        "/v1/challenges",
        429,
        {"error": "resend_too_soon", "retry_after": 20, "hourly_cap": False},
    )
    _login(client, services, method="email")

    page = client.get("/agent/2fa").get_data(as_text=True)

    assert "We mailed you a code moments ago: use that one" in page
