"""Security keys (WebAuthn) through the HTTP API, with a software authenticator.

The registration and assertion responses are built in the test with a real EC P-256
key and real CBOR (tests/support/webauthn.py); py_webauthn verifies them unmocked.
"""

from __future__ import annotations

import json
import logging

import pytest
from gatehouse.otp.webauthn_store import RedisChallengeStore
from support.webauthn import FLAG_USER_VERIFIED, SoftAuthenticator, b64url

AGENT = 41
OTHER_AGENT = 42
RP_ID = "localhost"
ORIGIN = "http://localhost:8443"


def _start_registration(api, agent_id: int = AGENT, origin: str = ORIGIN):
    answer = api.post(
        "/v1/webauthn/registrations",
        {
            "agent_id": agent_id,
            "user_name": f"agent{agent_id}",
            "display_name": "Ada Lovelace",
            "rp_id": RP_ID,
            "origin": origin,
        },
    )
    assert answer.status_code == 200, answer.json
    return answer.json["options"]


def _finish_registration(api, credential: str, agent_id: int = AGENT, name="Key"):
    return api.post(
        "/v1/webauthn/registrations/verify",
        {
            "agent_id": agent_id,
            "credential": credential,
            "name": name,
            "client_ip": "127.0.0.1",
        },
    )


def _register(api, agent_id: int = AGENT, name: str = "Key") -> SoftAuthenticator:
    authenticator = SoftAuthenticator()
    options = _start_registration(api, agent_id)
    answer = _finish_registration(
        api, authenticator.register(options, ORIGIN), agent_id, name
    )
    assert answer.status_code == 200, answer.json
    return authenticator


def _start_authentication(api, agent_id: int = AGENT) -> dict:
    answer = api.post(
        "/v1/webauthn/authentications",
        {"agent_id": agent_id, "rp_id": RP_ID, "origin": ORIGIN},
    )
    assert answer.status_code == 200, answer.json
    return answer.json["options"]


def _verify(api, credential: str, agent_id: int = AGENT, client_ip="127.0.0.1"):
    return api.post(
        "/v1/webauthn/authentications/verify",
        {"agent_id": agent_id, "credential": credential, "client_ip": client_ip},
    )


def test_registration_options(api):
    options = _start_registration(api)
    assert options["rp"] == {"id": RP_ID, "name": "gatehouse"}
    assert options["attestation"] == "none"
    selection = options["authenticatorSelection"]
    assert selection["residentKey"] == "preferred"
    assert selection["userVerification"] == "preferred"
    assert options["excludeCredentials"] == []
    assert options["user"]["name"] == f"agent{AGENT}"
    # The user handle is stable per agent and carries no personal data.
    assert options["user"]["id"] == _start_registration(api)["user"]["id"]
    assert str(AGENT) not in options["user"]["id"]


def test_register_then_authenticate(api):
    authenticator = SoftAuthenticator()
    options = _start_registration(api)
    registered = _finish_registration(
        api, authenticator.register(options, ORIGIN), name="Blue key"
    )
    assert registered.status_code == 200, registered.json
    assert registered.json["method"] == "webauthn"
    assert len(registered.json["recovery_codes"]) == 10
    assert registered.json["credential"]["name"] == "Blue key"
    assert api.get(f"/v1/factors/{AGENT}").json["method"] == "webauthn"

    request_options = _start_authentication(api)
    allowed = [item["id"] for item in request_options["allowCredentials"]]
    assert allowed == [b64url(authenticator.credential_id)]
    assert request_options["userVerification"] == "preferred"
    verified = _verify(api, authenticator.assert_(request_options, ORIGIN))
    assert verified.status_code == 200, verified.json
    assert verified.json == {"method": "webauthn", "recovery_code_used": False}

    keys = api.get(f"/v1/webauthn/credentials/{AGENT}").json["credentials"]
    assert len(keys) == 1
    assert keys[0]["transports"] == ["usb"]
    assert keys[0]["last_used_at"] is not None


def test_registration_wrong_origin_rejected(api):
    authenticator = SoftAuthenticator()
    options = _start_registration(api)
    answer = _finish_registration(
        api, authenticator.register(options, "http://localhost:9999")
    )
    assert answer.status_code == 400
    assert answer.json["error"] == "invalid_credential"
    assert api.get(f"/v1/factors/{AGENT}").json["method"] is None


def test_registration_wrong_rp_id_hash_rejected(api):
    authenticator = SoftAuthenticator()
    options = _start_registration(api)
    answer = _finish_registration(
        api, authenticator.register(options, ORIGIN, rp_id="evil.example")
    )
    assert answer.status_code == 400
    assert answer.json["error"] == "invalid_credential"


