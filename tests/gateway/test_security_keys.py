"""Security-key pages of the gateway: relying party, CSRF and bad input.

The OTP service is a fake here; tests/otp/test_webauthn.py verifies real WebAuthn
responses and tests/e2e/test_security_key.py drives the pages in Chromium.
"""

import json
import re

import pytest
from gatehouse.gateway.security_keys import relying_party

AGENT = {
    "id": 7,
    "login": "ann",
    "email": "ann@example.test",
    "first_name": "Ann",
    "last_name": "Smith",
    "must_change_password": False,
}
OPTIONS = {"challenge": "Y2hhbGxlbmdl", "rp": {"id": "localhost", "name": "gatehouse"}}
CREDENTIAL = json.dumps({"id": "abc", "rawId": "abc", "response": {}})
UNREADABLE = "The security key response could not be read"


def _csrf(response) -> str:
    return re.search(
        r'name="csrf_token" type="hidden" value="([^"]+)"',
        response.get_data(as_text=True),
    ).group(1)


@pytest.fixture
def keys_app(app, services):
    app.config["PUBLIC_URL"] = "http://localhost:8080"
    services["otp"].answer(
        "POST", "/v1/webauthn/registrations", 200, {"options": OPTIONS}
    )
    services["otp"].answer(
        "POST", "/v1/webauthn/authentications", 200, {"options": OPTIONS}
    )
    services["otp"].answer(
        "GET", "/v1/encryption/ann@example.test", 200, {"method": None}
    )
    services["identity"].answer("POST", "/v1/agents/7/notices", 202, {})
    return app


def _login(client, services, method):
    services["identity"].answer("POST", "/v1/authenticate", 200, {"agent": AGENT})
    services["otp"].answer(
        "GET", "/v1/factors/7", 200, {"method": method, "email_security": False}
    )
    token = _csrf(client.get("/agent"))
    client.post("/agent", data={"login": "ann", "password": "pw", "csrf_token": token})


def _otp_paths(services) -> list[str]:
    return [path for _method, path, _body in services["otp"].calls]


@pytest.mark.parametrize(
    ("public_url", "expected"),
    [
        ("http://localhost:8080", ("localhost", "http://localhost:8080")),
        (
            "https://Help.Example.test",
            ("help.example.test", "https://help.example.test"),
        ),
        (
            "https://help.example.test:443/",
            ("help.example.test", "https://help.example.test"),
        ),
        (
            "https://help.example.test:8443",
            ("help.example.test", "https://help.example.test:8443"),
        ),
        ("http://127.0.0.1:8080", None),
        ("http://[::1]:8080", None),
    ],
)
def test_relying_party_from_public_url(app, public_url, expected):
    app.config["PUBLIC_URL"] = public_url
    with app.test_request_context("/agent"):
        assert relying_party() == expected


def test_setup_choice_disabled_on_ip_address(app, client, services):
    app.config["PUBLIC_URL"] = "http://127.0.0.1:8080"
    services["otp"].answer(
        "GET", "/v1/encryption/ann@example.test", 200, {"method": None}
    )
    _login(client, services, method=None)

    page = client.get("/agent/2fa/setup").get_data(as_text=True)

    assert 'value="webauthn" disabled' in page
    assert "served under a domain name" in page


def test_setup_choice_leads_to_key_page(keys_app, client, services):
    _login(client, services, method=None)
    page = client.get("/agent/2fa/setup")
    assert 'value="webauthn" disabled' not in page.get_data(as_text=True)

    response = client.post(
        "/agent/2fa/setup", data={"method": "webauthn", "csrf_token": _csrf(page)}
    )

    assert response.status_code == 302
    assert response.headers["Location"].endswith("/agent/2fa/setup/security-key")


def test_key_setup_page_carries_options(keys_app, client, services):
    _login(client, services, method=None)

    response = client.get("/agent/2fa/setup/security-key")

    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'data-page="2fa-setup-security-key"' in page
    assert 'data-webauthn="create"' in page
    assert "static/webauthn.js" in page
    # The CSP allows scripts from the gateway only; the page has no inline script.
    assert "<script>" not in page
    start = services["otp"].calls[-1]
    assert start[1] == "/v1/webauthn/registrations"
    assert start[2]["rp_id"] == "localhost"
    assert start[2]["origin"] == "http://localhost:8080"
    assert start[2]["user_name"] == "ann"


