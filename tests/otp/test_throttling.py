"""Verification throttling per agent, per client address and globally."""

from __future__ import annotations

import logging
import time

import pyotp
from gatehouse.otp import admin

AGENT = 41
SHORT_WINDOWS = {
    "OTP_THROTTLE_AGENT_SHORT_MAX": 3,
    "OTP_THROTTLE_AGENT_SHORT_WINDOW": 2,
    "OTP_RESEND_COOLDOWN": 0,
}


def test_agent_throttle_and_release(make_api, flows):
    api = make_api(**SHORT_WINDOWS)
    secret, _codes = flows.enroll_app(api)
    answers = [flows.verify(api, "000000") for _ in range(3)]
    assert [a.status_code for a in answers] == [400, 400, 400]

    throttled = flows.verify(api, pyotp.TOTP(secret).now())
    assert throttled.status_code == 429
    assert throttled.json["error"] == "throttled"
    assert throttled.json["retry_after"] in (1, 2)
    assert throttled.headers["Retry-After"] == str(throttled.json["retry_after"])

    # Never a permanent lockout: the window frees itself.
    time.sleep(throttled.json["retry_after"] + 0.1)
    released = flows.verify(api, pyotp.TOTP(secret).now())
    assert released.status_code == 200


def test_throttle_covers_every_verification_path(make_api, flows):
    api = make_api(**SHORT_WINDOWS)
    flows.enroll_app(api, agent_id=7)
    for _ in range(3):
        flows.verify(api, "000000", agent_id=7)

    paths = [
        ("/v1/verifications", {"token": "aaaa-bbbb-cccc"}),
        ("/v1/enrollments/email/confirm", {"token": "123456"}),
        ("/v1/enrollments/app/confirm", {"token": "123456"}),
    ]
    for path, body in paths:
        answer = api.post(path, {"agent_id": 7, "client_ip": "127.0.0.1", **body})
        assert answer.status_code == 429, path
        assert answer.json["error"] == "throttled", path

    # The email enrollment start is refused too, so no mail goes out.
    started = api.post(
        "/v1/enrollments/email",
        {"agent_id": 7, "email": "ada@example.test", "first_name": "Ada"},
    )
    assert started.status_code == 429


def test_enrollment_confirm_failures_count(make_api):
    api = make_api(**SHORT_WINDOWS)
    api.post("/v1/enrollments/app", {"agent_id": AGENT, "account_name": "ada"})
    for _ in range(3):
        answer = api.post(
            "/v1/enrollments/app/confirm",
            {"agent_id": AGENT, "token": "000000", "client_ip": "127.0.0.1"},
        )
        assert answer.status_code == 400
    answer = api.post(
        "/v1/enrollments/app/confirm",
        {"agent_id": AGENT, "token": "000000", "client_ip": "127.0.0.1"},
    )
    assert answer.status_code == 429


def test_ip_throttle_spans_agents(make_api, flows):
    api = make_api(OTP_THROTTLE_IP_MAX=4, OTP_THROTTLE_IP_WINDOW=60)
    for agent_id in (1, 2, 3, 4):
        flows.enroll_app(api, agent_id=agent_id)
        assert (
            flows.verify(
                api, "000000", agent_id=agent_id, client_ip="192.0.2.9"
            ).status_code
            == 400
        )
    blocked = flows.verify(api, "000000", agent_id=5, client_ip="192.0.2.9")
    assert blocked.status_code == 429
    other_address = flows.verify(api, "000000", agent_id=1, client_ip="192.0.2.10")
    assert other_address.status_code == 400


def test_global_throttle(make_api, flows):
    api = make_api(OTP_THROTTLE_GLOBAL_MAX=2, OTP_THROTTLE_GLOBAL_WINDOW=60)
    flows.enroll_app(api, agent_id=1)
    flows.enroll_app(api, agent_id=2)
    flows.verify(api, "000000", agent_id=1, client_ip="192.0.2.1")
    flows.verify(api, "000000", agent_id=2, client_ip="192.0.2.2")
    blocked = flows.verify(api, "000000", agent_id=2, client_ip="192.0.2.3")
    assert blocked.status_code == 429


def test_exempt_agent_not_throttled(make_api, flows, caplog):
    caplog.set_level(logging.WARNING, logger="gatehouse.otp")
    api = make_api(OTP_THROTTLE_EXEMPT_AGENTS="41, 43", **SHORT_WINDOWS)
    assert any(
        record.getMessage() == "otp.throttle_exempt_agents" for record in caplog.records
    )
    flows.enroll_app(api)
    for _ in range(6):
        assert flows.verify(api, "000000").status_code == 400
    flows.enroll_app(api, agent_id=42)
    for _ in range(3):
        flows.verify(api, "000000", agent_id=42)
    assert flows.verify(api, "000000", agent_id=42).status_code == 429


def test_failures_logged_without_secrets(make_api, flows, caplog):
    caplog.set_level(logging.INFO, logger="gatehouse.otp")
    api = make_api(**SHORT_WINDOWS)
    secret, _codes = flows.enroll_app(api)
    for _ in range(4):
        flows.verify(api, "987654", client_ip="198.51.100.23")

    failed = [r for r in caplog.records if r.getMessage() == "otp.verify_failed"]
    throttled = [r for r in caplog.records if r.getMessage() == "otp.throttled"]
    assert len(failed) == 3
    assert len(throttled) >= 1
    assert failed[0].agent_id == AGENT
    assert len(failed[0].ip_hash) == 16
    text = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "198.51.100.23" not in text
    assert "987654" not in text
    assert secret not in text


def test_admin_clear_throttle(make_api, flows):
    api = make_api(**SHORT_WINDOWS)
    secret, _codes = flows.enroll_app(api)
    for _ in range(3):
        flows.verify(api, "000000")
    assert flows.verify(api, "000000").status_code == 429

    assert admin.clear_throttle(AGENT) >= 1
    assert flows.verify(api, pyotp.TOTP(secret).now()).status_code == 200


def test_malformed_codes_not_counted(make_api, flows):
    api = make_api(**SHORT_WINDOWS)
    secret, _codes = flows.enroll_app(api)
    malformed = [flows.verify(api, token) for token in ("12345", "abcdef", "1234567")]
    assert [a.status_code for a in malformed] == [400, 400, 400]
    assert all(a.json["error"] == "invalid_token" for a in malformed)

    accepted = flows.verify(api, pyotp.TOTP(secret).now())

    assert accepted.status_code == 200
