"""Keys derived from the shared secrets: code hashing and secret encryption."""

from __future__ import annotations

import hashlib
import hmac

from cryptography.fernet import Fernet, MultiFernet
from gatehouse.common.config import ConfigError


def derive_key(secret_key: str, label: str) -> bytes:
    """Return a 32-byte key for one use, so a key never serves two purposes."""
    return hmac.new(secret_key.encode(), label.encode(), hashlib.sha256).digest()


def keyed_hash(key: bytes, value: str) -> str:
    """Return the hex HMAC-SHA256 of ``value``; codes are stored only this way."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def secret_cipher(otp_keys: list[str]) -> MultiFernet:
    """Return the cipher for TOTP secrets: the first key encrypts, all decrypt."""
    fernets = []
    for position, key in enumerate(otp_keys, start=1):
        try:
            fernets.append(Fernet(key.strip()))
        except ValueError:
            raise ConfigError(
                f"GATEHOUSE_OTP_KEYS entry {position} is not a Fernet key; create "
                "one with cryptography.fernet.Fernet.generate_key()"
            ) from None
    if not fernets:
        raise ConfigError("GATEHOUSE_OTP_KEYS contains no key")
    return MultiFernet(fernets)