def test_key_setup_without_csrf_rejected(keys_app, client, services):
    _login(client, services, method=None)

    response = client.post(
        "/agent/2fa/setup/security-key",
        data={"name": "Key", "credential": CREDENTIAL},
    )

    assert response.status_code == 400
    assert "/v1/webauthn/registrations/verify" not in _otp_paths(services)


@pytest.mark.parametrize(
    "garbage",
    [
        "{not json",
        "[]",
        '"text"',
        '{"id": 5}',
        '{"id": "\\ud800", "response": []}',
        # Nested deeper than Python's recursion limit, within the size limit.
        "[" * 3000,
    ],
)
def test_key_setup_garbage_json_clear_error(keys_app, client, services, garbage):
    _login(client, services, method=None)
    token = _csrf(client.get("/agent/2fa/setup/security-key"))

    response = client.post(
        "/agent/2fa/setup/security-key",
        data={"name": "Key", "credential": garbage, "csrf_token": token},
    )

    assert response.status_code == 400
    assert UNREADABLE in response.get_data(as_text=True)
    assert b'data-page="2fa-setup-security-key"' in response.data
    assert "/v1/webauthn/registrations/verify" not in _otp_paths(services)


def test_key_setup_missing_name_and_credential(keys_app, client, services):
    _login(client, services, method=None)
    token = _csrf(client.get("/agent/2fa/setup/security-key"))

    response = client.post(
        "/agent/2fa/setup/security-key", data={"name": " ", "csrf_token": token}
    )

    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Give the key a name" in page
    assert "Use your security key first." in page


def test_key_setup_oversized_credential_rejected(keys_app, client, services):
    _login(client, services, method=None)
    token = _csrf(client.get("/agent/2fa/setup/security-key"))

    response = client.post(
        "/agent/2fa/setup/security-key",
        data={"name": "Key", "credential": "x" * 40000, "csrf_token": token},
    )

    assert response.status_code == 400
    assert "/v1/webauthn/registrations/verify" not in _otp_paths(services)


def test_key_setup_failure_shows_message(keys_app, client, services):
    _login(client, services, method=None)
    token = _csrf(client.get("/agent/2fa/setup/security-key"))
    services["otp"].answer(
        "POST",
        "/v1/webauthn/registrations/verify",
        400,
        {
            "error": "invalid_credential",
            "message": "The security key could not be verified.",
        },
    )

    response = client.post(
        "/agent/2fa/setup/security-key",
        data={"name": "Key", "credential": CREDENTIAL, "csrf_token": token},
    )

    assert response.status_code == 400
    assert "The security key could not be verified." in response.get_data(as_text=True)
    # The used response is not put back into the form, so the script requests a
    # new one from the key instead of posting the old one a second time.
    hidden = re.search(
        r'<input[^>]*name="credential"[^>]*>', response.get_data(as_text=True)
    )
    assert 'value=""' in hidden.group(0)


def test_key_setup_success_completes_login(keys_app, client, services):
    _login(client, services, method=None)
    token = _csrf(client.get("/agent/2fa/setup/security-key"))
    services["otp"].answer(
        "POST",
        "/v1/webauthn/registrations/verify",
        200,
        {"method": "webauthn", "recovery_codes": ["aaaa-bbbb-cccc"], "credential": {}},
    )

    response = client.post(
        "/agent/2fa/setup/security-key",
        data={"name": " Blue key ", "credential": CREDENTIAL, "csrf_token": token},
    )

    assert response.status_code == 302
    assert response.headers["Location"].endswith("/agent/dashboard")
    sent = services["otp"].calls[-1][2]
    assert sent["name"] == "Blue key"
    assert sent["credential"] == CREDENTIAL


