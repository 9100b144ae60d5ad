"""HOTP (RFC 4226) and TOTP (RFC 6238) codes, their checks and otpauth:// URIs.

Authenticator apps use 30-second time steps, HMAC-SHA1 and 6 digits; those are the
defaults here. The other digests and lengths exist for the RFC test vectors.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import struct
from urllib.parse import quote

TIME_STEP = 30
TOTP_DIGITS = 6
DIGEST = "sha1"
# RFC 6238 section 5.2 recommends allowing at most one time step of delay. A wider
# drift window would give a guesser more valid codes per try.
DRIFT_WINDOW = 1
# 20 random bytes are 160 bits, the key length RFC 4226 section 4 recommends.
SECRET_BYTES = 20

_SEPARATORS = str.maketrans("", "", " -")


def generate_secret() -> str:
    """Return a new random secret as base32 without padding (32 characters)."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode().rstrip("=")


def decode_secret(secret: str) -> bytes:
    """Return the key bytes of a base32 secret; raise ValueError if malformed."""
    cleaned = secret.replace(" ", "").upper()
    padding = "=" * (-len(cleaned) % 8)
    return base64.b32decode(cleaned + padding, casefold=False)


def hotp(
    key: bytes, counter: int, digits: int = TOTP_DIGITS, digest: str = DIGEST
) -> str:
    """Return the HOTP value of ``counter`` (RFC 4226 section 5.3)."""
    mac = hmac.new(key, struct.pack(">Q", counter), digest).digest()
    # Dynamic truncation: the low nibble of the last byte picks four bytes.
    offset = mac[-1] & 0x0F
    binary = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(binary % 10**digits).zfill(digits)


def time_step(unix_time: float, step: int = TIME_STEP) -> int:
    return int(unix_time // step)


def totp(
    key: bytes,
    unix_time: float,
    digits: int = TOTP_DIGITS,
    digest: str = DIGEST,
    step: int = TIME_STEP,
) -> str:
    """Return the TOTP value at ``unix_time`` (RFC 6238 section 4.2)."""
    return hotp(key, time_step(unix_time, step), digits, digest)


def normalize_code(code: str, digits: int) -> str | None:
    """Return ``code`` without spaces and hyphens if exactly ``digits`` ASCII
    digits remain, else None."""
    cleaned = code.translate(_SEPARATORS)
    if len(cleaned) != digits or not (cleaned.isascii() and cleaned.isdigit()):
        return None
    return cleaned


def matching_step(
    key: bytes, code: str, unix_time: float, window: int = DRIFT_WINDOW
) -> int | None:
    """Return the time step within the drift window whose code equals ``code``.

    Every candidate is computed and compared, so the time taken does not show
    which step matched. ``code`` must already be normalized.
    """
    current = time_step(unix_time)
    matched = None
    for candidate in range(current - window, current + window + 1):
        expected = hotp(key, candidate)
        # compare_digest keeps the time independent of how many digits match.
        if hmac.compare_digest(expected.encode(), code.encode()) and matched is None:
            matched = candidate
    return matched


def provisioning_uri(secret: str, account_name: str, issuer: str) -> str:
    """Return the otpauth:// URI an authenticator app reads from the QR code.

    The label is ``issuer:account``, each part percent-encoded as UTF-8 once, so a
    colon inside either part cannot be mistaken for the separator. The ``issuer``
    parameter repeats the label prefix, so apps reading either show the same issuer.
    """
    label = f"{quote(issuer, safe='')}:{quote(account_name, safe='')}"
    parameters = (
        f"secret={secret}&issuer={quote(issuer, safe='')}"
        f"&algorithm={DIGEST.upper()}&digits={TOTP_DIGITS}&period={TIME_STEP}"
    )
    return f"otpauth://totp/{label}?{parameters}"
