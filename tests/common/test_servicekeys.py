"""Signing and verification of service credentials, and the key formats."""

from __future__ import annotations

import subprocess
import sys

import pytest
from gatehouse.common.servicekeys import (
    CLOCK_SKEW_SECONDS,
    SCHEME,
    CredentialInvalid,
    KeyFormatError,
    format_public_key,
    format_signing_key,
    generate_signing_key,
    parse_public_keys,
    parse_signing_key,
    sign_request,
    verify_request,
)

NOW = 1_800_000_000
BODY = b'{"agent_id": 41, "token": "123456"}'
PATH = "/v1/verifications"
NONCE = "A" * 22


@pytest.fixture
def gateway_key():
    return generate_signing_key("gateway", "k1")


@pytest.fixture
def ring(gateway_key):
    return parse_public_keys(format_public_key(gateway_key))


def _signed(key, now=NOW, method="POST", target=PATH, body=BODY, audience="otp"):
    return sign_request(key, audience, method, target, body, now=now)


def _reason(ring, header, **request) -> str:
    values = {
        "audience": "otp",
        "method": "POST",
        "target": PATH,
        "body": BODY,
        "now": NOW,
        **request,
    }
    with pytest.raises(CredentialInvalid) as raised:
        verify_request(ring, header=header, **values)
    return raised.value.reason


def test_valid_credential_returns_caller(ring, gateway_key):
    header = _signed(gateway_key)

    credential = verify_request(ring, "otp", header, "POST", PATH, BODY, now=NOW)

    assert credential.caller == "gateway"
    assert credential.key_id == "k1"
    assert credential.timestamp == NOW
    assert header.startswith(f"{SCHEME} caller=gateway,key=k1,ts={NOW},nonce=")
    assert f"nonce={credential.nonce},sig=" in header


def test_each_signature_has_new_nonce(ring, gateway_key):
    first = verify_request(
        ring, "otp", _signed(gateway_key), "POST", PATH, BODY, now=NOW
    )
    second = verify_request(
        ring, "otp", _signed(gateway_key), "POST", PATH, BODY, now=NOW
    )

    assert first.nonce != second.nonce
    assert len(first.nonce) == 22


@pytest.mark.parametrize("offset", [-CLOCK_SKEW_SECONDS, 0, CLOCK_SKEW_SECONDS])
def test_clock_skew_inside_window_accepted(ring, gateway_key, offset):
    header = _signed(gateway_key, now=NOW + offset)

    credential = verify_request(ring, "otp", header, "POST", PATH, BODY, now=NOW)
    assert credential.caller == "gateway"


def test_expired_credential_rejected(ring, gateway_key):
    header = _signed(gateway_key, now=NOW - CLOCK_SKEW_SECONDS - 1)

    assert _reason(ring, header) == "expired"


def test_future_credential_rejected(ring, gateway_key):
    header = _signed(gateway_key, now=NOW + CLOCK_SKEW_SECONDS + 1)

    assert _reason(ring, header) == "future"


@pytest.mark.parametrize(
    "request_change",
    [
        {"body": BODY.replace(b"123456", b"654321")},
        {"body": b""},
        {"target": "/v1/challenges"},
        {"target": PATH + "?agent_id=42"},
        {"method": "PUT"},
        {"audience": "identity"},
    ],
    ids=["body", "empty-body", "path", "query", "method", "audience"],
)
def test_changed_request_rejected(ring, gateway_key, request_change):
    header = _signed(gateway_key)

    assert _reason(ring, header, **request_change) == "bad_signature"


def test_query_is_signed(ring, gateway_key):
    header = _signed(gateway_key, method="GET", target="/v1/agents/1/audit?limit=5")

    credential = verify_request(
        ring, "otp", header, "GET", "/v1/agents/1/audit?limit=5", BODY, now=NOW
    )
    assert credential.caller == "gateway"
    assert (
        _reason(ring, header, method="GET", target="/v1/agents/1/audit?limit=500")
        == "bad_signature"
    )


def test_percent_encoded_path_matches_decoded(ring, gateway_key):
    header = _signed(gateway_key, method="GET", target="/v1/encryption/a%20b%40x.test")

    credential = verify_request(
        ring, "otp", header, "GET", "/v1/encryption/a b@x.test", BODY, now=NOW
    )
    assert credential.caller == "gateway"


def test_wrong_key_with_known_id_rejected(ring):
    impostor = generate_signing_key("gateway", "k1")

    assert _reason(ring, _signed(impostor)) == "bad_signature"


def test_unknown_key_id_rejected(ring):
    other = generate_signing_key("gateway", "k2")

    assert _reason(ring, _signed(other)) == "unknown_key"


