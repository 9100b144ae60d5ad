"""Protocols of the OTP service objects and the domain exceptions they raise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

METHOD_EMAIL = "email"
METHOD_APP = "app"

PURPOSE_LOGIN = "login"
PURPOSE_ENROLLMENT = "enrollment"


class OtpError(Exception):
    """Base of the domain exceptions; ``code`` is the error code in the response."""

    code = "otp_error"
    message = "the one-time code could not be checked"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)
        if message:
            self.message = message


class InvalidToken(OtpError):
    code = "invalid_token"
    message = "The code is not valid. Check it and try again."


class MalformedCode(InvalidToken):
    """The input cannot be a code at all (wrong length, not digits), so it is not
    counted as a guess."""


class TokenExpired(OtpError):
    code = "expired_token"
    message = "The code has expired. Request a new one."


class TooManyAttempts(OtpError):
    code = "too_many_attempts"
    message = "Too many wrong tries for this code. Request a new one."


class ResendTooSoon(OtpError):
    code = "resend_too_soon"
    message = "A code was sent a moment ago. Wait before requesting another one."

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MailUnavailable(OtpError):
    code = "mail_unavailable"
    message = "The code could not be sent. Try again in a moment."


class NoFactor(OtpError):
    code = "no_factor"
    message = "No second factor is set up for this agent."


@dataclass(frozen=True)
class Factor:
    """An enrolled second factor; ``secret`` is the TOTP secret, decrypted."""

    agent_id: int
    method: str
    email_security: bool
    secret: str | None = None


@dataclass(frozen=True)
class VerificationResult:
    method: str
    recovery_code_used: bool
    # Counted only when a recovery code was used, to spare a query per login.
    recovery_codes_left: int | None = None


class EmailTokenStore(Protocol):
    def reserve_send(self, agent_id: int, purpose: str) -> str:
        """Count one mail against the cooldown and hourly cap; return a
        reservation id, or raise ResendTooSoon."""

    def release_send(self, agent_id: int, purpose: str, reservation: str) -> None:
        """Undo ``reserve_send`` after the mail could not be queued."""

    def store(self, agent_id: int, purpose: str, code: str, ttl_ms: int) -> None:
        """Make ``code`` the only live token for the purpose for ``ttl_ms``."""

    def verify(self, agent_id: int, purpose: str, code: str) -> None:
        """Consume the live token if ``code`` matches; raise InvalidToken,
        TokenExpired or TooManyAttempts otherwise."""

    def discard(self, agent_id: int) -> None:
        """Drop every pending token of the agent."""


class FactorRepository(Protocol):
    def get(self, agent_id: int) -> Factor | None:
        """Return the agent's factor with its secret decrypted, or None."""

    def replace(self, factor: Factor, recovery_code_hashes: list[str]) -> None:
        """Store ``factor`` and its recovery codes in place of any earlier ones."""

    def delete(self, agent_id: int) -> bool:
        """Delete the factor and its recovery codes; return False if none existed."""


class RecoveryCodeStore(Protocol):
    def consume(self, agent_id: int, code: str) -> int:
        """Use up ``code``; return how many codes are left, raise InvalidToken."""

    def remaining(self, agent_id: int) -> int:
        """Return how many unused recovery codes the agent has."""

    def renew(self, agent_id: int) -> list[str]:
        """Replace the agent's codes with a fresh set and return it."""


class DeviceStore(Protocol):
    def remember(self, agent_id: int) -> str:
        """Return a signed token naming a new remembered device of the agent."""

    def is_trusted(self, agent_id: int, device_token: str) -> bool:
        """Return True if the token is valid, unexpired and not revoked."""

    def revoke_all(self, agent_id: int) -> None:
        """Forget every remembered device of the agent."""
