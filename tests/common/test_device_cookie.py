"""The login device cookie codec: binding to the login, expiry, entry cap, size."""

from __future__ import annotations

import time

from gatehouse.common import device_cookie
from gatehouse.common.device_cookie import (
    MAX_COOKIE_LENGTH,
    MAX_ENTRIES,
    DeviceCookieCodec,
)

KEY = "test secret key"
DAY = 86400


def test_entry_binds_to_login_case_insensitively():
    codec = DeviceCookieCodec(KEY, 30 * DAY)
    cookie = codec.issue(None, "Alice")

    assert codec.find(cookie, "alice") is not None
    assert codec.find(cookie, "ALICE") == codec.find(cookie, "alice")
    assert codec.find(cookie, "bob") is None
    assert "alice" not in cookie.lower()


def test_other_key_rejects_entry():
    cookie = DeviceCookieCodec(KEY, 30 * DAY).issue(None, "alice")

    assert DeviceCookieCodec("another key", 30 * DAY).find(cookie, "alice") is None


def test_expired_entry_rejected(monkeypatch):
    codec = DeviceCookieCodec(KEY, DAY)
    past = time.time() - 2 * DAY
    with monkeypatch.context() as patch:
        patch.setattr(device_cookie.time, "time", lambda: past)
        cookie = codec.issue(None, "alice")

    assert codec.find(cookie, "alice") is None


def test_tampered_time_rejected():
    codec = DeviceCookieCodec(KEY, 30 * DAY)
    device_id, issued, mac = codec.issue(None, "alice").split(".")

    assert codec.find(f"{device_id}.{int(issued) + 1}.{mac}", "alice") is None


def test_renewal_keeps_device_id():
    codec = DeviceCookieCodec(KEY, 30 * DAY)
    first = codec.issue(None, "alice")
    renewed = codec.issue(first, "alice")

    assert codec.find(renewed, "alice") == codec.find(first, "alice")
    assert len(codec.parse(renewed)) == 1


def test_shared_browser_keeps_several_logins():
    codec = DeviceCookieCodec(KEY, 30 * DAY)
    cookie = None
    logins = [f"agent{number}" for number in range(MAX_ENTRIES + 2)]
    for login in logins:
        cookie = codec.issue(cookie, login)

    assert len(codec.parse(cookie)) == MAX_ENTRIES
    assert len(cookie) <= MAX_COOKIE_LENGTH
    kept = [login for login in logins if codec.find(cookie, login)]
    assert kept == logins[-MAX_ENTRIES:]


def test_oversized_cookie_ignored():
    codec = DeviceCookieCodec(KEY, 30 * DAY)
    entry = codec.issue(None, "alice")
    oversized = entry + "-" + "0" * MAX_COOKIE_LENGTH

    assert codec.parse(oversized) == []
    assert codec.find(oversized, "alice") is None


def test_malformed_parts_skipped():
    codec = DeviceCookieCodec(KEY, 30 * DAY)
    entry = codec.issue(None, "alice")

    assert codec.find(f"junk-{entry}-1.2.3", "alice") is not None
    assert codec.find("", "alice") is None
    assert codec.find(None, "alice") is None
    assert codec.find(entry, None) is None
