"""Authenticator-app factor through the HTTP API; codes come from pyotp."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pyotp
import pytest
import sqlalchemy
from cryptography.fernet import Fernet
from gatehouse.otp.config import default_database_url

AGENT = 41


def _wait_for_fresh_step(margin: float = 3.0) -> None:
    """Sleep past a step boundary if one is closer than ``margin`` seconds."""
    left = 30 - time.time() % 30
    if left < margin:
        time.sleep(left + 0.05)


def test_app_enrollment_answer(api):
    answer = api.post("/v1/enrollments/app", {"agent_id": AGENT, "account_name": "ada"})
    assert answer.status_code == 200
    body = answer.json
    assert len(body["secret"]) == 32
    assert body["otpauth_uri"].startswith("otpauth://totp/gatehouse:ada?")
    assert f"secret={body['secret']}" in body["otpauth_uri"]
    assert body["qr_svg"].startswith("<svg")
    assert body["ttl_seconds"] == 600
    # Nothing is stored before the confirmation.
    assert api.get(f"/v1/factors/{AGENT}").json["method"] is None


def test_app_enrollment_issuer_from_config(make_api):
    api = make_api(OTP_TOTP_ISSUER="ACME: Support")
    answer = api.post(
        "/v1/enrollments/app",
        {"agent_id": AGENT, "account_name": "o'brien+ops@example.test"},
    )
    parsed = pyotp.parse_uri(answer.json["otpauth_uri"])
    assert parsed.issuer == "ACME: Support"
    assert parsed.name == "o'brien+ops@example.test"


def test_app_confirm_wrong_code(api):
    started = api.post(
        "/v1/enrollments/app", {"agent_id": AGENT, "account_name": "ada"}
    )
    code = pyotp.TOTP(started.json["secret"]).now()
    wrong = f"{(int(code) + 500_000) % 1_000_000:06d}"
    answer = api.post(
        "/v1/enrollments/app/confirm",
        {"agent_id": AGENT, "token": wrong, "client_ip": "127.0.0.1"},
    )
    assert answer.status_code == 400
    assert answer.json["error"] == "invalid_token"
    assert api.get(f"/v1/factors/{AGENT}").json["method"] is None


def test_app_confirm_without_enrollment(api):
    answer = api.post(
        "/v1/enrollments/app/confirm",
        {"agent_id": AGENT, "token": "123456", "client_ip": "127.0.0.1"},
    )
    assert answer.status_code == 400
    assert answer.json["error"] == "invalid_token"


def test_app_confirm_after_pending_expiry(make_api):
    api = make_api(OTP_ENROLLMENT_TTL=1)
    started = api.post(
        "/v1/enrollments/app", {"agent_id": AGENT, "account_name": "ada"}
    )
    time.sleep(1.2)
    answer = api.post(
        "/v1/enrollments/app/confirm",
        {
            "agent_id": AGENT,
            "token": pyotp.TOTP(started.json["secret"]).now(),
            "client_ip": "127.0.0.1",
        },
    )
    assert answer.status_code == 400
    assert answer.json["error"] == "expired_token"


def test_app_login_and_replay(api, flows):
    secret, codes = flows.enroll_app(api)
    assert len(codes) == 10
    factor = api.get(f"/v1/factors/{AGENT}").json
    assert factor == {
        "method": "app",
        "email_security": False,
        "recovery_codes_left": 10,
    }
    assert flows.challenge(api).json == {"method": "app"}

    _wait_for_fresh_step()
    code = pyotp.TOTP(secret).now()
    first = flows.verify(api, code)
    assert first.status_code == 200
    assert first.json == {
        "method": "app",
        "recovery_code_used": False,
    }
    replay = flows.verify(api, code)
    assert replay.status_code == 400
    assert replay.json["error"] == "replayed_token"
    assert "already used" in replay.json["message"]


def test_previous_step_rejected_after_newer(api, flows):
    secret, _codes = flows.enroll_app(api)
    _wait_for_fresh_step()
    generator = pyotp.TOTP(secret)
    now = time.time()
    newer = generator.at(now + 30)
    previous = generator.at(now)
    if newer == previous:
        pytest.skip("two neighbouring steps share a code (chance 1 in a million)")
    assert flows.verify(api, newer).status_code == 200
    late = flows.verify(api, previous)
    assert late.status_code == 400
    # A step before the last accepted one is used up as well.
    assert late.json["error"] == "replayed_token"


def test_enrollment_code_cannot_log_in(api, flows):
    started = api.post(
        "/v1/enrollments/app", {"agent_id": AGENT, "account_name": "ada"}
    )
    _wait_for_fresh_step()
    code = pyotp.TOTP(started.json["secret"]).now()
    confirmed = api.post(
        "/v1/enrollments/app/confirm",
        {"agent_id": AGENT, "token": code, "client_ip": "127.0.0.1"},
    )
    assert confirmed.status_code == 200
    assert flows.verify(api, code).status_code == 400


def test_drift_window_one_step(api, flows):
    secret, _codes = flows.enroll_app(api)
    _wait_for_fresh_step()
    generator = pyotp.TOTP(secret)
    now = time.time()
    too_far = generator.at(now + 60)
    near = {generator.at(now + offset) for offset in (-30, 0, 30)}
    if too_far not in near:
        assert flows.verify(api, too_far).status_code == 400
    assert flows.verify(api, generator.at(now + 30)).status_code == 200


def test_wrong_length_codes_rejected(api, flows):
    secret, _codes = flows.enroll_app(api)
    _wait_for_fresh_step()
    code = pyotp.TOTP(secret).now()
    for attempt in (code[:5], code + "0", "12345a"):
        answer = flows.verify(api, attempt)
        assert answer.status_code == 400
        assert answer.json["error"] == "invalid_token"
    assert flows.verify(api, f"{code[:3]} {code[3:]}").status_code == 200


def test_change_of_method_only_after_confirmation(api, flows):
    flows.enroll_email(api)
    started = api.post(
        "/v1/enrollments/app", {"agent_id": AGENT, "account_name": "ada"}
    )
    assert started.status_code == 200
    # Unconfirmed: the email factor is still in force.
    assert api.get(f"/v1/factors/{AGENT}").json["method"] == "email"
    assert flows.challenge(api).status_code == 202

    code = pyotp.TOTP(started.json["secret"]).now()
    confirmed = api.post(
        "/v1/enrollments/app/confirm",
        {"agent_id": AGENT, "token": code, "client_ip": "127.0.0.1"},
    )
    assert confirmed.status_code == 200
    assert api.get(f"/v1/factors/{AGENT}").json["method"] == "app"


def test_secret_encrypted_at_rest_and_key_rotation(
    make_api, flows, otp_env, monkeypatch
):
    api = make_api()
    secret, _codes = flows.enroll_app(api)
    url = default_database_url(Path(otp_env["GATEHOUSE_DATA_DIR"]))
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as connection:
        stored = connection.execute(
            sqlalchemy.text(
                "SELECT secret_encrypted FROM otp_factors WHERE agent_id = :agent"
            ),
            {"agent": AGENT},
        ).scalar_one()
    engine.dispose()
    assert secret not in stored
    old_key = otp_env["GATEHOUSE_OTP_KEYS"]
    assert Fernet(old_key).decrypt(stored.encode()).decode() == secret

    # A new key goes first; the factor encrypted under the old key still works.
    monkeypatch.setenv(
        "GATEHOUSE_OTP_KEYS", f"{Fernet.generate_key().decode()},{old_key}"
    )
    rotated = make_api()
    _wait_for_fresh_step()
    assert flows.verify(rotated, pyotp.TOTP(secret).now()).status_code == 200


def test_totp_replay_logged_as_replay(api, flows, caplog):
    caplog.set_level(logging.INFO, logger="gatehouse.otp")
    secret, _codes = flows.enroll_app(api)
    _wait_for_fresh_step()
    code = pyotp.TOTP(secret).now()
    assert flows.verify(api, code).status_code == 200

    replay = flows.verify(api, code)

    assert replay.json["error"] == "replayed_token"
    events = [r.getMessage() for r in caplog.records]
    assert events.count("otp.code_replayed") == 1
    assert "otp.verify_failed" not in events
    logged_values = {str(value) for r in caplog.records for value in vars(r).values()}
    assert code not in logged_values