def test_verify_page_offers_key_and_recovery_code(keys_app, client, services):
    _login(client, services, method="webauthn")

    response = client.get("/agent/2fa")

    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'data-page="2fa-verify"' in page
    assert 'data-webauthn="get"' in page
    assert 'id="recovery-code"' in page
    assert 'autocomplete="one-time-code"' not in page


def test_verify_key_without_csrf_rejected(keys_app, client, services):
    _login(client, services, method="webauthn")
    client.get("/agent/2fa")

    response = client.post("/agent/2fa/security-key", data={"credential": CREDENTIAL})

    assert response.status_code == 400
    assert "/v1/webauthn/authentications/verify" not in _otp_paths(services)


@pytest.mark.parametrize("garbage", ["}{", "[" * 3000, "\u00e9\ud7ff"])
def test_verify_key_garbage_json_clear_error(keys_app, client, services, garbage):
    _login(client, services, method="webauthn")
    token = _csrf(client.get("/agent/2fa"))

    response = client.post(
        "/agent/2fa/security-key", data={"credential": garbage, "csrf_token": token}
    )

    assert response.status_code == 400
    assert UNREADABLE in response.get_data(as_text=True)
    assert b'data-page="2fa-verify"' in response.data
    assert "/v1/webauthn/authentications/verify" not in _otp_paths(services)


def test_verify_key_rejected_shows_message(keys_app, client, services):
    _login(client, services, method="webauthn")
    token = _csrf(client.get("/agent/2fa"))
    services["otp"].answer(
        "POST",
        "/v1/webauthn/authentications/verify",
        400,
        {"error": "sign_count_regressed", "message": "This security key reported"},
    )

    response = client.post(
        "/agent/2fa/security-key", data={"credential": CREDENTIAL, "csrf_token": token}
    )

    assert response.status_code == 400
    assert "This security key reported" in response.get_data(as_text=True)
    with client.session_transaction() as session:
        assert session["stage"] == "verify_2fa"


def test_verify_key_throttled_429(keys_app, client, services):
    _login(client, services, method="webauthn")
    token = _csrf(client.get("/agent/2fa"))
    services["otp"].answer(
        "POST",
        "/v1/webauthn/authentications/verify",
        429,
        {"error": "throttled", "retry_after": 90},
    )

    response = client.post(
        "/agent/2fa/security-key", data={"credential": CREDENTIAL, "csrf_token": token}
    )

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "90"


def test_verify_key_success_reaches_dashboard(keys_app, client, services):
    _login(client, services, method="webauthn")
    token = _csrf(client.get("/agent/2fa"))
    services["otp"].answer(
        "POST",
        "/v1/webauthn/authentications/verify",
        200,
        {"method": "webauthn", "recovery_code_used": False},
    )

    response = client.post(
        "/agent/2fa/security-key", data={"credential": CREDENTIAL, "csrf_token": token}
    )

    assert response.status_code == 302
    assert response.headers["Location"].endswith("/agent/dashboard")


def _signed_in_with_keys(client, services, keys):
    _login(client, services, method="webauthn")
    with client.session_transaction() as session:
        session["stage"] = "done"
    services["otp"].answer(
        "GET", "/v1/webauthn/credentials/7", 200, {"credentials": keys}
    )


def test_remove_key_without_csrf_ignored(keys_app, client, services):
    _signed_in_with_keys(client, services, [])

    response = client.post(
        "/agent/preferences/security/security-keys/remove", data={"key_id": "3"}
    )

    assert response.status_code == 400
    assert not any("/v1/webauthn/credentials/7/" in p for p in _otp_paths(services))


@pytest.mark.parametrize("key_id", ["", "abc", "0", "-1", "99999999999"])
def test_remove_key_bad_id_not_sent(keys_app, client, services, key_id):
    _signed_in_with_keys(client, services, [])
    token = _csrf(client.get("/agent/2fa/setup"))

    response = client.post(
        "/agent/preferences/security/security-keys/remove",
        data={"key_id": key_id, "csrf_token": token},
    )

    assert response.status_code == 302
    assert not any("/v1/webauthn/credentials/7/" in p for p in _otp_paths(services))


