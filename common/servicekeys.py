"""Ed25519 request signatures for calls between gatehouse services.

Each caller (the gateway, identity) signs with its own private key, and identity and
OTP get only the callers' public keys. A compromised service can therefore verify
calls but cannot sign as another caller. Every request carries a signed
credential in its ``Authorization`` header:

    Gatehouse-Ed25519 caller=gateway,key=KEY_ID,ts=UNIX_SECONDS,nonce=NONCE,sig=SIG

NONCE and SIG are base64url without padding. The signature covers the target
service (the audience), the caller, the key id, the timestamp, a random nonce, the
method, the path with its query and the SHA-256 digest of the body. The verifying
service remembers each nonce for as long as its timestamp is acceptable, so a
credential works once (``RedisNonceStore`` in ``common/internal.py``).

Operators create key pairs with ``python -m gatehouse.common.servicekeys generate
CALLER``, which prints them in the formats the settings take (docs/deploy.md).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import re
import secrets
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

SCHEME = "Gatehouse-Ed25519"
# Components that call other services over HTTP. agentctl works on the databases
# directly and the mailer only consumes RabbitMQ, so neither has a key.
CALLERS = ("gateway", "identity")
# How far a credential's timestamp may be from the verifier's clock, in seconds.
# NTP usually keeps hosts within milliseconds of each other, so the window mostly
# covers a drifting node and a request that waits for a connection. Verifiers
# remember nonces for twice this window, so the window also bounds their number.
CLOCK_SKEW_SECONDS = 30
PUBLIC_KEYS_VARIABLE = "GATEHOUSE_SERVICE_PUBLIC_KEYS"

CALLER_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,31}")
KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Unix seconds; twelve digits reach the year 33658, and the bound keeps int() cheap.
_TIMESTAMP_PATTERN = re.compile(r"[0-9]{1,12}")
# 16 random bytes in base64url; the verifier accepts 16 to 64 characters.
_NONCE_BYTES = 16
NONCE_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,64}")
_SIGNATURE_LABEL = b"gatehouse-service-request-v1"
_ED25519_KEY_BYTES = 32
_ED25519_SIGNATURE_BYTES = 64
_PARAMETERS = ("caller", "key", "ts", "nonce", "sig")


class KeyFormatError(ValueError):
    """A key setting is malformed; the message names the part and the reason."""


class CredentialInvalid(Exception):
    """A request's credential is missing, malformed, expired or badly signed.

    ``reason`` is a short fixed word for logs. ``caller`` and ``key_id`` are set when
    the header could be parsed, so a log line can name the key. None of them is
    secret.
    """

    def __init__(
        self, reason: str, caller: str | None = None, key_id: str | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.caller = caller
        self.key_id = key_id


@dataclass(frozen=True)
class SigningKey:
    """One caller's private key and the id its verifiers know it by."""

    caller: str
    key_id: str
    private_key: Ed25519PrivateKey = field(repr=False)


# (caller, key id) -> public key. Several key ids per caller allow rotation.
PublicKeyRing = Mapping[tuple[str, str], Ed25519PublicKey]


@dataclass(frozen=True)
class Credential:
    """A verified credential: who signed it, with which key, when, and its nonce."""

    caller: str
    key_id: str
    timestamp: int
    nonce: str


def signing_key_variable(caller: str) -> str:
    """Return the name of the variable that contains ``caller``'s private key."""
    return f"GATEHOUSE_{caller.upper()}_SIGNING_KEY"


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(text: str, size: int, what: str) -> bytes:
    try:
        padded = text + "=" * (-len(text) % 4)
        raw = base64.b64decode(padded, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError(f"{what} is not base64url") from None
    if len(raw) != size:
        raise KeyFormatError(f"{what} decodes to {len(raw)} bytes, expected {size}")
    return raw


def _check_key_id(key_id: str) -> str:
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise KeyFormatError(
            f"key id {key_id!r} is invalid; use 1 to 64 letters, digits, '.', '_', '-'"
        )
    return key_id


def _check_caller(caller: str) -> str:
    if not CALLER_PATTERN.fullmatch(caller):
        raise KeyFormatError(f"caller {caller!r} is invalid; use a lowercase name")
    return caller


def parse_signing_key(caller: str, text: str) -> SigningKey:
    """Parse ``KEY_ID:PRIVATE_KEY`` (the raw 32-byte Ed25519 seed in base64url)."""
    key_id, separator, encoded = text.strip().partition(":")
    if not separator:
        raise KeyFormatError("expected KEY_ID:PRIVATE_KEY")
    seed = _decode(encoded, _ED25519_KEY_BYTES, "private key")
    private_key = Ed25519PrivateKey.from_private_bytes(seed)
    return SigningKey(_check_caller(caller), _check_key_id(key_id), private_key)


def parse_public_keys(text: str) -> dict[tuple[str, str], Ed25519PublicKey]:
    """Parse a comma-separated list of ``CALLER:KEY_ID:PUBLIC_KEY`` entries."""
    ring: dict[tuple[str, str], Ed25519PublicKey] = {}
    for entry in (item.strip() for item in text.split(",")):
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) != 3:
            raise KeyFormatError(
                f"entry {entry[:40]!r} is not CALLER:KEY_ID:PUBLIC_KEY"
            )
        caller = _check_caller(parts[0])
        key_id = _check_key_id(parts[1])
        if (caller, key_id) in ring:
            raise KeyFormatError(f"key id {key_id!r} of {caller} is listed twice")
        raw = _decode(parts[2], _ED25519_KEY_BYTES, f"public key {caller}:{key_id}")
        ring[(caller, key_id)] = Ed25519PublicKey.from_public_bytes(raw)
    return ring


