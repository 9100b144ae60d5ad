"""Security keys and passkeys (WebAuthn) as the ``webauthn`` second factor.

``SecurityKeyCeremonies`` is mixed into ``OtpService``: it uses the service's
stores, its ``_throttled`` wrapper and ``_install_factor``. Each ceremony has two
steps. The start issues a challenge that Redis keeps for
``OTP_WEBAUTHN_CHALLENGE_TTL`` seconds, bound to the agent, the ceremony and the RP
ID and origin the gateway named. The finish consumes that challenge before anything
else, so a response can be checked only once.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError

from .interfaces import (
    METHOD_WEBAUTHN,
    DuplicateCredential,
    Factor,
    InvalidCredential,
    NoFactor,
    SignCountRegressed,
    VerificationResult,
    WebAuthnCredential,
)
from .webauthn_ceremony import (
    authentication_options,
    client_challenge,
    credential_id_of,
    new_challenge,
    parse_authentication,
    parse_registration,
    registration_options,
    verify_assertion,
    verify_registration,
)
from .webauthn_store import CEREMONY_AUTHENTICATION, CEREMONY_REGISTRATION

if TYPE_CHECKING:
    from .config import OtpConfig
    from .service import OtpStores

log = logging.getLogger(__name__)


def _iso_utc(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    # SQLite returns naive datetimes; every stored time is UTC.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()


def describe_credential(credential: WebAuthnCredential) -> dict:
    """Return the fields of a credential that the gateway may show."""
    return {
        "id": credential.id,
        "name": credential.name,
        "transports": credential.transports,
        "created_at": _iso_utc(credential.created_at),
        "last_used_at": _iso_utc(credential.last_used_at),
    }


class SecurityKeyCeremonies:
    config: OtpConfig
    stores: OtpStores

    def _webauthn_factor(self, agent_id: int) -> Factor:
        factor = self.stores.factors.get(agent_id)
        if factor is None or factor.method != METHOD_WEBAUTHN:
            raise NoFactor("No security key is set up for this agent.")
        return factor

    def _issue_challenge(
        self, agent_id: int, ceremony: str, rp_id: str, origin: str
    ) -> bytes:
        challenge = new_challenge()
        self.stores.challenges.issue(
            agent_id, ceremony, challenge, {"rp_id": rp_id, "origin": origin}
        )
        return challenge

    # Registration -------------------------------------------------------------------

    def start_webauthn_registration(
        self, agent_id: int, user_name: str, display_name: str, rp_id: str, origin: str
    ) -> dict:
        """Return creation options that exclude the agent's registered keys."""
        factor = self.stores.factors.get(agent_id)
        existing = []
        if factor is not None and factor.method == METHOD_WEBAUTHN:
            existing = self.stores.credentials.list(agent_id)
        challenge = self._issue_challenge(
            agent_id, CEREMONY_REGISTRATION, rp_id, origin
        )
        ttl = self.config.webauthn_challenge_ttl
        options = registration_options(
            rp_id=rp_id,
            rp_name=self.config.totp_issuer,
            user_handle=self.stores.credentials.user_handle(agent_id),
            user_name=user_name,
            display_name=display_name,
            challenge=challenge,
            timeout_ms=ttl * 1000,
            exclude=existing,
        )
        return {"options": options, "ttl_seconds": ttl}

    def finish_webauthn_registration(
        self, agent_id: int, credential_json: str, name: str, client_ip: str
    ) -> dict:
        """Verify a registration response and store the key.

        An agent whose factor is already ``webauthn`` gets one more key. Any other
        agent gets the ``webauthn`` factor with this key and new recovery codes,
        which replace the old factor.
        """

        def attempt() -> dict:
            credential = parse_registration(credential_json)
            challenge = client_challenge(credential)
            binding = self.stores.challenges.consume(
                agent_id, CEREMONY_REGISTRATION, challenge
            )
            verified = verify_registration(
                credential, challenge, binding["rp_id"], binding["origin"]
            )
            transports = {item.value for item in credential.response.transports or []}
            row = {
                "agent_id": agent_id,
                "credential_id": credential_id_of(credential),
                "public_key": verified.credential_public_key,
                "sign_count": verified.sign_count,
                "transports": ",".join(sorted(transports)),
                "name": name,
            }
            return self._store_credential(agent_id, row)

        return self._throttled(agent_id, client_ip, "enrollment_webauthn", attempt)

    def _store_credential(self, agent_id: int, row: dict) -> dict:
        row["created_at"] = datetime.now(UTC)
        row["last_used_at"] = None
        factor = self.stores.factors.get(agent_id)
        if factor is not None and factor.method == METHOD_WEBAUTHN:
            added = self.stores.credentials.add(row, self.config.webauthn_max_keys)
            log.info(
                "otp.webauthn_credential_added",
                extra={"agent_id": agent_id, "credential": added.id},
            )
            return {
                "method": METHOD_WEBAUTHN,
                "recovery_codes": None,
                "credential": describe_credential(added),
            }

        try:
            codes = self._install_factor(
                Factor(agent_id, METHOD_WEBAUTHN, False), webauthn_credential=row
            )
        except IntegrityError as error:
            # The only unique column besides the keys is the credential id.
            raise DuplicateCredential() from error
        added = self.stores.credentials.find(agent_id, row["credential_id"])
        return {
            "method": METHOD_WEBAUTHN,
            "recovery_codes": codes,
            "credential": describe_credential(added) if added else None,
        }

    # Authentication -----------------------------------------------------------------

    def start_webauthn_authentication(
        self, agent_id: int, rp_id: str, origin: str
    ) -> dict:
        """Return request options naming the agent's keys; raise NoFactor."""
        self._webauthn_factor(agent_id)
        credentials = self.stores.credentials.list(agent_id)
        challenge = self._issue_challenge(
            agent_id, CEREMONY_AUTHENTICATION, rp_id, origin
        )
        ttl = self.config.webauthn_challenge_ttl
        options = authentication_options(
            rp_id=rp_id, challenge=challenge, timeout_ms=ttl * 1000, allow=credentials
        )
        return {"options": options, "ttl_seconds": ttl}

    def verify_webauthn(
        self, agent_id: int, credential_json: str, client_ip: str
    ) -> VerificationResult:
        def attempt() -> VerificationResult:
            self._webauthn_factor(agent_id)
            credential = parse_authentication(credential_json)
            challenge = client_challenge(credential)
            binding = self.stores.challenges.consume(
                agent_id, CEREMONY_AUTHENTICATION, challenge
            )
            stored = self.stores.credentials.find(
                agent_id, credential_id_of(credential)
            )
            if stored is None:
                # Another agent's key gets the same error: the lookup is by agent.
                raise InvalidCredential(
                    "This security key is not registered for your account."
                )
            sign_count = verify_assertion(
                credential, stored, challenge, binding["rp_id"], binding["origin"]
            )
            self._record_use(stored, sign_count)
            return VerificationResult(METHOD_WEBAUTHN, False)

        result = self._throttled(agent_id, client_ip, "verification_webauthn", attempt)
        log.info(
            "otp.verified",
            extra={
                "agent_id": agent_id,
                "method": result.method,
                "recovery_code_used": False,
            },
        )
        return result

    def _record_use(self, stored: WebAuthnCredential, sign_count: int) -> None:
        # A counter that does not grow signals a cloned authenticator (WebAuthn
        # Level 2, section 7.2, step 21). Authenticators without a counter always
        # send 0, so the check applies once either count is non-zero, and a 0
        # after a non-zero count is a regression too.
        try:
            counted = sign_count or stored.sign_count
            if counted and sign_count <= stored.sign_count:
                raise SignCountRegressed()
            self.stores.credentials.record_use(stored, sign_count)
        except SignCountRegressed:
            log.warning(
                "otp.webauthn_sign_count_regressed",
                extra={
                    "agent_id": stored.agent_id,
                    "credential": stored.id,
                    "stored_sign_count": stored.sign_count,
                    "received_sign_count": sign_count,
                },
            )
            raise

    # Management ---------------------------------------------------------------------

    def list_security_keys(self, agent_id: int) -> list[dict]:
        return [
            describe_credential(credential)
            for credential in self.stores.credentials.list(agent_id)
        ]

    def remove_security_key(self, agent_id: int, key_id: int) -> None:
        """Delete one key; raise CredentialNotFound, or LastCredential when it is
        the agent's only key, so the agent keeps a second factor."""
        self.stores.credentials.remove(agent_id, key_id)
        log.info(
            "otp.webauthn_credential_removed",
            extra={"agent_id": agent_id, "credential": key_id},
        )
