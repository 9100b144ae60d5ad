"""Email tokens through the HTTP API, with real Redis and RabbitMQ."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter

import pytest
from gatehouse.common.config import ConfigError

AGENT = 41


def test_token_mail_published_with_fields(api, mail_queue, otp_env):
    answer = api.post(
        "/v1/enrollments/email",
        {
            "agent_id": AGENT,
            "email": "ada@example.test",
            "first_name": "Ada",
            "email_security": True,
        },
    )
    assert answer.status_code == 202
    assert answer.json["ttl_seconds"] == 600
    assert answer.json["digits"] == 6

    job = mail_queue.wait_for(AGENT)
    assert job.kind == "token"
    assert job.to == "ada@example.test"
    assert job.first_name == "Ada"
    assert job.email_security is True
    assert job.params["purpose"] == "enrollment"
    assert job.params["ttl_seconds"] == 600
    assert re.fullmatch(r"[0-9]{6}", job.params["token"])
    assert abs(job.expires_at - (time.time() + 600)) < 5
    assert mail_queue.properties(job).delivery_mode == 2

    confirmed = api.post(
        "/v1/enrollments/email/confirm",
        {
            "agent_id": AGENT,
            "token": job.params["token"],
            "client_ip": "127.0.0.1",
        },
    )
    assert confirmed.status_code == 200
    assert confirmed.json["method"] == "email"
    factor = api.get(f"/v1/factors/{AGENT}").json
    assert factor == {
        "method": "email",
        "email_security": True,
        "recovery_codes_left": 10,
    }


def test_login_token_verifies_once(api, mail_queue, flows):
    flows.enroll_email(api)
    answer = flows.challenge(api)
    assert answer.status_code == 202
    assert answer.json["method"] == "email"
    job = mail_queue.wait_for(AGENT, count=2)
    assert job.params["purpose"] == "login"

    first = flows.verify(api, job.params["token"])
    assert first.status_code == 200
    assert first.json == {
        "method": "email",
        "recovery_code_used": False,
    }
    second = flows.verify(api, job.params["token"])
    assert second.status_code == 400
    assert second.json["error"] == "replayed_token"


def test_token_redis_ttl_matches_mail(api, mail_queue, otp_env, redis_client, flows):
    flows.enroll_email(api)
    flows.challenge(api)
    job = mail_queue.wait_for(AGENT, count=2)
    key = f"{otp_env['GATEHOUSE_REDIS_PREFIX']}otp:email:token:login:{AGENT}"
    remaining_ms = redis_client.pttl(key)
    stated_ms = (job.expires_at - time.time()) * 1000
    assert 0 < remaining_ms <= 600_000
    assert abs(remaining_ms - stated_ms) < 1000
    # Only a keyed hash is stored, never the code.
    stored = redis_client.hgetall(key)
    assert job.params["token"].encode() not in b"".join(stored.values())


def test_token_with_separators_and_enrollment_purpose(api, mail_queue, flows):
    flows.enroll_email(api)
    flows.challenge(api)
    code = mail_queue.wait_for(AGENT, count=2).params["token"]
    spaced = f"{code[:3]} - {code[3:]}"
    assert flows.verify(api, spaced).status_code == 200


def test_enrollment_token_rejected_for_login(api, mail_queue, flows):
    flows.enroll_email(api)
    api.post(
        "/v1/enrollments/email",
        {
            "agent_id": AGENT,
            "email": "ada@example.test",
            "first_name": "Ada",
        },
    )
    code = mail_queue.wait_for(AGENT, count=2).params["token"]
    answer = flows.verify(api, code)
    assert answer.status_code == 400
    assert answer.json["error"] == "invalid_token"


def test_parallel_correct_submissions_succeed_once(make_api, mail_queue, flows):
    api = make_api(
        OTP_THROTTLE_AGENT_SHORT_MAX=1000,
        OTP_THROTTLE_IP_MAX=1000,
        OTP_THROTTLE_AGENT_LONG_MAX=1000,
    )
    flows.enroll_email(api)
    flows.challenge(api)
    code = mail_queue.wait_for(AGENT, count=2).params["token"]

    barrier = threading.Barrier(20)
    statuses: list[int] = []

    def submit():
        barrier.wait()
        statuses.append(flows.verify(api, code).status_code)

    threads = [threading.Thread(target=submit) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(statuses) == 20
    assert statuses.count(200) == 1
    assert statuses.count(400) == 19


def test_parallel_wrong_submissions_all_counted(make_api, mail_queue, flows):
    api = make_api(
        OTP_THROTTLE_AGENT_SHORT_MAX=1000,
        OTP_THROTTLE_IP_MAX=1000,
        OTP_THROTTLE_AGENT_LONG_MAX=1000,
    )
    flows.enroll_email(api)
    flows.challenge(api)
    code = mail_queue.wait_for(AGENT, count=2).params["token"]
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"

    barrier = threading.Barrier(50)
    errors: list[str] = []

    def submit():
        barrier.wait()
        errors.append(flows.verify(api, wrong).json["error"])

    threads = [threading.Thread(target=submit) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    counts = Counter(errors)
    # Tries 1-4 are plain failures; the fifth destroys the token, and every
    # later one learns that a new code is needed.
    assert len(errors) == 50
    assert counts["invalid_token"] == 4
    assert counts["too_many_attempts"] == 46
    assert flows.verify(api, code).json["error"] == "too_many_attempts"


def test_too_many_attempts_destroys_token(make_api, mail_queue, flows):
    api = make_api(OTP_THROTTLE_AGENT_SHORT_MAX=100)
    flows.enroll_email(api)
    flows.challenge(api)
    code = mail_queue.wait_for(AGENT, count=2).params["token"]
    wrong = f"{(int(code) + 7) % 1_000_000:06d}"
    answers = [flows.verify(api, wrong).json["error"] for _ in range(5)]
    assert answers == ["invalid_token"] * 4 + ["too_many_attempts"]

    late = flows.verify(api, code)
    assert late.status_code == 400
    assert late.json["error"] == "too_many_attempts"
    assert "new" in late.json["message"]


def test_expired_token_told_apart_from_wrong(make_api, mail_queue, flows):
    api = make_api(OTP_TOKEN_TTL=1)
    flows.enroll_email(api)
    never_issued = flows.verify(api, "123456")
    assert never_issued.json["error"] == "invalid_token"

    flows.challenge(api)
    job = mail_queue.wait_for(AGENT, count=2)
    assert job.params["ttl_seconds"] == 1
    time.sleep(1.2)
    expired = flows.verify(api, job.params["token"])
    assert expired.status_code == 400
    assert expired.json["error"] == "expired_token"
    assert expired.json["message"] != never_issued.json["message"]


def test_resend_cooldown(make_api, mail_queue, flows):
    api = make_api(OTP_RESEND_COOLDOWN=1)
    flows.enroll_email(api)
    assert flows.challenge(api).status_code == 202

    too_soon = flows.challenge(api)
    assert too_soon.status_code == 429
    assert too_soon.json["error"] == "resend_too_soon"
    assert too_soon.json["retry_after"] == 1
    assert too_soon.headers["Retry-After"] == "1"
    assert too_soon.json["hourly_cap"] is False
    assert len(mail_queue.jobs(AGENT)) == 2

    time.sleep(1.1)
    assert flows.challenge(api).status_code == 202
    mail_queue.wait_for(AGENT, count=3)


def test_resend_default_cooldown_is_30_seconds(api, mail_queue, flows):
    flows.enroll_email(api)
    assert flows.challenge(api).status_code == 202
    too_soon = flows.challenge(api)
    assert too_soon.status_code == 429
    assert 29 <= too_soon.json["retry_after"] <= 30


def test_resend_hourly_cap(make_api, mail_queue, flows):
    api = make_api(OTP_RESEND_COOLDOWN=0, OTP_RESEND_HOURLY_CAP=3)
    flows.enroll_email(api)
    # The enrollment mail was the first of three this hour.
    assert flows.challenge(api).status_code == 202
    assert flows.challenge(api).status_code == 202
    capped = flows.challenge(api)
    assert capped.status_code == 429
    assert capped.json["error"] == "resend_too_soon"
    assert capped.json["hourly_cap"] is True
    assert 3500 < capped.json["retry_after"] <= 3600


def test_resend_old_code_rejected(make_api, mail_queue, flows):
    api = make_api(OTP_RESEND_COOLDOWN=0)
    flows.enroll_email(api)
    flows.challenge(api)
    old = mail_queue.wait_for(AGENT, count=2).params["token"]
    answer = flows.challenge(api)
    assert "newest" in answer.json["message"]
    new = mail_queue.wait_for(AGENT, count=3).params["token"]
    if new == old:
        pytest.skip("both random codes are equal (chance 1 in a million)")

    # The first mail arrives late, after the resend: its code no longer works.
    late = flows.verify(api, old)
    assert late.status_code == 400
    assert late.json["error"] == "invalid_token"
    assert "newer" in late.json["message"]
    assert flows.verify(api, new).status_code == 200


def test_successful_login_ends_cooldown(api, mail_queue, flows):
    flows.enroll_email(api)
    flows.challenge(api)
    code = mail_queue.wait_for(AGENT, count=2).params["token"]
    assert flows.verify(api, code).status_code == 200
    assert flows.challenge(api).status_code == 202


def test_publish_failure_answers_503_without_token(
    make_api, mail_queue, flows, monkeypatch, free_port
):
    api = make_api(OTP_RESEND_COOLDOWN=0)
    flows.enroll_email(api)
    flows.challenge(api)
    working = mail_queue.wait_for(AGENT, count=2).params["token"]

    # A loopback port nobody listens on: the broker is unreachable.
    monkeypatch.setenv("AMQP_URL", f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F")
    broken = make_api(OTP_RESEND_COOLDOWN=0)
    failed = flows.challenge(broken)
    assert failed.status_code == 503
    assert failed.json["error"] == "mail_unavailable"
    # The unsent code never became the live token, so the earlier one still works.
    assert flows.verify(api, working).status_code == 200


def test_publish_failure_does_not_count_as_send(
    make_api, flows, monkeypatch, free_port
):
    api = make_api()
    flows.enroll_email(api)
    monkeypatch.setenv("AMQP_URL", f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F")
    broken = make_api()
    assert flows.challenge(broken).status_code == 503
    # No cooldown started, because no mail left.
    assert flows.challenge(api).status_code == 202


def test_token_digits_from_config(make_api, mail_queue, flows):
    api = make_api(OTP_TOKEN_DIGITS=8)
    flows.enroll_email(api)
    answer = flows.challenge(api)
    assert answer.json["digits"] == 8
    code = mail_queue.wait_for(AGENT, count=2).params["token"]
    assert re.fullmatch(r"[0-9]{8}", code)

    short = flows.verify(api, code[:6])
    assert short.status_code == 400
    assert short.json["error"] == "invalid_token"
    assert "8 digits" in short.json["message"]
    assert flows.verify(api, code).status_code == 200


def test_token_digits_out_of_range(make_api):
    for digits in (5, 11):
        with pytest.raises(ConfigError, match="OTP_TOKEN_DIGITS"):
            make_api(OTP_TOKEN_DIGITS=digits)


def test_replayed_token_told_apart_from_wrong(make_api, mail_queue, flows, caplog):
    caplog.set_level(logging.INFO, logger="gatehouse.otp")
    api = make_api(OTP_RESEND_COOLDOWN=0)
    flows.enroll_email(api)
    used = flows.login_code(api)
    assert flows.verify(api, used).status_code == 200

    replay_without_live_token = flows.verify(api, used)
    newest = flows.login_code(api)
    replay_beside_live_token = flows.verify(api, used)
    wrong = flows.verify(api, "000000" if newest != "000000" else "111111")
    newest_answer = flows.verify(api, newest)

    assert replay_without_live_token.status_code == 400
    assert replay_without_live_token.json["error"] == "replayed_token"
    assert replay_beside_live_token.json["error"] == "replayed_token"
    assert "already used" in replay_beside_live_token.json["message"]
    assert wrong.json["error"] == "invalid_token"
    # The replay costs one of the live token's tries but does not end it.
    assert newest_answer.status_code == 200
    replayed = [r for r in caplog.records if r.getMessage() == "otp.code_replayed"]
    assert len(replayed) == 2
    assert replayed[0].agent_id == AGENT
    assert replayed[0].reason == "replayed_token"
    logged_values = {str(value) for r in caplog.records for value in vars(r).values()}
    assert used not in logged_values
