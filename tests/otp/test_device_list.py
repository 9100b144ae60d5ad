"""Listing remembered devices and forgetting one of them."""

from __future__ import annotations

import time

AGENT = 43


def _remember(api, browser):
    created = api.post("/v1/devices", {"agent_id": AGENT, "browser": browser})
    assert created.status_code == 201
    return created.json["device_token"]


def _trusted(api, token) -> bool:
    answer = api.post("/v1/devices/check", {"agent_id": AGENT, "device_token": token})
    assert answer.status_code == 200
    return answer.json["trusted"]


def test_devices_listed_with_browser_and_times(api):
    before = time.time()
    _remember(api, "Firefox on Linux")
    time.sleep(0.01)
    second = _remember(api, "Chrome on Windows")

    devices = api.get(f"/v1/devices/{AGENT}").json["devices"]

    assert [device["browser"] for device in devices] == [
        "Chrome on Windows",
        "Firefox on Linux",
    ]
    for device in devices:
        assert before - 1 <= device["created"] <= time.time() + 1
        assert device["last_used"] >= device["created"]
        assert len(device["handle"]) == 20
        assert device["handle"] not in second


def test_check_updates_last_used(api):
    token = _remember(api, "Firefox on Linux")
    first_use = api.get(f"/v1/devices/{AGENT}").json["devices"][0]["last_used"]
    time.sleep(0.05)

    assert _trusted(api, token) is True

    [device] = api.get(f"/v1/devices/{AGENT}").json["devices"]
    assert device["last_used"] > first_use


def test_forget_one_device(api):
    kept = _remember(api, "Firefox on Linux")
    doomed = _remember(api, "Chrome on Windows")
    devices = api.get(f"/v1/devices/{AGENT}").json["devices"]
    handle = next(d["handle"] for d in devices if d["browser"] == "Chrome on Windows")

    response = api.delete(f"/v1/devices/{AGENT}/{handle}")

    assert response.status_code == 204
    assert _trusted(api, doomed) is False
    assert _trusted(api, kept) is True
    remaining = api.get(f"/v1/devices/{AGENT}").json["devices"]
    assert [device["browser"] for device in remaining] == ["Firefox on Linux"]
    again = api.delete(f"/v1/devices/{AGENT}/{handle}")
    assert again.status_code == 404
    assert again.json["error"] == "not_found"


def test_forget_non_ascii_handle_not_found(api):
    _remember(api, "Firefox on Linux")

    response = api.delete(f"/v1/devices/{AGENT}/h%C3%A4ndle")

    assert response.status_code == 404
    assert response.json["error"] == "not_found"


def test_forget_all_clears_list(api):
    _remember(api, "Firefox on Linux")

    assert api.delete(f"/v1/devices/{AGENT}").status_code == 204

    assert api.get(f"/v1/devices/{AGENT}").json["devices"] == []


def test_browser_description_validated(api):
    too_long = api.post("/v1/devices", {"agent_id": AGENT, "browser": "x" * 61})
    not_text = api.post("/v1/devices", {"agent_id": AGENT, "browser": 5})

    assert too_long.status_code == 400
    assert not_text.status_code == 400


def test_expired_device_details_removed(api, redis_client, otp_env):
    _remember(api, "Firefox on Linux")
    prefix = f"{otp_env['GATEHOUSE_REDIS_PREFIX']}otp:"
    key = f"{prefix}devices:{AGENT}"
    [expired] = redis_client.zrange(key, 0, -1)
    # Let the first device expire without waiting the minimum TTL of 60 s.
    redis_client.zadd(key, {expired: int(time.time() * 1000) - 1})

    _remember(api, "Chrome on Windows")

    assert redis_client.hlen(f"{prefix}devices-info:{AGENT}") == 1
    assert redis_client.zcard(f"{prefix}devices-used:{AGENT}") == 1
    assert [
        device["browser"] for device in api.get(f"/v1/devices/{AGENT}").json["devices"]
    ] == ["Chrome on Windows"]
