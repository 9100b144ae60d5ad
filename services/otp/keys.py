"""Keys derived from the shared secrets: code hashing and secret encryption."""

from __future__ import annotations

import hashlib
import hmac

from cryptography.fernet import MultiFernet
from gatehouse.common.config import multi_fernet


def derive_key(secret_key: str, label: str) -> bytes:
    """Return a 32-byte key for one use, so a key never serves two purposes."""
    return hmac.new(secret_key.encode(), label.encode(), hashlib.sha256).digest()


def keyed_hash(key: bytes, value: str) -> str:
    """Return the hex HMAC-SHA256 of ``value``; codes are stored only this way."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def secret_cipher(otp_keys: list[str]) -> MultiFernet:
    """Return the cipher for TOTP secrets: the first key encrypts, all decrypt."""
    return multi_fernet(
        "GATEHOUSE_OTP_KEYS",
        otp_keys,
        "create a comma list of keys with cryptography.fernet.Fernet.generate_key()",
    )
