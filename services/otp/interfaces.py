"""Protocols of the OTP service objects and the domain exceptions they raise."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

METHOD_EMAIL = "email"
METHOD_APP = "app"
METHOD_WEBAUTHN = "webauthn"

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


class ReplayedToken(InvalidToken):
    """The code was right once but is used up: an email token that was already
    accepted, or a TOTP code of a time step at or before the last accepted one."""

    code = "replayed_token"
    message = "This code was already used. Wait for a new code and try again."


class TokenExpired(OtpError):
    code = "expired_token"
    message = "The code has expired. Request a new one."


class TooManyAttempts(OtpError):
    code = "too_many_attempts"
    message = "Too many wrong tries for this code. Request a new one."


class ResendTooSoon(OtpError):
    code = "resend_too_soon"
    message = "A code was sent a moment ago. Wait before requesting another one."

    def __init__(
        self, retry_after: int, message: str | None = None, hourly_cap: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        # True when the hourly number of mails, not the short cooldown, blocks.
        self.hourly_cap = hourly_cap


class MailUnavailable(OtpError):
    code = "mail_unavailable"
    message = "The code could not be sent. Try again in a moment."


class NoFactor(OtpError):
    code = "no_factor"
    message = "No second factor is set up for this agent."


class InvalidCredential(InvalidToken):
    """A WebAuthn response failed verification: challenge, origin, RP ID hash,
    signature or an unknown credential id."""

    code = "invalid_credential"
    message = "The security key could not be verified. Try again."


class MalformedCredential(MalformedCode):
    """The submitted WebAuthn response is not a credential at all (not JSON, or
    fields missing), so it is not counted as a guess."""

    code = "malformed_credential"
    message = "The security key response is not readable. Try again."


class SignCountRegressed(InvalidCredential):
    """The authenticator's signature counter did not grow, which is how a cloned
    authenticator shows up (WebAuthn Level 2, sections 6.1.1 and 7.2)."""

    code = "sign_count_regressed"
    message = (
        "This security key reported a usage counter lower than before, so it may "
        "have been copied. It was not accepted; contact your administrator."
    )


class ChallengeExpired(OtpError):
    code = "expired_challenge"
    message = "The security key request has expired or was already used. Try again."


class CredentialNotFound(OtpError):
    code = "credential_not_found"
    message = "No such security key is registered for this agent."


class LastCredential(OtpError):
    code = "last_credential"
    message = (
        "This is your only security key. Add another key or choose another "
        "second factor before removing it."
    )


class TooManyCredentials(OtpError):
    code = "too_many_credentials"
    message = "You have the maximum number of security keys. Remove one first."


class DuplicateCredential(OtpError):
    code = "duplicate_credential"
    message = "This security key is already registered."


@dataclass(frozen=True)
class Factor:
    """An enrolled second factor; ``secret`` is the TOTP secret, decrypted."""

    agent_id: int
    method: str
    email_security: bool
    secret: str | None = None


@dataclass(frozen=True)
class WebAuthnCredential:
    """A registered security key or passkey; ``credential_id`` is base64url."""

    id: int
    agent_id: int
    credential_id: str
    public_key: bytes
    sign_count: int
    transports: list[str]
    name: str
    created_at: datetime
    last_used_at: datetime | None


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

    def replace(self, factor: Factor, recovery_code_rows: list[dict]) -> None:
        """Store ``factor`` and its recovery codes (rows of ``code_hash``,
        ``salt``, ``key_id``) in place of any earlier ones."""

    def delete(self, agent_id: int) -> bool:
        """Delete the factor and its recovery codes; return False if none existed."""


class RecoveryCodeStore(Protocol):
    def consume(self, agent_id: int, code: str) -> int:
        """Use up ``code``; return how many codes are left, raise InvalidToken."""

    def remaining(self, agent_id: int) -> int:
        """Return how many unused recovery codes the agent has."""

    def renew(self, agent_id: int) -> list[str]:
        """Replace the agent's codes with a fresh set and return it."""


class WebAuthnChallengeStore(Protocol):
    def issue(self, agent_id: int, ceremony: str, challenge: bytes, data: dict) -> None:
        """Keep ``data`` (RP ID, origin) for the challenge for the challenge TTL."""

    def consume(self, agent_id: int, ceremony: str, challenge: bytes) -> dict:
        """Delete the challenge and return its data; raise ChallengeExpired if it
        is unknown, expired, already used or belongs to another agent or ceremony."""


class WebAuthnCredentialStore(Protocol):
    def list(self, agent_id: int) -> list[WebAuthnCredential]:
        """Return the agent's credentials, oldest first."""

    def find(self, agent_id: int, credential_id: str) -> WebAuthnCredential | None:
        """Return the agent's credential with that id, or None (also when the id
        belongs to another agent)."""

    def add(self, row: dict, max_count: int) -> WebAuthnCredential:
        """Store a credential; raise DuplicateCredential or TooManyCredentials."""

    def record_use(self, credential: WebAuthnCredential, sign_count: int) -> None:
        """Store the new sign count and use time; raise SignCountRegressed if a
        concurrent use already stored a count at least as high."""

    def remove(self, agent_id: int, key_id: int) -> None:
        """Delete one credential; raise CredentialNotFound or LastCredential."""


class DeviceStore(Protocol):
    def remember(self, agent_id: int, browser: str = "") -> str:
        """Return a signed token naming a new remembered device of the agent."""

    def is_trusted(self, agent_id: int, device_token: str) -> bool:
        """Return True if the token is valid, unexpired and not revoked."""

    def list_devices(self, agent_id: int) -> list[dict]:
        """Return ``{handle, created, last_used, browser}`` per unexpired device."""

    def revoke(self, agent_id: int, handle: str) -> bool:
        """Forget one device by its handle; return False if there is none."""

    def revoke_all(self, agent_id: int) -> None:
        """Forget every remembered device of the agent."""