def test_authentication_wrong_origin_rejected(api):
    authenticator = _register(api)
    options = _start_authentication(api)
    answer = _verify(api, authenticator.assert_(options, "https://localhost.evil"))
    assert answer.status_code == 400
    assert answer.json["error"] == "invalid_credential"


def test_authentication_wrong_rp_id_hash_rejected(api):
    authenticator = _register(api)
    options = _start_authentication(api)
    answer = _verify(api, authenticator.assert_(options, ORIGIN, rp_id="example.com"))
    assert answer.status_code == 400
    assert answer.json["error"] == "invalid_credential"


def test_replayed_assertion_rejected(api):
    authenticator = _register(api)
    options = _start_authentication(api)
    assertion = authenticator.assert_(options, ORIGIN)
    assert _verify(api, assertion).status_code == 200

    replay = _verify(api, assertion)
    assert replay.status_code == 400
    assert replay.json["error"] == "expired_challenge"


def test_replayed_registration_rejected(api):
    authenticator = SoftAuthenticator()
    options = _start_registration(api)
    response = authenticator.register(options, ORIGIN)
    assert _finish_registration(api, response).status_code == 200

    replay = _finish_registration(api, response)
    assert replay.status_code == 400
    assert replay.json["error"] == "expired_challenge"


def test_challenge_bound_to_ceremony(api):
    authenticator = _register(api)
    registration_options = _start_registration(api)
    # An assertion over a registration challenge finds no authentication challenge.
    answer = _verify(
        api,
        authenticator.assert_(
            {"challenge": registration_options["challenge"], "rpId": RP_ID}, ORIGIN
        ),
    )
    assert answer.status_code == 400
    assert answer.json["error"] == "expired_challenge"


def test_challenge_bound_to_agent(api):
    first = _register(api, AGENT)
    _register(api, OTHER_AGENT)
    options = _start_authentication(api, OTHER_AGENT)
    answer = _verify(api, first.assert_(options, ORIGIN), agent_id=AGENT)
    assert answer.status_code == 400
    assert answer.json["error"] == "expired_challenge"


def test_sign_count_regression_rejected_and_logged(api, caplog):
    authenticator = _register(api)
    options = _start_authentication(api)
    assert (
        _verify(api, authenticator.assert_(options, ORIGIN, sign_count=5)).status_code
        == 200
    )

    caplog.set_level(logging.WARNING, logger="gatehouse.otp")
    options = _start_authentication(api)
    answer = _verify(api, authenticator.assert_(options, ORIGIN, sign_count=3))
    assert answer.status_code == 400
    assert answer.json["error"] == "sign_count_regressed"
    records = [
        r for r in caplog.records if r.msg == "otp.webauthn_sign_count_regressed"
    ]
    assert len(records) == 1
    assert records[0].stored_sign_count == 5
    assert records[0].received_sign_count == 3

    options = _start_authentication(api)
    equal = _verify(api, authenticator.assert_(options, ORIGIN, sign_count=5))
    assert equal.json["error"] == "sign_count_regressed"
    options = _start_authentication(api)
    zero = _verify(api, authenticator.assert_(options, ORIGIN, sign_count=0))
    assert zero.json["error"] == "sign_count_regressed"
    options = _start_authentication(api)
    assert (
        _verify(api, authenticator.assert_(options, ORIGIN, sign_count=6)).status_code
        == 200
    )


def test_zero_sign_counts_accepted(api):
    authenticator = _register(api)
    for _ in range(2):
        options = _start_authentication(api)
        answer = _verify(api, authenticator.assert_(options, ORIGIN, sign_count=0))
        assert answer.status_code == 200, answer.json


def test_unknown_credential_rejected(api):
    _register(api)
    stranger = SoftAuthenticator()
    options = _start_authentication(api)
    answer = _verify(api, stranger.assert_(options, ORIGIN))
    assert answer.status_code == 400
    assert answer.json["error"] == "invalid_credential"


def test_other_agents_credential_rejected(api):
    _register(api, AGENT)
    other = _register(api, OTHER_AGENT)
    options = _start_authentication(api, AGENT)
    answer = _verify(api, other.assert_(options, ORIGIN), agent_id=AGENT)
    assert answer.status_code == 400
    assert answer.json["error"] == "invalid_credential"


def test_forged_signature_rejected(api):
    authenticator = _register(api)
    options = _start_authentication(api)
    assertion = json.loads(authenticator.assert_(options, ORIGIN))
    impostor = SoftAuthenticator()
    impostor.credential_id = authenticator.credential_id
    forged = json.loads(impostor.assert_(options, ORIGIN))
    assertion["response"]["signature"] = forged["response"]["signature"]
    answer = _verify(api, json.dumps(assertion))
    assert answer.status_code == 400
    assert answer.json["error"] == "invalid_credential"


