"""A software WebAuthn authenticator for tests: real EC P-256 keys, real CBOR.

It builds the JSON a browser posts after navigator.credentials.create() and
.get(), following WebAuthn Level 2: authenticator data (section 6.1), the "none"
attestation format (section 8.7) and COSE EC2 keys (RFC 8152, section 13.1.1).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import struct

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

FLAG_USER_PRESENT = 0x01
FLAG_USER_VERIFIED = 0x04
FLAG_ATTESTED_CREDENTIAL_DATA = 0x40
# COSE algorithm -7 is ES256; key type 2 is EC2 and curve 1 is P-256.
COSE_ES256 = -7


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def from_b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SoftAuthenticator:
    """One credential on one authenticator, with its own signature counter."""

    def __init__(self, sign_count: int = 0) -> None:
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = secrets.token_bytes(32)
        self.sign_count = sign_count
        self.aaguid = bytes(16)
        # Tests change these to build responses a real browser would not send.
        self.flags: int | None = None
        self.client_data_extra: dict = {}
        self.client_data_type: str | None = None

    def cose_public_key(self) -> bytes:
        numbers = self.private_key.public_key().public_numbers()
        return cbor2.dumps(
            {
                1: 2,
                3: COSE_ES256,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )

    def client_data(self, kind: str, challenge: str, origin: str) -> bytes:
        data = {
            "type": self.client_data_type or kind,
            "challenge": challenge,
            "origin": origin,
            **self.client_data_extra,
        }
        return json.dumps(data).encode()

    def authenticator_data(self, rp_id: str, flags: int, attested: bool) -> bytes:
        data = hashlib.sha256(rp_id.encode()).digest()
        data += bytes([flags]) + struct.pack(">I", self.sign_count)
        if attested:
            data += self.aaguid
            data += struct.pack(">H", len(self.credential_id)) + self.credential_id
            data += self.cose_public_key()
        return data

    def register(self, options: dict, origin: str, rp_id: str | None = None) -> str:
        """Return the registration response JSON for creation ``options``."""
        rp_id = rp_id or options["rp"]["id"]
        flags = FLAG_USER_PRESENT | FLAG_USER_VERIFIED | FLAG_ATTESTED_CREDENTIAL_DATA
        if self.flags is not None:
            flags = self.flags | FLAG_ATTESTED_CREDENTIAL_DATA
        auth_data = self.authenticator_data(rp_id, flags, attested=True)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self.client_data("webauthn.create", options["challenge"], origin)
        return json.dumps(
            {
                "id": b64url(self.credential_id),
                "rawId": b64url(self.credential_id),
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64url(client_data),
                    "attestationObject": b64url(attestation),
                    "transports": ["usb"],
                },
                "clientExtensionResults": {},
            }
        )

    def assert_(
        self,
        options: dict,
        origin: str,
        rp_id: str | None = None,
        sign_count: int | None = None,
    ) -> str:
        """Return the assertion JSON for request ``options``; the counter grows
        by one unless ``sign_count`` sets it."""
        rp_id = rp_id or options["rpId"]
        self.sign_count = self.sign_count + 1 if sign_count is None else sign_count
        flags = FLAG_USER_PRESENT | FLAG_USER_VERIFIED
        if self.flags is not None:
            flags = self.flags
        auth_data = self.authenticator_data(rp_id, flags, attested=False)
        client_data = self.client_data("webauthn.get", options["challenge"], origin)
        signed = auth_data + hashlib.sha256(client_data).digest()
        signature = self.private_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return json.dumps(
            {
                "id": b64url(self.credential_id),
                "rawId": b64url(self.credential_id),
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64url(client_data),
                    "authenticatorData": b64url(auth_data),
                    "signature": b64url(signature),
                    "userHandle": None,
                },
                "clientExtensionResults": {},
            }
        )
