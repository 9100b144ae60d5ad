"""HOTP/TOTP arithmetic against the RFC test vectors and oathtool."""

from __future__ import annotations

import random
import shutil
import subprocess
from urllib.parse import unquote, urlparse

import pyotp
import pytest
from gatehouse.otp import totp

RFC4226_SECRET = b"12345678901234567890"
# RFC 4226, appendix D: HOTP values for counters 0 to 9.
RFC4226_VALUES = [
    "755224",
    "287082",
    "359152",
    "969429",
    "338314",
    "254676",
    "287922",
    "162583",
    "399871",
    "520489",
]

# RFC 6238, appendix B: seeds of 20, 32 and 64 bytes, 8-digit codes.
RFC6238_SEEDS = {
    "sha1": b"12345678901234567890",
    "sha256": b"12345678901234567890123456789012",
    "sha512": b"1234567890123456789012345678901234567890123456789012345678901234",
}
RFC6238_VALUES = [
    (59, "sha1", "94287082"),
    (59, "sha256", "46119246"),
    (59, "sha512", "90693936"),
    (1111111109, "sha1", "07081804"),
    (1111111109, "sha256", "68084774"),
    (1111111109, "sha512", "25091201"),
    (1111111111, "sha1", "14050471"),
    (1111111111, "sha256", "67062674"),
    (1111111111, "sha512", "99943326"),
    (1234567890, "sha1", "89005924"),
    (1234567890, "sha256", "91819424"),
    (1234567890, "sha512", "93441116"),
    (2000000000, "sha1", "69279037"),
    (2000000000, "sha256", "90698825"),
    (2000000000, "sha512", "38618901"),
    (20000000000, "sha1", "65353130"),
    (20000000000, "sha256", "77737706"),
    (20000000000, "sha512", "47863826"),
]


@pytest.mark.parametrize("counter", range(10))
def test_hotp_rfc4226_appendix_d(counter):
    assert totp.hotp(RFC4226_SECRET, counter) == RFC4226_VALUES[counter]


@pytest.mark.parametrize(("unix_time", "digest", "expected"), RFC6238_VALUES)
def test_totp_rfc6238_appendix_b(unix_time, digest, expected):
    seed = RFC6238_SEEDS[digest]
    assert totp.totp(seed, unix_time, digits=8, digest=digest) == expected


def _oathtool(key: bytes, unix_time: int, digest: str, digits: int) -> str:
    result = subprocess.run(
        [
            "oathtool",
            f"--totp={digest.upper()}",
            f"--digits={digits}",
            f"--now=@{unix_time}",
            key.hex(),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    return result.stdout.strip()


@pytest.mark.skipif(shutil.which("oathtool") is None, reason="oathtool missing")
@pytest.mark.parametrize("digest", ["sha1", "sha256", "sha512"])
def test_totp_agrees_with_oathtool(digest):
    generator = random.Random(f"oathtool-{digest}")
    key_length = {"sha1": 20, "sha256": 32, "sha512": 64}[digest]
    rounds = 100 if digest == "sha1" else 50
    for _ in range(rounds):
        key = generator.randbytes(generator.choice([key_length, 10, 16, 40]))
        unix_time = generator.randrange(0, 4_000_000_000)
        digits = generator.choice([6, 7, 8])
        expected = _oathtool(key, unix_time, digest, digits)
        assert totp.totp(key, unix_time, digits=digits, digest=digest) == expected


def test_generated_secret_has_160_bits():
    secret = totp.generate_secret()
    assert len(totp.decode_secret(secret)) == 20
    assert len(secret) == 32
    assert secret == secret.upper()
    assert totp.generate_secret() != secret


def test_matching_step_drift_window():
    key = totp.decode_secret(totp.generate_secret())
    now = 1_700_000_015.0
    step = totp.time_step(now)
    for offset in (-1, 0, 1):
        code = totp.hotp(key, step + offset)
        assert totp.matching_step(key, code, now) == step + offset
    for offset in (-3, -2, 2, 3):
        code = totp.hotp(key, step + offset)
        if code not in {totp.hotp(key, step + k) for k in (-1, 0, 1)}:
            assert totp.matching_step(key, code, now) is None


def test_normalize_code_rules():
    assert totp.normalize_code("012345", 6) == "012345"
    assert totp.normalize_code("012 345", 6) == "012345"
    assert totp.normalize_code("012-345", 6) == "012345"
    assert totp.normalize_code("12345", 6) is None
    assert totp.normalize_code("0123456", 6) is None
    assert totp.normalize_code("12a456", 6) is None
    # Arabic-Indic digits are digits to str.isdigit, but not to this check.
    assert totp.normalize_code("١٢٣٤٥٦", 6) is None
    assert totp.normalize_code("", 6) is None


def test_leading_zero_code_needs_all_digits():
    key = RFC6238_SEEDS["sha1"]
    # RFC 6238 appendix B: at 1111111109 the 8-digit SHA1 code is 07081804, so the
    # 6-digit code is 081804.
    unix_time = 1111111109
    code = totp.totp(key, unix_time)
    assert code == "081804"
    assert totp.matching_step(key, code, unix_time) == totp.time_step(unix_time)
    stripped = code.lstrip("0")
    assert totp.normalize_code(stripped, 6) is None


def test_five_digit_truncation_rejected():
    key = RFC6238_SEEDS["sha1"]
    code = totp.totp(key, 1234567890)
    for truncated in (code[:5], code[1:]):
        assert totp.normalize_code(truncated, 6) is None


ACCOUNTS = [
    ("o'brien+ops@example.test", "ACME: Support"),
    ("Jürgen Müller", "Größe & Söhne"),
    ("a:b@c d", "gatehouse"),
    ("plain", "x%41y"),
]


@pytest.mark.parametrize(("account", "issuer"), ACCOUNTS)
def test_otpauth_uri_round_trip(account, issuer):
    secret = totp.generate_secret()
    uri = totp.provisioning_uri(secret, account, issuer)
    parsed = pyotp.parse_uri(uri)
    assert parsed.name == account
    assert parsed.issuer == issuer
    assert parsed.secret == secret
    assert parsed.digits == 6
    assert parsed.interval == 30
    assert parsed.at(1_700_000_000) == totp.totp(
        totp.decode_secret(secret), 1_700_000_000
    )


@pytest.mark.parametrize(("account", "issuer"), ACCOUNTS)
def test_otpauth_uri_encoding(account, issuer):
    uri = totp.provisioning_uri(totp.generate_secret(), account, issuer)
    assert uri.isascii()
    assert " " not in uri
    parts = urlparse(uri)
    assert parts.scheme == "otpauth"
    assert parts.netloc == "totp"
    label = parts.path[1:]
    assert label.count(":") == 1
    issuer_part, account_part = label.split(":")
    assert unquote(issuer_part) == issuer
    assert unquote(account_part) == account
    query = dict(item.split("=", 1) for item in parts.query.split("&"))
    assert unquote(query["issuer"]) == issuer
    assert query["issuer"] == issuer_part
    assert query["algorithm"] == "SHA1"


def test_otpauth_uri_for_example_login():
    uri = totp.provisioning_uri(
        "JBSWY3DPEHPK3PXP", "o'brien+ops@example.test", "ACME: Support"
    )
    assert uri.startswith(
        "otpauth://totp/ACME%3A%20Support:o%27brien%2Bops%40example.test?"
    )
    assert "issuer=ACME%3A%20Support" in uri
