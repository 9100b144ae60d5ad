"""Wrap a rendered text part into PGP/MIME (RFC 3156) or S/MIME (RFC 8551)."""

from __future__ import annotations

import base64
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from .interfaces import EncryptionFailed, Recipient
from .keystore import PgpKeyStore

PGP_MESSAGE_ARMOR = "-----BEGIN PGP MESSAGE-----"


def pgp_mime(
    inner: EmailMessage, recipient: Recipient, store: PgpKeyStore
) -> EmailMessage:
    """Return a multipart/encrypted message whose second part is the armoured inner.

    always_trust: the operator's import is the trust decision, so GnuPG's web of
    trust (which would reject an unsigned key) is skipped.
    """
    result = store.gpg.encrypt(
        inner.as_bytes(policy=SMTP),
        recipient.reference,
        armor=True,
        always_trust=True,
    )
    armored = str(result)
    # A failed run can still return ok=False with an empty body, or a body that
    # is not a PGP message; neither may reach the wire.
    if not result.ok or not armored.startswith(PGP_MESSAGE_ARMOR):
        raise EncryptionFailed(f"gpg encryption failed: {result.status or 'no output'}")

    message = EmailMessage(policy=SMTP)
    message["MIME-Version"] = "1.0"
    message["Content-Type"] = (
        'multipart/encrypted; protocol="application/pgp-encrypted"'
    )
    version = EmailMessage(policy=SMTP)
    version.set_content(
        b"Version: 1\r\n", maintype="application", subtype="pgp-encrypted", cte="7bit"
    )
    version["Content-Description"] = "PGP/MIME version identification"
    del version["MIME-Version"]
    payload = EmailMessage(policy=SMTP)
    payload.set_content(
        armored.encode("ascii"),
        maintype="application",
        subtype="octet-stream",
        cte="7bit",
        disposition="inline",
        filename="encrypted.asc",
    )
    payload["Content-Description"] = "OpenPGP encrypted message"
    del payload["MIME-Version"]
    message.set_payload([version, payload])
    return message


def smime_envelope(inner: EmailMessage, recipient: Recipient) -> EmailMessage:
    """Return an application/pkcs7-mime enveloped-data message for ``recipient``."""
    try:
        certificate = x509.load_pem_x509_certificate(
            Path(recipient.reference).read_bytes()
        )
        # Binary: the inner entity already has CRLF line ends (policy SMTP), and
        # it carries its own Content-Type, so the Text option would add a second.
        envelope = (
            pkcs7.PKCS7EnvelopeBuilder()
            .set_data(inner.as_bytes(policy=SMTP))
            .add_recipient(certificate)
            .encrypt(Encoding.DER, [pkcs7.PKCS7Options.Binary])
        )
    except (OSError, ValueError, TypeError) as error:
        raise EncryptionFailed(f"S/MIME encryption failed: {error}") from error
    if not envelope:
        raise EncryptionFailed("S/MIME encryption returned no data")

    message = EmailMessage(policy=SMTP)
    message["MIME-Version"] = "1.0"
    message["Content-Type"] = (
        "application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m"
    )
    message["Content-Disposition"] = "attachment; filename=smime.p7m"
    message["Content-Transfer-Encoding"] = "base64"
    encoded = base64.encodebytes(envelope).decode("ascii")
    message.set_payload(encoded.replace("\n", "\r\n"))
    return message