def test_remove_last_key_refused(keys_app, client, services):
    _signed_in_with_keys(client, services, [])
    token = _csrf(client.get("/agent/2fa/setup"))
    services["otp"].answer(
        "DELETE",
        "/v1/webauthn/credentials/7/3",
        409,
        {"error": "last_credential", "message": "This is your only security key."},
    )

    response = client.post(
        "/agent/preferences/security/security-keys/remove",
        data={"key_id": "3", "csrf_token": token},
        follow_redirects=False,
    )

    assert response.status_code == 302
    with client.session_transaction() as session:
        flashes = [message for _category, message in session["_flashes"]]
    assert flashes == ["This is your only security key."]
    notices = [call for call in services["identity"].calls if "notices" in call[1]]
    assert notices == []


def test_remove_key_sends_notice(keys_app, client, services):
    _signed_in_with_keys(client, services, [])
    token = _csrf(client.get("/agent/2fa/setup"))
    services["otp"].answer("DELETE", "/v1/webauthn/credentials/7/3", 204, {})

    response = client.post(
        "/agent/preferences/security/security-keys/remove",
        data={"key_id": "3", "csrf_token": token},
    )

    assert response.status_code == 302
    notices = [call[2] for call in services["identity"].calls if "notices" in call[1]]
    assert notices == [{"event": "factor_changed"}]


def test_second_key_added_sends_notice(keys_app, client, services):
    _signed_in_with_keys(client, services, [])
    token = _csrf(client.get("/agent/2fa/setup/security-key"))
    services["otp"].answer(
        "POST",
        "/v1/webauthn/registrations/verify",
        200,
        {"method": "webauthn", "recovery_codes": None, "credential": {"name": "Spare"}},
    )

    response = client.post(
        "/agent/2fa/setup/security-key",
        data={"name": "Spare", "credential": CREDENTIAL, "csrf_token": token},
    )

    assert response.status_code == 302
    assert response.headers["Location"].endswith("/agent/preferences/security")
    notices = [call[2] for call in services["identity"].calls if "notices" in call[1]]
    assert notices == [{"event": "factor_changed"}]
    with client.session_transaction() as session:
        assert "recovery_codes" not in session


def test_verify_key_for_app_agent_rejected(keys_app, client, services):
    # An agent whose factor is the app posts a key response by hand.
    _login(client, services, method="app")
    token = _csrf(client.get("/agent/2fa"))

    response = client.post(
        "/agent/2fa/security-key", data={"credential": CREDENTIAL, "csrf_token": token}
    )

    assert response.status_code == 302
    assert response.headers["Location"].endswith("/agent/2fa")
    assert "/v1/webauthn/authentications/verify" not in _otp_paths(services)
    assert client.get("/agent/dashboard").status_code != 200


def test_verify_page_says_wait_when_challenges_throttled(keys_app, client, services):
    _login(client, services, method="webauthn")
    services["otp"].answer(
        "POST", "/v1/webauthn/authentications", 429, {"retry_after": 120}
    )

    response = client.get("/agent/2fa")

    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Too many attempts" in page
    assert "2 minutes" in page
    assert 'data-webauthn="get"' not in page
    assert 'id="recovery-code"' in page


def test_keys_unavailable_at_other_host_name(keys_app, client, services):
    # The test client sends Host: localhost, another name than the public URL's.
    keys_app.config["PUBLIC_URL"] = "http://help.example.test:8080"
    _login(client, services, method=None)

    page = client.get("/agent/2fa/setup").get_data(as_text=True)

    assert 'value="webauthn" disabled' in page
    assert "Open http://help.example.test:8080/agent to use a security key" in page
    assert "/v1/webauthn/registrations" not in _otp_paths(services)


def test_verify_page_at_other_host_names_address(keys_app, client, services):
    keys_app.config["PUBLIC_URL"] = "http://help.example.test:8080"
    _login(client, services, method="webauthn")

    page = client.get("/agent/2fa").get_data(as_text=True)

    assert "Security keys work only at http://help.example.test:8080" in page
    assert 'data-webauthn="get"' not in page
    assert "/v1/webauthn/authentications" not in _otp_paths(services)
