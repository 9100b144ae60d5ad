"""Bad input on the security-key (WebAuthn) API: every response is a 4xx JSON error."""

from __future__ import annotations

import json

import pytest
from support.webauthn import SoftAuthenticator, b64url

AGENT = 41
RP_ID = "localhost"
ORIGIN = "http://localhost:8443"


def _registration_options(api) -> dict:
    answer = api.post(
        "/v1/webauthn/registrations",
        {
            "agent_id": AGENT,
            "user_name": "agent41",
            "display_name": "Ada",
            "rp_id": RP_ID,
            "origin": ORIGIN,
        },
    )
    assert answer.status_code == 200, answer.json
    return answer.json["options"]


def _client_data(challenge) -> str:
    return b64url(
        json.dumps(
            {"type": "webauthn.create", "challenge": challenge, "origin": ORIGIN}
        ).encode()
    )


def _shaped(client_data: str) -> str:
    return json.dumps(
        {
            "id": "AAAA",
            "rawId": "AAAA",
            "type": "public-key",
            "response": {"clientDataJSON": client_data, "attestationObject": "AAAA"},
        }
    )


GARBAGE_CREDENTIALS = [
    "\ud800",
    '{"id": "\\ud800", "rawId": "\\ud800", "response": {}}',
    "[]",
    "null",
    "1e999999",
    '{"id": 1, "rawId": 2, "response": []}',
    '{"id": "AAAA", "rawId": "AAAA", "response": {"clientDataJSON": "\\ud800"}}',
    _shaped(b64url(b"\xff\xfe")),
    _shaped(b64url(b"[]")),
    _shaped(_client_data(12)),
    _shaped(_client_data(None)),
    _shaped(_client_data("\ud800")),
    _shaped(_client_data("!!!")),
    "{" * 5000,
    # Nested deeper than Python's recursion limit, within the 32 KiB size limit.
    "[" * 30000,
    '{"id": "AAAA", "rawId": "AAAA", "response": ' + "[" * 20000,
]


@pytest.mark.parametrize("credential", GARBAGE_CREDENTIALS)
def test_garbage_registration_4xx(api, credential):
    _registration_options(api)
    answer = api.post(
        "/v1/webauthn/registrations/verify",
        {"agent_id": AGENT, "credential": credential, "name": "Key"},
    )
    assert 400 <= answer.status_code < 500
    assert answer.json["error"]


@pytest.mark.parametrize("credential", GARBAGE_CREDENTIALS)
def test_garbage_assertion_4xx(api, credential):
    answer = api.post(
        "/v1/webauthn/authentications/verify",
        {"agent_id": AGENT, "credential": credential},
    )
    assert 400 <= answer.status_code < 500
    assert answer.json["error"]


@pytest.mark.parametrize("credential", GARBAGE_CREDENTIALS)
def test_garbage_assertion_key_agent_4xx(api, credential):
    options = _registration_options(api)
    registered = api.post(
        "/v1/webauthn/registrations/verify",
        {
            "agent_id": AGENT,
            "credential": SoftAuthenticator().register(options, ORIGIN),
            "name": "Key",
        },
    )
    assert registered.status_code == 200
    started = api.post(
        "/v1/webauthn/authentications",
        {"agent_id": AGENT, "rp_id": RP_ID, "origin": ORIGIN},
    )
    assert started.status_code == 200

    answer = api.post(
        "/v1/webauthn/authentications/verify",
        {"agent_id": AGENT, "credential": credential},
    )

    assert 400 <= answer.status_code < 500
    assert answer.json["error"]


@pytest.mark.parametrize(
    "field, value",
    [
        ("name", "\ud800"),
        ("name", "Key\ud800"),
        ("client_ip", "\udfff"),
        ("name", 12),
        ("name", ["Key"]),
        ("client_ip", {"a": 1}),
        ("agent_id", "41"),
        ("agent_id", 2**80),
        ("agent_id", 41.0),
    ],
)
def test_bad_registration_fields_4xx(api, field, value):
    options = _registration_options(api)
    body = {
        "agent_id": AGENT,
        "credential": SoftAuthenticator().register(options, ORIGIN),
        "name": "Key",
        "client_ip": "127.0.0.1",
        field: value,
    }
    answer = api.post("/v1/webauthn/registrations/verify", body)
    assert answer.status_code == 400
    assert answer.json["error"]


@pytest.mark.parametrize(
    "field, value",
    [
        ("user_name", "\ud800"),
        ("display_name", "Ada\udc00"),
        ("rp_id", "\ud800"),
        ("origin", "http://localhost\ud800"),
        ("origin", "http://[::1"),
        ("origin", "http://localhost:99999"),
        ("rp_id", "xn--" + "a" * 300),
        ("rp_id", 5),
        ("origin", None),
    ],
)
def test_bad_registration_start_4xx(api, field, value):
    body = {
        "agent_id": AGENT,
        "user_name": "agent41",
        "display_name": "Ada",
        "rp_id": RP_ID,
        "origin": ORIGIN,
        field: value,
    }
    answer = api.post("/v1/webauthn/registrations", body)
    assert answer.status_code == 400
    assert answer.json["error"]


@pytest.mark.parametrize("browser", ["Firefox\ud800", "Chrome\x00", 7, ["Firefox"]])
def test_remembered_browser_name_checked(api, browser):
    answer = api.post("/v1/devices", {"agent_id": AGENT, "browser": browser})
    assert answer.status_code == 400
    assert answer.json["error"]


def test_deeply_nested_body_400(api):
    # The raw body is JSON nested deeper than Python's recursion limit.
    body = '{"agent_id": 41, "credential": ' + "[" * 3000 + "]" * 3000 + "}"
    answer = api.app.test_client().post(
        "/v1/webauthn/registrations/verify",
        data=body,
        headers={**api.headers, "Content-Type": "application/json"},
    )

    assert answer.status_code == 400


def test_oversized_body_413(api):
    # Above the 32 KiB credential limit and the 64 KiB body limit.
    body = {"agent_id": AGENT, "credential": "x" * (128 * 1024), "name": "Key"}

    answer = api.post("/v1/webauthn/registrations/verify", body)

    assert answer.status_code == 413
    assert answer.json["error"]