@pytest.mark.parametrize(
    "credential",
    ["not json", "[]", "{}", json.dumps({"id": "x", "rawId": "x", "response": {}})],
)
def test_malformed_credential_400(api, credential):
    _register(api)
    _start_authentication(api)
    answer = _verify(api, credential)
    assert answer.status_code == 400
    assert answer.json["error"] == "malformed_credential"


def test_failed_assertions_throttled(make_api):
    api = make_api(OTP_THROTTLE_AGENT_SHORT_MAX=3)
    _register(api)
    stranger = SoftAuthenticator()
    statuses = []
    for _ in range(4):
        options = _start_authentication(api)
        statuses.append(_verify(api, stranger.assert_(options, ORIGIN)).status_code)
    assert statuses == [400, 400, 400, 429]


def test_second_key_excluded_and_added(api):
    first = _register(api, name="First")
    options = _start_registration(api)
    excluded = [item["id"] for item in options["excludeCredentials"]]
    assert excluded == [b64url(first.credential_id)]

    second = SoftAuthenticator()
    added = _finish_registration(api, second.register(options, ORIGIN), name="Second")
    assert added.status_code == 200, added.json
    # Adding a key keeps the factor and its recovery codes.
    assert added.json["recovery_codes"] is None
    assert api.get(f"/v1/factors/{AGENT}").json["recovery_codes_left"] == 10
    keys = api.get(f"/v1/webauthn/credentials/{AGENT}").json["credentials"]
    assert [key["name"] for key in keys] == ["First", "Second"]

    options = _start_authentication(api)
    assert _verify(api, second.assert_(options, ORIGIN)).status_code == 200


def test_same_key_registered_twice_409(api):
    authenticator = _register(api)
    options = _start_registration(api)
    answer = _finish_registration(api, authenticator.register(options, ORIGIN))
    assert answer.status_code == 409
    assert answer.json["error"] == "duplicate_credential"


def test_key_limit(make_api):
    api = make_api(OTP_WEBAUTHN_MAX_KEYS=2)
    _register(api)
    _register(api)
    options = _start_registration(api)
    answer = _finish_registration(api, SoftAuthenticator().register(options, ORIGIN))
    assert answer.status_code == 409
    assert answer.json["error"] == "too_many_credentials"


def test_remove_key_but_not_the_last(api):
    _register(api, name="First")
    _register(api, name="Second")
    keys = api.get(f"/v1/webauthn/credentials/{AGENT}").json["credentials"]

    removed = api.delete(f"/v1/webauthn/credentials/{AGENT}/{keys[0]['id']}")
    assert removed.status_code == 204
    last = api.delete(f"/v1/webauthn/credentials/{AGENT}/{keys[1]['id']}")
    assert last.status_code == 409
    assert last.json["error"] == "last_credential"
    left = api.get(f"/v1/webauthn/credentials/{AGENT}").json["credentials"]
    assert [key["name"] for key in left] == ["Second"]


def test_remove_other_agents_key_404(api):
    _register(api, AGENT)
    _register(api, OTHER_AGENT)
    _register(api, OTHER_AGENT)
    other_key = api.get(f"/v1/webauthn/credentials/{OTHER_AGENT}").json["credentials"][
        0
    ]
    answer = api.delete(f"/v1/webauthn/credentials/{AGENT}/{other_key['id']}")
    assert answer.status_code == 404
    assert (
        len(api.get(f"/v1/webauthn/credentials/{OTHER_AGENT}").json["credentials"]) == 2
    )


def test_recovery_code_signs_in_key_agent(api, flows):
    authenticator = SoftAuthenticator()
    options = _start_registration(api)
    codes = _finish_registration(api, authenticator.register(options, ORIGIN)).json[
        "recovery_codes"
    ]
    typed = flows.verify(api, "123456")
    assert typed.status_code == 400
    assert typed.json["error"] == "invalid_token"
    answer = flows.verify(api, codes[0])
    assert answer.status_code == 200, answer.json
    assert answer.json["recovery_code_used"] is True


def test_other_factor_replaces_keys(api, flows):
    _register(api)
    flows.enroll_app(api)
    assert api.get(f"/v1/webauthn/credentials/{AGENT}").json["credentials"] == []
    answer = api.post(
        "/v1/webauthn/authentications",
        {"agent_id": AGENT, "rp_id": RP_ID, "origin": ORIGIN},
    )
    assert answer.status_code == 409
    assert answer.json["error"] == "no_factor"


