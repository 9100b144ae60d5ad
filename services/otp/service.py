"""The OTP service: enrollment, challenges and verification over the stores.

Every verification path (login, both enrollment confirmations, recovery codes) runs
through ``_throttled``, which checks the failure throttle first and records each
failure, so no path offers unthrottled guesses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import segno
from cryptography.fernet import MultiFernet
from gatehouse.common.logs import hash_ip
from gatehouse.common.mail import KIND_TOKEN, MailJob, MailPublisher, PublishFailed
from gatehouse.common.ratelimit import FailureThrottle, Limit, Throttled

from . import totp
from .config import OtpConfig
from .devices import RedisDeviceStore
from .email_tokens import RedisEmailTokenStore, generate_code
from .enrollments import RedisPendingEnrollments
from .factors import SqlFactorRepository
from .interfaces import (
    METHOD_APP,
    METHOD_EMAIL,
    METHOD_WEBAUTHN,
    PURPOSE_ENROLLMENT,
    PURPOSE_LOGIN,
    Factor,
    InvalidToken,
    MailUnavailable,
    MalformedCode,
    NoFactor,
    OtpError,
    ReplayedToken,
    VerificationResult,
)
from .recovery import SqlRecoveryCodeStore, normalize_recovery_code
from .replay import RedisReplayGuard
from .security_keys import SecurityKeyCeremonies
from .webauthn_store import RedisChallengeStore, SqlWebAuthnCredentialStore

log = logging.getLogger(__name__)

T = TypeVar("T")

REPLAYED_CODE_MESSAGE = (
    "This code was already used. Wait for the next code in your authenticator app."
)
SECURITY_KEY_ONLY_MESSAGE = "Use your security key, or enter a recovery code."


@dataclass
class OtpStores:
    factors: SqlFactorRepository
    recovery: SqlRecoveryCodeStore
    tokens: RedisEmailTokenStore
    enrollments: RedisPendingEnrollments
    replay: RedisReplayGuard
    devices: RedisDeviceStore
    throttle: FailureThrottle
    challenges: RedisChallengeStore
    credentials: SqlWebAuthnCredentialStore


class OtpService(SecurityKeyCeremonies):
    def __init__(
        self,
        config: OtpConfig,
        stores: OtpStores,
        publisher: MailPublisher,
        cipher: MultiFernet,
        log_hash_key: str,
    ) -> None:
        self.config = config
        self.stores = stores
        self._publisher = publisher
        self._cipher = cipher
        self._log_hash_key = log_hash_key

    # Throttling -----------------------------------------------------------------

    def _limits(self, agent_id: int, ip_hash: str) -> list[Limit]:
        if agent_id in self.config.throttle_exempt_agents:
            return []
        limits = self.config.throttle
        agent_key = f"agent:{agent_id}"
        return [
            Limit(
                "agent-short",
                agent_key,
                limits.agent_short_max,
                limits.agent_short_window,
            ),
            Limit(
                "agent-long", agent_key, limits.agent_long_max, limits.agent_long_window
            ),
            Limit("ip", f"ip:{ip_hash}", limits.ip_max, limits.ip_window),
            Limit("global", "global", limits.global_max, limits.global_window),
        ]

    def _throttled(
        self, agent_id: int, client_ip: str, path: str, attempt: Callable[[], T]
    ) -> T:
        """Run ``attempt`` unless a limit is full; count it if it fails."""
        ip_hash = hash_ip(self._log_hash_key, client_ip)
        limits = self._limits(agent_id, ip_hash)
        fields = {"agent_id": agent_id, "ip_hash": ip_hash, "path": path}
        try:
            self.stores.throttle.check(limits)
        except Throttled as error:
            log.warning(
                "otp.throttled",
                extra={
                    **fields,
                    "limit": error.limit_name,
                    "retry_after": error.retry_after,
                },
            )
            raise

        try:
            return attempt()
        except OtpError as error:
            if isinstance(error, NoFactor):
                raise
            if isinstance(error, MalformedCode):
                # A typo of the wrong length cannot guess a code, so it does not
                # count against the person's tries.
                log.info("otp.malformed_code", extra=fields)
                raise
            # A replay has its own event, because it shows that someone has a code
            # that was already accepted, which a wrong guess does not.
            replayed = isinstance(error, ReplayedToken)
            event = "otp.code_replayed" if replayed else "otp.verify_failed"
            log.warning(event, extra={**fields, "reason": error.code})
            try:
                self.stores.throttle.record_failure(limits)
            except Throttled as throttled:
                # This failure filled a window. The response still reports the
                # failed code, and the next attempt gets 429.
                log.warning(
                    "otp.throttled",
                    extra={
                        **fields,
                        "limit": throttled.limit_name,
                        "retry_after": throttled.retry_after,
                    },
                )
            raise

    def check_throttle(self, agent_id: int, client_ip: str) -> None:
        """Raise Throttled if the agent or address may not verify right now."""
        self._throttled(agent_id, client_ip, "check", lambda: None)

    # Factors ----------------------------------------------------------------------

    def factor_status(self, agent_id: int) -> dict:
        factor = self.stores.factors.get(agent_id)
        if factor is None:
            return {"method": None, "email_security": False, "recovery_codes_left": 0}
        return {
            "method": factor.method,
            "email_security": factor.email_security,
            "recovery_codes_left": self.stores.recovery.remaining(agent_id),
        }

    def delete_factor(self, agent_id: int) -> bool:
        """Remove the factor and everything tied to it; return False if none."""
        existed = self.stores.factors.delete(agent_id)
        self.stores.tokens.discard(agent_id)
        self.stores.enrollments.discard(agent_id)
        self.stores.devices.revoke_all(agent_id)
        self.stores.replay.reset(agent_id)
        log.info("otp.factor_deleted", extra={"agent_id": agent_id, "existed": existed})
        return existed

    def _install_factor(
        self, factor: Factor, webauthn_credential: dict | None = None
    ) -> list[str]:
        codes, rows = self.stores.recovery.new_set(factor.agent_id)
        self.stores.factors.replace(factor, rows, webauthn_credential)
        # A new factor ends the trust placed in browsers under the old one.
        self.stores.devices.revoke_all(factor.agent_id)
        self.stores.tokens.discard(factor.agent_id)
        log.info(
            "otp.factor_enrolled",
            extra={"agent_id": factor.agent_id, "method": factor.method},
        )
        return codes

    def renew_recovery_codes(self, agent_id: int) -> list[str]:
        codes = self.stores.recovery.renew(agent_id)
        log.info("otp.recovery_codes_renewed", extra={"agent_id": agent_id})
        return codes

    # Email tokens -----------------------------------------------------------------

    def _send_token(
        self,
        agent_id: int,
        purpose: str,
        email: str,
        first_name: str,
        email_security: bool,
    ) -> None:
        tokens = self.stores.tokens
        reservation = tokens.reserve_send(agent_id, purpose)
        code = generate_code(self.config.token_digits)
        ttl = self.config.token_ttl
        expires_at = time.time() + ttl
        job = MailJob(
            kind=KIND_TOKEN,
            to=email,
            agent_id=agent_id,
            first_name=first_name,
            params={"token": code, "ttl_seconds": ttl, "purpose": purpose},
            email_security=email_security,
            expires_at=expires_at,
        )
        try:
            self._publisher.publish(job)
        except PublishFailed as error:
            # No token is stored for a mail that was never queued, and the send
            # does not count against the cooldown or the hourly cap.
            tokens.release_send(agent_id, purpose, reservation)
            log.error(
                "otp.mail_unavailable",
                extra={"agent_id": agent_id, "error": str(error)},
            )
            raise MailUnavailable() from error

        # The token lives exactly until the expires_at the mail states. It is
        # stored only now, so the previous code keeps working if the publish fails.
        ttl_ms = int(expires_at * 1000) - int(time.time() * 1000)
        tokens.store(agent_id, purpose, code, ttl_ms)
        log.info(
            "otp.token_sent",
            extra={
                "agent_id": agent_id,
                "purpose": purpose,
                "message_id": job.message_id,
            },
        )

    def start_email_enrollment(
        self, agent_id: int, email: str, first_name: str, email_security: bool
    ) -> None:
        self._send_token(
            agent_id, PURPOSE_ENROLLMENT, email, first_name, email_security
        )
        self.stores.enrollments.save_email(
            agent_id, email_security, self.config.token_ttl
        )

    def confirm_email_enrollment(
        self, agent_id: int, token: str, client_ip: str
    ) -> list[str]:
        def attempt() -> list[str]:
            code = self._email_code(token)
            self.stores.tokens.verify(agent_id, PURPOSE_ENROLLMENT, code)
            email_security = self.stores.enrollments.take_email(agent_id)
            return self._install_factor(
                Factor(agent_id, METHOD_EMAIL, email_security=email_security)
            )

        return self._throttled(agent_id, client_ip, "enrollment_email", attempt)

    def challenge(self, agent_id: int, email: str, first_name: str) -> str:
        """Send a login token if the factor is email; return the method."""
        factor = self.stores.factors.get(agent_id)
        if factor is None:
            raise NoFactor()
        if factor.method == METHOD_EMAIL:
            self._send_token(
                agent_id, PURPOSE_LOGIN, email, first_name, factor.email_security
            )
        return factor.method

    def _email_code(self, token: str) -> str:
        code = totp.normalize_code(token, self.config.token_digits)
        if code is None:
            raise MalformedCode(
                f"The code has {self.config.token_digits} digits. Check it and "
                "try again."
            )
        return code

    # TOTP ---------------------------------------------------------------------------

    def start_app_enrollment(self, agent_id: int, account_name: str) -> dict:
        secret = totp.generate_secret()
        self.stores.enrollments.save_app(agent_id, secret, self.config.enrollment_ttl)
        uri = totp.provisioning_uri(secret, account_name, self.config.totp_issuer)
        qr_svg = segno.make(uri, error="m").svg_inline(scale=4)
        return {
            "secret": secret,
            "otpauth_uri": uri,
            "qr_svg": qr_svg,
            "ttl_seconds": self.config.enrollment_ttl,
        }

    def _matching_step(self, secret: str, token: str) -> int:
        code = totp.normalize_code(token, totp.TOTP_DIGITS)
        if code is None:
            raise MalformedCode(
                f"The code has {totp.TOTP_DIGITS} digits. Check it and try again."
            )
        step = totp.matching_step(totp.decode_secret(secret), code, time.time())
        if step is None:
            raise InvalidToken()
        return step

    def confirm_app_enrollment(
        self, agent_id: int, token: str, client_ip: str
    ) -> list[str]:
        def attempt() -> list[str]:
            secret = self.stores.enrollments.load_app(agent_id)
            step = self._matching_step(secret, token)
            if not self.stores.enrollments.claim_app(agent_id):
                raise InvalidToken("This setup was already confirmed.")
            codes = self._install_factor(Factor(agent_id, METHOD_APP, False, secret))
            # The confirming code must not log in a second time.
            self.stores.replay.reset(agent_id)
            self.stores.replay.accept(agent_id, step)
            return codes

        return self._throttled(agent_id, client_ip, "enrollment_app", attempt)

    # Verification ------------------------------------------------------------------

    def verify(self, agent_id: int, token: str, client_ip: str) -> VerificationResult:
        def attempt() -> VerificationResult:
            factor = self.stores.factors.get(agent_id)
            if factor is None:
                raise NoFactor()

            if normalize_recovery_code(token) is not None:
                left = self.stores.recovery.consume(agent_id, token)
                log.warning(
                    "otp.recovery_code_used",
                    extra={"agent_id": agent_id, "codes_left": left},
                )
                return VerificationResult(factor.method, True, left)

            if factor.method == METHOD_WEBAUTHN:
                # verify_webauthn checks security keys. On this path only a
                # recovery code can replace the key.
                raise MalformedCode(SECURITY_KEY_ONLY_MESSAGE)
            if factor.method == METHOD_EMAIL:
                self.stores.tokens.verify(
                    agent_id, PURPOSE_LOGIN, self._email_code(token)
                )
            else:
                step = self._matching_step(factor.secret or "", token)
                if not self.stores.replay.accept(agent_id, step):
                    raise ReplayedToken(REPLAYED_CODE_MESSAGE)
            return VerificationResult(factor.method, False)

        result = self._throttled(agent_id, client_ip, "verification", attempt)
        log.info(
            "otp.verified",
            extra={
                "agent_id": agent_id,
                "method": result.method,
                "recovery_code_used": result.recovery_code_used,
            },
        )
        return result


def encryption_method(address: str) -> str | None:
    """Return what the mailer would encrypt mail to ``address`` with, if anything."""
    try:
        from gatehouse.mailer.keystore import preview_encryption
    except ImportError:
        # NOTE: without the mailer package this service cannot tell; it reports
        # no encryption rather than failing the page.
        log.warning("otp.encryption_preview_unavailable")
        return None
    return preview_encryption(address)
