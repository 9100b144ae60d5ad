import json
import logging

from gatehouse.common.logs import (
    JsonFormatter,
    _ContextFilter,
    bind_request_id,
    clean_request_id,
    hash_ip,
)


def test_clean_request_id_keeps_valid_value():
    assert clean_request_id("abcdef0123456789") == "abcdef0123456789"


def test_clean_request_id_replaces_injection():
    cleaned = clean_request_id("abc\nforged log line")

    assert "\n" not in cleaned
    assert len(cleaned) == 32


def test_hash_ip_depends_on_key():
    assert hash_ip("key-a", "192.0.2.1") != hash_ip("key-b", "192.0.2.1")
    assert hash_ip("key-a", "192.0.2.1") == hash_ip("key-a", "192.0.2.1")
    assert "192.0.2.1" not in hash_ip("key-a", "192.0.2.1")


def test_json_line_has_event_fields_and_request_id():
    record = logging.LogRecord(
        "otp", logging.WARNING, __file__, 1, "otp.verify_failed", (), None
    )
    record.agent_id = 7
    bind_request_id("req-12345678")
    _ContextFilter("otp").filter(record)

    line = json.loads(JsonFormatter().format(record))

    assert line["event"] == "otp.verify_failed"
    assert line["agent_id"] == 7
    assert line["request_id"] == "req-12345678"
    assert line["service"] == "otp"
