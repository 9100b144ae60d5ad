"""WebAuthn option generation and response verification over py_webauthn 3.x.

Every function raises the service's domain exceptions: MalformedCredential for a
response that cannot be read, InvalidCredential for one that fails verification.
User verification and resident keys are "preferred" and attestation is "none", so
any FIDO2 or U2F authenticator and any passkey provider can register.
"""

from __future__ import annotations

import json
import secrets

import webauthn
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    parse_authentication_credential_json,
    parse_client_data_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticationCredential,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    RegistrationCredential,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)
from webauthn.registration.verify_registration_response import VerifiedRegistration

from .interfaces import InvalidCredential, MalformedCredential, WebAuthnCredential

# 32 random bytes (256 bits), four times the 64 bits ASVS 4.0.3 item 2.9.2 requires
# of a challenge nonce.
CHALLENGE_BYTES = 32
# WebAuthn Level 3's maximum; Level 2 set none, and the column fits this one.
MAX_CREDENTIAL_ID_BYTES = 1023
KNOWN_TRANSPORTS = {transport.value for transport in AuthenticatorTransport}
# Exceptions py_webauthn, json and cbor2 raise on bad input. JSON or CBOR nested
# deeper than Python's recursion limit raises RecursionError, not ValueError.
UNREADABLE = (WebAuthnException, ValueError, TypeError, RecursionError)


def new_challenge() -> bytes:
    return secrets.token_bytes(CHALLENGE_BYTES)


def _descriptors(credentials: list[WebAuthnCredential]):
    return [
        PublicKeyCredentialDescriptor(
            id=base64url_to_bytes(credential.credential_id),
            transports=[
                AuthenticatorTransport(item)
                for item in credential.transports
                if item in KNOWN_TRANSPORTS
            ]
            or None,
        )
        for credential in credentials
    ]


def registration_options(
    *,
    rp_id: str,
    rp_name: str,
    user_handle: bytes,
    user_name: str,
    display_name: str,
    challenge: bytes,
    timeout_ms: int,
    exclude: list[WebAuthnCredential],
) -> dict:
    """Return the PublicKeyCredentialCreationOptions as a JSON-ready dict."""
    options = webauthn.generate_registration_options(
        rp_id=rp_id,
        rp_name=rp_name,
        user_id=user_handle,
        user_name=user_name,
        user_display_name=display_name or user_name,
        challenge=challenge,
        timeout=timeout_ms,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=_descriptors(exclude),
    )
    return json.loads(webauthn.options_to_json(options))


def authentication_options(
    *,
    rp_id: str,
    challenge: bytes,
    timeout_ms: int,
    allow: list[WebAuthnCredential],
) -> dict:
    """Return the PublicKeyCredentialRequestOptions as a JSON-ready dict."""
    options = webauthn.generate_authentication_options(
        rp_id=rp_id,
        challenge=challenge,
        timeout=timeout_ms,
        allow_credentials=_descriptors(allow),
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    return json.loads(webauthn.options_to_json(options))


def parse_registration(text: str) -> RegistrationCredential:
    try:
        return parse_registration_credential_json(text)
    except UNREADABLE as error:
        raise MalformedCredential() from error


def parse_authentication(text: str) -> AuthenticationCredential:
    try:
        return parse_authentication_credential_json(text)
    except UNREADABLE as error:
        raise MalformedCredential() from error


def client_challenge(
    credential: RegistrationCredential | AuthenticationCredential,
) -> bytes:
    """Return the challenge the browser signed over, read from clientDataJSON."""
    try:
        client_data = parse_client_data_json(credential.response.client_data_json)
    except UNREADABLE as error:
        raise MalformedCredential() from error
    if client_data.cross_origin:
        # The gateway forbids framing; a response made inside a frame of another
        # site is not ours.
        raise InvalidCredential()
    return client_data.challenge


def verify_registration(
    credential: RegistrationCredential, challenge: bytes, rp_id: str, origin: str
) -> VerifiedRegistration:
    try:
        verified = webauthn.verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            require_user_verification=False,
        )
    except UNREADABLE as error:
        raise InvalidCredential() from error
    if len(verified.credential_id) > MAX_CREDENTIAL_ID_BYTES:
        raise InvalidCredential(
            f"The security key's credential id is longer than "
            f"{MAX_CREDENTIAL_ID_BYTES} bytes, which is not supported. Use another key."
        )
    return verified


def verify_assertion(
    credential: AuthenticationCredential,
    stored: WebAuthnCredential,
    challenge: bytes,
    rp_id: str,
    origin: str,
) -> int:
    """Verify the assertion's signature and return its sign count.

    The caller compares the counter, so a regression is distinguished from a bad
    signature. py_webauthn gets a stored count of 0, which skips its own check.
    """
    try:
        verified = webauthn.verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            credential_public_key=stored.public_key,
            credential_current_sign_count=0,
            require_user_verification=False,
        )
    except UNREADABLE as error:
        raise InvalidCredential() from error
    return verified.new_sign_count


def credential_id_of(credential: RegistrationCredential | AuthenticationCredential):
    return bytes_to_base64url(credential.raw_id)