def test_factor_reset_removes_keys(api):
    _register(api)
    assert api.delete(f"/v1/factors/{AGENT}").status_code == 204
    assert api.get(f"/v1/webauthn/credentials/{AGENT}").json["credentials"] == []


def test_challenge_ttl_in_redis(make_api, redis_client, otp_env):
    api = make_api(OTP_WEBAUTHN_CHALLENGE_TTL=45)
    options = _start_registration(api)
    assert options["timeout"] == 45000
    pattern = f"{otp_env['GATEHOUSE_REDIS_PREFIX']}otp:webauthn:challenge:*"
    keys = list(redis_client.scan_iter(match=pattern))
    assert len(keys) == 1
    assert b":registration:41:" in keys[0]
    assert 0 < redis_client.ttl(keys[0]) <= 45


@pytest.mark.parametrize(
    ("rp_id", "origin"),
    [
        ("127.0.0.1", "http://127.0.0.1:8080"),
        ("[::1]", "http://[::1]:8080"),
        ("Example.COM", "https://example.com"),
        ("example.com", "http://example.com"),
        ("example.com", "https://example.org"),
        ("example.com", "https://example.com/agent"),
    ],
)
def test_invalid_rp_id_or_origin_400(api, rp_id, origin):
    answer = api.post(
        "/v1/webauthn/authentications",
        {"agent_id": AGENT, "rp_id": rp_id, "origin": origin},
    )
    assert answer.status_code == 400
    assert answer.json["error"] == "invalid_request"


def test_subdomain_origin_accepted(api):
    answer = api.post(
        "/v1/webauthn/registrations",
        {
            "agent_id": AGENT,
            "user_name": "ada",
            "rp_id": "example.com",
            "origin": "https://help.example.com",
        },
    )
    assert answer.status_code == 200, answer.json


def test_overlong_credential_id_rejected(api):
    authenticator = SoftAuthenticator()
    authenticator.credential_id = bytes(1024)
    options = _start_registration(api)
    answer = _finish_registration(api, authenticator.register(options, ORIGIN))
    assert answer.status_code == 400
    assert answer.json["error"] == "invalid_credential"
    assert "1023 bytes" in answer.json["message"]


def test_repeated_transports_stored_once(api):
    authenticator = SoftAuthenticator()
    options = _start_registration(api)
    response = json.loads(authenticator.register(options, ORIGIN))
    response["response"]["transports"] = ["usb", "nfc", "usb"] * 50
    answer = _finish_registration(api, json.dumps(response))
    assert answer.status_code == 200, answer.json
    assert answer.json["credential"]["transports"] == ["nfc", "usb"]


def test_registration_without_user_presence_rejected(api):
    authenticator = SoftAuthenticator()
    authenticator.flags = FLAG_USER_VERIFIED
    options = _start_registration(api)

    answer = _finish_registration(api, authenticator.register(options, ORIGIN))

    assert answer.status_code == 400
    assert answer.json["error"] == "invalid_credential"


def test_assertion_without_user_presence_rejected(api):
    authenticator = _register(api)
    authenticator.flags = 0
    options = _start_authentication(api)

    answer = _verify(api, authenticator.assert_(options, ORIGIN))

    assert answer.status_code == 400
    assert answer.json["error"] == "invalid_credential"


def test_assertion_with_create_type_rejected(api):
    authenticator = _register(api)
    authenticator.client_data_type = "webauthn.create"
    options = _start_authentication(api)

    answer = _verify(api, authenticator.assert_(options, ORIGIN))

    assert answer.status_code == 400
    assert answer.json["error"] == "invalid_credential"


def test_cross_origin_assertion_rejected(api):
    authenticator = _register(api)
    authenticator.client_data_extra = {"crossOrigin": True}
    options = _start_authentication(api)

    answer = _verify(api, authenticator.assert_(options, ORIGIN))

    assert answer.status_code == 400
    assert answer.json["error"] == "invalid_credential"


def test_challenges_capped_per_agent(api):
    _register(api)
    limit = RedisChallengeStore.MAX_CHALLENGES_PER_TTL
    # The registration above issued one challenge already.
    for _ in range(limit - 1):
        _start_authentication(api)

    answer = api.post(
        "/v1/webauthn/authentications",
        {"agent_id": AGENT, "rp_id": RP_ID, "origin": ORIGIN},
    )

    assert answer.status_code == 429
    assert 1 <= int(answer.headers["Retry-After"]) <= 300
    assert _start_registration(api, OTHER_AGENT)