def format_signing_key(key: SigningKey) -> str:
    seed = key.private_key.private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption()
    )
    return f"{key.key_id}:{_encode(seed)}"


def format_public_key(key: SigningKey) -> str:
    raw = key.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return f"{key.caller}:{key.key_id}:{_encode(raw)}"


def generate_signing_key(caller: str, key_id: str | None = None) -> SigningKey:
    """Create a key pair; the default key id is the UTC date and 4 random hex digits."""
    if key_id is None:
        key_id = time.strftime("%Y%m%d", time.gmtime()) + "-" + secrets.token_hex(2)
    return SigningKey(
        _check_caller(caller), _check_key_id(key_id), Ed25519PrivateKey.generate()
    )


def canonical_target(target: str) -> str:
    """Return the path percent-decoded, as WSGI servers pass it, and the raw query."""
    path, separator, query = target.partition("?")
    return unquote(path) + (separator + query if query else "")


def _signed_message(
    audience: str,
    caller: str,
    key_id: str,
    timestamp: int,
    nonce: str,
    method: str,
    target: str,
    body: bytes,
) -> bytes:
    fields = (
        _SIGNATURE_LABEL,
        audience.encode(),
        caller.encode(),
        key_id.encode(),
        str(timestamp).encode(),
        nonce.encode(),
        method.upper().encode(),
        target.encode(),
        hashlib.sha256(body).hexdigest().encode(),
    )
    # None of the fields can contain a newline: names, key ids and nonces are
    # checked by pattern, and a WSGI server passes no raw newline in the path or
    # query.
    return b"\n".join(fields)


def sign_request(
    key: SigningKey,
    audience: str,
    method: str,
    target: str,
    body: bytes = b"",
    now: float | None = None,
) -> str:
    """Return the ``Authorization`` header value for one request to ``audience``.

    ``target`` is the path and query as sent, percent-encoded or not.
    """
    timestamp = int(time.time() if now is None else now)
    nonce = _encode(secrets.token_bytes(_NONCE_BYTES))
    message = _signed_message(
        audience,
        key.caller,
        key.key_id,
        timestamp,
        nonce,
        method,
        canonical_target(target),
        body,
    )
    signature = _encode(key.private_key.sign(message))
    return (
        f"{SCHEME} caller={key.caller},key={key.key_id},ts={timestamp},"
        f"nonce={nonce},sig={signature}"
    )


def _parse_credential(header: str) -> dict[str, str]:
    scheme, _, rest = header.partition(" ")
    if scheme != SCHEME:
        raise CredentialInvalid("missing" if not header else "wrong_scheme")
    values: dict[str, str] = {}
    for item in rest.strip().split(","):
        name, separator, value = item.partition("=")
        if not separator or name not in _PARAMETERS or name in values:
            raise CredentialInvalid("malformed")
        values[name] = value
    if len(values) != len(_PARAMETERS):
        raise CredentialInvalid("malformed")
    if not _TIMESTAMP_PATTERN.fullmatch(values["ts"]):
        raise CredentialInvalid("malformed")
    if not NONCE_PATTERN.fullmatch(values["nonce"]):
        raise CredentialInvalid("malformed")
    return values


def verify_request(
    ring: PublicKeyRing,
    audience: str,
    header: str,
    method: str,
    target: str,
    body: bytes = b"",
    now: float | None = None,
) -> Credential:
    """Return the verified credential; raise CredentialInvalid.

    ``target`` is the decoded path and the raw query, as the WSGI server passes them.
    The check is stateless, so the caller must reject a nonce it has seen before
    (``RedisNonceStore`` in ``common/internal.py``).
    """
    values = _parse_credential(header)
    caller, key_id = values["caller"], values["key"]
    timestamp = int(values["ts"])
    current = time.time() if now is None else now
    if abs(current - timestamp) > CLOCK_SKEW_SECONDS:
        reason = "expired" if timestamp < current else "future"
        raise CredentialInvalid(reason, caller, key_id)
    public_key = ring.get((caller, key_id))
    if public_key is None:
        raise CredentialInvalid("unknown_key", caller, key_id)
    try:
        signature = _decode(values["sig"], _ED25519_SIGNATURE_BYTES, "signature")
    except KeyFormatError:
        raise CredentialInvalid("malformed", caller, key_id) from None
    message = _signed_message(
        audience, caller, key_id, timestamp, values["nonce"], method, target, body
    )
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        raise CredentialInvalid("bad_signature", caller, key_id) from None
    return Credential(caller, key_id, timestamp, values["nonce"])


def _generate_command(arguments: argparse.Namespace) -> int:
    try:
        key = generate_signing_key(arguments.caller, arguments.key_id)
    except KeyFormatError as error:
        print(f"servicekeys: error: {error}", file=sys.stderr)
        return 2
    print(f"# Private key: set only on the {key.caller} component, keep it secret.")
    print(f"{signing_key_variable(key.caller)}={format_signing_key(key)}")
    print(f"# Public key: add this entry to {PUBLIC_KEYS_VARIABLE} (comma-separated)")
    print("# on identity and otp before the caller starts signing with the new key.")
    print(format_public_key(key))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gatehouse.common.servicekeys",
        description="Create Ed25519 key pairs for calls between gatehouse services.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser(
        "generate", help="print a new key pair in the formats the settings take"
    )
    generate.add_argument("caller", choices=CALLERS, help="the component that signs")
    generate.add_argument(
        "--key-id", help="id verifiers know the key by (default: UTC date and random)"
    )
    arguments = parser.parse_args(argv)
    return _generate_command(arguments)


if __name__ == "__main__":
    sys.exit(main())
