"""Recovery codes, remembered devices and removing a factor."""

from __future__ import annotations

import re
import threading

from gatehouse.otp import admin
from gatehouse.otp.recovery import normalize_recovery_code

AGENT = 41
CODE_SHAPE = re.compile(r"[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}")


def test_recovery_codes_shape(api, flows):
    codes = flows.enroll_email(api)
    assert len(codes) == 10
    assert len(set(codes)) == 10
    for code in codes:
        assert CODE_SHAPE.fullmatch(code)
        assert any(character.isalpha() for character in code)


def test_recovery_code_single_use(api, flows):
    codes = flows.enroll_email(api)
    used = flows.verify(api, codes[0])
    assert used.status_code == 200
    assert used.json == {
        "method": "email",
        "recovery_code_used": True,
        "recovery_codes_left": 9,
    }
    again = flows.verify(api, codes[0])
    assert again.status_code == 400
    assert again.json["error"] == "invalid_token"
    # Upper case and no hyphens are the same code.
    relaxed = flows.verify(api, codes[1].upper().replace("-", " "))
    assert relaxed.json["recovery_codes_left"] == 8
    assert api.get(f"/v1/factors/{AGENT}").json["recovery_codes_left"] == 8


def test_recovery_code_parallel_use_once(make_api, flows):
    api = make_api(OTP_THROTTLE_AGENT_SHORT_MAX=100, OTP_THROTTLE_IP_MAX=100)
    code = flows.enroll_email(api)[0]
    barrier = threading.Barrier(10)
    statuses = []

    def submit():
        barrier.wait()
        statuses.append(flows.verify(api, code).status_code)

    threads = [threading.Thread(target=submit) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses.count(200) == 1
    assert statuses.count(400) == 9


def test_recovery_code_of_other_agent_rejected(api, flows):
    codes = flows.enroll_email(api, agent_id=1)
    flows.enroll_email(api, agent_id=2)
    assert flows.verify(api, codes[0], agent_id=2).status_code == 400
    assert flows.verify(api, codes[0], agent_id=1).status_code == 200


def test_recovery_codes_renewal(api, flows):
    old = flows.enroll_email(api)
    renewed = api.post(f"/v1/factors/{AGENT}/recovery-codes")
    assert renewed.status_code == 200
    new = renewed.json["recovery_codes"]
    assert len(new) == 10
    assert not set(new) & set(old)
    assert flows.verify(api, old[0]).status_code == 400
    assert flows.verify(api, new[0]).json["recovery_codes_left"] == 9


def test_recovery_codes_renewal_without_factor(api):
    answer = api.post(f"/v1/factors/{AGENT}/recovery-codes")
    assert answer.status_code == 409
    assert answer.json["error"] == "no_factor"


def test_normalize_recovery_code_never_takes_digits():
    assert normalize_recovery_code("123456") is None
    assert normalize_recovery_code("2345-6723-4567") is None
    assert normalize_recovery_code("abcd-efgh-2345") == "abcdefgh2345"
    assert normalize_recovery_code("abcd-efgh-234") is None
    assert normalize_recovery_code("abcd-efgh-2341") is None


def test_verification_without_factor(api, flows):
    answer = flows.verify(api, "123456")
    assert answer.status_code == 409
    assert answer.json["error"] == "no_factor"
    challenge = flows.challenge(api)
    assert challenge.status_code == 409


def test_remembered_device(api):
    created = api.post("/v1/devices", {"agent_id": AGENT})
    assert created.status_code == 201
    token = created.json["device_token"]
    assert created.json["max_age"] == 30 * 86400

    def trusted(agent_id: int, device_token: str) -> bool:
        answer = api.post(
            "/v1/devices/check", {"agent_id": agent_id, "device_token": device_token}
        )
        assert answer.status_code == 200
        return answer.json["trusted"]

    assert trusted(AGENT, token) is True
    assert trusted(AGENT + 1, token) is False
    assert trusted(AGENT, token[:-2] + "xx") is False
    assert trusted(AGENT, "garbage") is False

    assert api.delete(f"/v1/devices/{AGENT}").status_code == 204
    assert trusted(AGENT, token) is False


def test_device_token_from_other_secret_rejected(make_api, monkeypatch):
    api = make_api()
    token = api.post("/v1/devices", {"agent_id": AGENT}).json["device_token"]
    monkeypatch.setenv("GATEHOUSE_SECRET_KEY", "another-secret-" + "x" * 32)
    other = make_api()
    answer = other.post("/v1/devices/check", {"agent_id": AGENT, "device_token": token})
    assert answer.json["trusted"] is False


def test_factor_change_revokes_devices(api, flows):
    flows.enroll_email(api)
    token = api.post("/v1/devices", {"agent_id": AGENT}).json["device_token"]
    flows.enroll_app(api)
    check = api.post("/v1/devices/check", {"agent_id": AGENT, "device_token": token})
    assert check.json["trusted"] is False


def test_factor_delete_drops_everything(api, flows):
    codes = flows.enroll_email(api)
    token = api.post("/v1/devices", {"agent_id": AGENT}).json["device_token"]
    flows.login_code(api)

    assert api.delete(f"/v1/factors/{AGENT}").status_code == 204
    assert api.get(f"/v1/factors/{AGENT}").json == {
        "method": None,
        "email_security": False,
        "recovery_codes_left": 0,
    }
    check = api.post("/v1/devices/check", {"agent_id": AGENT, "device_token": token})
    assert check.json["trusted"] is False
    assert flows.verify(api, codes[0]).json["error"] == "no_factor"


def test_admin_reset_factor(api, flows, otp_env, redis_client):
    flows.enroll_email(api)
    token = api.post("/v1/devices", {"agent_id": AGENT}).json["device_token"]
    code = flows.login_code(api)

    assert admin.reset_factor(AGENT) is True
    assert api.get(f"/v1/factors/{AGENT}").json["method"] is None
    check = api.post("/v1/devices/check", {"agent_id": AGENT, "device_token": token})
    assert check.json["trusted"] is False
    prefix = otp_env["GATEHOUSE_REDIS_PREFIX"]
    assert not redis_client.exists(f"{prefix}otp:email:token:login:{AGENT}")
    # After a new enrollment, the token from before the reset does not work.
    flows.enroll_email(api)
    assert flows.verify(api, code).status_code == 400

    assert admin.reset_factor(999) is False
