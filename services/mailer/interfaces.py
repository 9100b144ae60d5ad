"""Contracts between the mailer's parts, and the errors they raise."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol


class KeyImportError(ValueError):
    """A key or certificate file cannot be imported; the message gives the reason."""


class KeyStoreError(RuntimeError):
    """The GnuPG home or the certificate store is unusable; the message gives
    the reason."""


class EncryptionFailed(RuntimeError):
    """Encrypting a mail failed; the message names the method and the reason."""


class DeliveryError(Exception):
    """Base class for a failed delivery attempt."""


class TransientDeliveryError(DeliveryError):
    """Delivery failed for now (refused, timed out, 4xx); a later retry may work."""


class PermanentDeliveryError(DeliveryError):
    """Delivery can never work (5xx, malformed address, invalid job)."""


@dataclass(frozen=True)
class Recipient:
    """The key or certificate a mail would be encrypted to."""

    method: str  # "pgp" or "smime"
    reference: str  # PGP fingerprint or the certificate file's path
    expires_at: float | None


class Transport(Protocol):
    def send(self, message: EmailMessage, envelope_from: str, to: str) -> str:
        """Deliver ``message``; return where it went; raise a DeliveryError."""


class SentLog(Protocol):
    def was_sent(self, message_id: str) -> bool:
        """Return True when the mail with this id was accepted for delivery before."""

    def claim(self, message_id: str) -> bool:
        """Return True if this process may send the mail now, False if another is."""

    def release(self, message_id: str) -> None:
        """Give up a claim after a failed attempt."""

    def mark_sent(self, message_id: str) -> None:
        """Record that the mail with this id was accepted for delivery."""