def test_other_callers_key_id_rejected(gateway_key):
    # identity's key k1 is listed, but a credential naming identity must be
    # signed with it; the gateway's key of the same id does not count.
    identity_key = generate_signing_key("identity", "k1")
    ring = parse_public_keys(format_public_key(identity_key))

    assert _reason(ring, _signed(gateway_key)) == "unknown_key"
    forged = _signed(gateway_key).replace("caller=gateway", "caller=identity")
    assert _reason(ring, forged) == "bad_signature"


def test_rotated_keys_both_accepted():
    old = generate_signing_key("gateway", "2026-old")
    new = generate_signing_key("gateway", "2026-new")
    ring = parse_public_keys(f"{format_public_key(old)},{format_public_key(new)}")

    for key in (old, new):
        header = _signed(key)
        credential = verify_request(ring, "otp", header, "POST", PATH, BODY, now=NOW)
        assert credential.key_id == key.key_id


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("", "missing"),
        ("Bearer 0123456789abcdef", "wrong_scheme"),
        (f"{SCHEME}", "malformed"),
        (f"{SCHEME} caller=gateway,key=k1,ts={NOW},nonce={NONCE}", "malformed"),
        (f"{SCHEME} caller=gateway,key=k1,ts={NOW},sig=AAAA", "malformed"),
        (f"{SCHEME} caller=gateway,key=k1,ts=soon,nonce={NONCE},sig=A", "malformed"),
        (f"{SCHEME} caller=gateway,key=k1,ts={NOW},nonce={NONCE},sig=A", "malformed"),
        (f"{SCHEME} caller=gateway,key=k1,ts={NOW},nonce=short,sig=A", "malformed"),
        (f"{SCHEME} caller=gateway,key=k1,ts={NOW},nonce={NONCE}!,sig=A", "malformed"),
        (
            f"{SCHEME} caller=gateway,key=k1,ts={NOW},nonce={NONCE},sig=A,x=1",
            "malformed",
        ),
        (
            f"{SCHEME} caller=gateway,caller=gateway,ts={NOW},nonce={NONCE},sig=A",
            "malformed",
        ),
        (f"{SCHEME} caller=gateway,key=k1,ts=-{NOW},nonce={NONCE},sig=A", "malformed"),
        (
            f"{SCHEME} caller=gateway,key=k1,ts={'9' * 5000},nonce={NONCE},sig=A",
            "malformed",
        ),
        (
            f"{SCHEME} caller=gateway,key=k1,ts=\u0661\u0662,nonce={NONCE},sig=A",
            "malformed",
        ),
    ],
)
def test_malformed_credential_rejected(ring, header, reason):
    assert _reason(ring, header) == reason


def test_signing_key_round_trip(gateway_key):
    text = format_signing_key(gateway_key)

    parsed = parse_signing_key("gateway", text)
    ring = parse_public_keys(format_public_key(gateway_key))

    assert parsed.key_id == "k1"
    credential = verify_request(
        ring, "otp", _signed(parsed), "POST", PATH, BODY, now=NOW
    )
    assert credential.caller == "gateway"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no-separator", "expected KEY_ID:PRIVATE_KEY"),
        ("k1:not*base64", "not base64url"),
        ("k1:AAAA", "decodes to 3 bytes, expected 32"),
        ("bad id:" + "A" * 43, "key id 'bad id' is invalid"),
    ],
)
def test_malformed_signing_key_rejected(text, message):
    with pytest.raises(KeyFormatError, match=message):
        parse_signing_key("gateway", text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gateway:k1", "is not CALLER:KEY_ID:PUBLIC_KEY"),
        ("Gateway:k1:" + "A" * 43, "caller 'Gateway' is invalid"),
        ("gateway:k1:" + "A" * 10, "expected 32"),
        ("gateway:k1:{key},gateway:k1:{key}", "listed twice"),
    ],
)
def test_malformed_public_keys_rejected(gateway_key, text, message):
    key = format_public_key(gateway_key).rsplit(":", 1)[1]

    with pytest.raises(KeyFormatError, match=message):
        parse_public_keys(text.format(key=key))


def test_empty_public_key_list_is_empty():
    assert parse_public_keys(" , ") == {}


def test_generate_command_prints_usable_pair():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gatehouse.common.servicekeys",
            "generate",
            "identity",
            "--key-id",
            "rot-2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    variable, _, private_text = lines[0].partition("=")

    key = parse_signing_key("identity", private_text)
    ring = parse_public_keys(lines[1])
    header = sign_request(key, "otp", "GET", "/v1/factors/1", now=NOW)

    assert variable == "GATEHOUSE_IDENTITY_SIGNING_KEY"
    assert lines[1].startswith("identity:rot-2:")
    credential = verify_request(ring, "otp", header, "GET", "/v1/factors/1", now=NOW)
    assert credential.caller == "identity"


def test_generate_command_rejects_unknown_caller():
    result = subprocess.run(
        [sys.executable, "-m", "gatehouse.common.servicekeys", "generate", "mallory"],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "invalid choice: 'mallory'" in result.stderr
