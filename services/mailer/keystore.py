"""The PGP key store (a GnuPG home) and the S/MIME certificate store.

Both live under the data folder: ``gnupg/`` is a GnuPG home used only by
gatehouse (independent of ``$HOME``), ``smime/`` contains one PEM certificate per
file. Importing a key or certificate is the operator's trust decision: the
mailer encrypts to an imported key without any web-of-trust check.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parseaddr
from pathlib import Path

import gnupg
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from gatehouse.common.config import load_settings

from .interfaces import KeyImportError, KeyStoreError, Recipient
from .settings import MailerSettings, load_mailer_settings

log = logging.getLogger(__name__)

PUBLIC_KEY_ARMOR = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
SECRET_KEY_ARMOR = "-----BEGIN PGP PRIVATE KEY BLOCK-----"
MAX_KEY_FILE_BYTES = 1024 * 1024
# Validity letters in GnuPG's colon listing: "e" expired, "r" revoked,
# "i" invalid, "d" disabled. In the primary key's capabilities, an upper-case
# "E" means the key as a whole has a usable encryption (sub)key, and "D" means
# the key is disabled.
UNUSABLE_VALIDITY = set("erid")


def _address_key(address: str) -> str:
    return address.strip().casefold()


def uid_address(uid: str) -> str | None:
    """Return the address in a PGP user id such as ``Name <addr>``, else None."""
    _, address = parseaddr(uid)
    if "@" not in address:
        return None
    return _address_key(address)


def _read_key_file(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as error:
        raise KeyImportError(f"cannot read {path}: {error.strerror}") from error
    if not data.strip():
        raise KeyImportError(f"{path} is empty")
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyImportError(f"{path} is larger than {MAX_KEY_FILE_BYTES} bytes")
    return data


def prepare_private_dir(path: Path) -> Path:
    """Create ``path`` with mode 0700, or tighten it; raise KeyStoreError if foreign."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
    except OSError as error:
        raise KeyStoreError(f"cannot create {path}: {error.strerror}") from error
    if info.st_uid != os.getuid():
        raise KeyStoreError(f"{path} belongs to uid {info.st_uid}, not to this user")
    if stat.S_IMODE(info.st_mode) & 0o077:
        log.warning("keystore.mode_tightened", extra={"path": str(path)})
        os.chmod(path, 0o700)
    return path


class PgpKeyStore:
    """Public keys in a dedicated GnuPG home."""

    def __init__(self, home: Path) -> None:
        self.home = prepare_private_dir(home)
        try:
            self.gpg = gnupg.GPG(gnupghome=str(self.home))
        except (OSError, ValueError) as error:
            raise KeyStoreError(f"gpg cannot use {self.home}: {error}") from error
        self.gpg.encoding = "utf-8"

    def import_key(self, path: str) -> str:
        """Import an ASCII-armoured public key; return the fingerprints imported."""
        data = _read_key_file(path)
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise KeyImportError(
                f"{path} is not ASCII-armoured; export it with gpg --armor --export"
            ) from None
        if SECRET_KEY_ARMOR in text:
            raise KeyImportError(
                f"{path} contains a secret key; import only the public key "
                "(gpg --armor --export ADDRESS)"
            )
        if PUBLIC_KEY_ARMOR not in text:
            raise KeyImportError(f"{path} is not an ASCII-armoured PGP public key")

        result = self.gpg.import_keys(text)
        fingerprints = sorted(set(result.fingerprints))
        secret = {key["fingerprint"] for key in self.gpg.list_keys(secret=True)}
        if secret & set(fingerprints):
            # A secret key hidden in a public-key armour: remove it again.
            for fingerprint in secret & set(fingerprints):
                self.gpg.delete_keys(fingerprint, secret=True, expect_passphrase=False)
                self.gpg.delete_keys(fingerprint)
            raise KeyImportError(
                f"{path} contains a secret key; import only the public key"
            )
        if not fingerprints:
            raise KeyImportError(f"{path} contains no importable PGP public key")
        log.info("keystore.pgp_imported", extra={"fingerprints": fingerprints})
        return ", ".join(fingerprints)

    def _uid_usable(self, fingerprint: str, address: str) -> bool:
        listing = self.gpg.list_keys(keys=[fingerprint])
        for uid, details in listing.uid_map.items():
            if (
                uid_address(uid) == address
                and details.get("trust") not in UNUSABLE_VALIDITY
            ):
                return True
        return False

    def find_recipient(self, address: str) -> Recipient | None:
        """Return the newest usable encryption key for ``address``, or None."""
        address_key = _address_key(address)
        now = time.time()
        candidates = []
        for key in self.gpg.list_keys():
            if address_key not in {uid_address(uid) for uid in key.get("uids", [])}:
                continue
            capabilities = key.get("cap", "")
            expires = float(key["expires"]) if key.get("expires") else None
            if key.get("trust") in UNUSABLE_VALIDITY or "D" in capabilities:
                continue
            if "E" not in capabilities or (expires is not None and expires <= now):
                continue
            if not _has_encryption_subkey(key, now):
                continue
            if not self._uid_usable(key["fingerprint"], address_key):
                continue
            candidates.append(
                (float(key.get("date") or 0), key["fingerprint"], expires)
            )
        if not candidates:
            return None
        _, fingerprint, expires = max(candidates)
        return Recipient("pgp", fingerprint, expires)


def _has_encryption_subkey(key: dict, now: float) -> bool:
    """Check the primary key and every subkey for a valid, unexpired "e" capability."""
    entries = [key, *key.get("subkey_info", {}).values()]
    for entry in entries:
        if "e" not in entry.get("cap", ""):
            continue
        if entry.get("trust") in UNUSABLE_VALIDITY:
            continue
        expires = entry.get("expires")
        if expires and float(expires) <= now:
            continue
        return True
    return False


@dataclass(frozen=True)
class StoredCertificate:
    path: Path
    certificate: x509.Certificate


def certificate_addresses(certificate: x509.Certificate) -> list[str]:
    """Return the rfc822Name entries of the SAN, else the subject's emailAddress."""
    try:
        extension = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
        addresses = extension.value.get_values_for_type(x509.RFC822Name)
    except x509.ExtensionNotFound:
        addresses = []
    if not addresses:
        addresses = [
            attribute.value
            for attribute in certificate.subject.get_attributes_for_oid(
                NameOID.EMAIL_ADDRESS
            )
        ]
    return [_address_key(str(address)) for address in addresses]


def _can_encrypt_to(certificate: x509.Certificate) -> str | None:
    """Return why the certificate cannot take an envelope, or None when it can."""
    if not isinstance(certificate.public_key(), rsa.RSAPublicKey):
        # PKCS7EnvelopeBuilder only supports RSA recipients (cryptography 44-50).
        return "its public key is not RSA"
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    if not usage.key_encipherment:
        return "its key usage does not allow key encipherment"
    return None


class SmimeStore:
    """PEM certificates in one folder, one per file, named by their SHA-256."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        try:
            folder.mkdir(mode=0o755, parents=True, exist_ok=True)
        except OSError as error:
            raise KeyStoreError(f"cannot create {folder}: {error.strerror}") from error

    def import_certificate(self, path: str) -> str:
        """Validate and store a PEM X.509 certificate; return a short description."""
        data = _read_key_file(path)
        if b"-----BEGIN CERTIFICATE-----" not in data:
            raise KeyImportError(f"{path} is not a PEM X.509 certificate")
        if b"PRIVATE KEY-----" in data:
            raise KeyImportError(
                f"{path} contains a private key; import only the certificate"
            )
        try:
            certificates = x509.load_pem_x509_certificates(data)
        except ValueError as error:
            raise KeyImportError(
                f"{path} is not a valid PEM X.509 certificate"
            ) from error
        if len(certificates) != 1:
            raise KeyImportError(
                f"{path} contains {len(certificates)} certificates; "
                "import one at a time"
            )
        certificate = certificates[0]
        addresses = certificate_addresses(certificate)
        if not addresses:
            raise KeyImportError(
                f"{path} names no email address (SAN rfc822Name or emailAddress)"
            )
        problem = _can_encrypt_to(certificate)
        if problem:
            raise KeyImportError(
                f"{path} cannot be used for S/MIME encryption: {problem}"
            )

        fingerprint = certificate.fingerprint(hashes.SHA256()).hex()
        target = self.folder / f"{fingerprint}.pem"
        pem = certificate.public_bytes(encoding=Encoding.PEM)
        descriptor, temporary = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
        log.info("keystore.smime_imported", extra={"fingerprint": fingerprint})
        return describe_certificate(certificate)

    def certificates(self) -> list[StoredCertificate]:
        stored = []
        for path in sorted(self.folder.glob("*.pem")):
            try:
                certificate = x509.load_pem_x509_certificate(path.read_bytes())
            except (OSError, ValueError) as error:
                log.warning(
                    "keystore.smime_unreadable",
                    extra={"path": str(path), "error": str(error)},
                )
                continue
            stored.append(StoredCertificate(path, certificate))
        return stored

    def find_recipient(self, address: str) -> Recipient | None:
        """Return the valid certificate for ``address`` that expires last, or None."""
        address_key = _address_key(address)
        now = datetime.now(UTC)
        candidates = []
        for entry in self.certificates():
            certificate = entry.certificate
            if address_key not in certificate_addresses(certificate):
                continue
            if (
                not certificate.not_valid_before_utc
                <= now
                < certificate.not_valid_after_utc
            ):
                continue
            if _can_encrypt_to(certificate) is not None:
                continue
            candidates.append((certificate.not_valid_after_utc, str(entry.path)))
        if not candidates:
            return None
        not_after, path = max(candidates)
        return Recipient("smime", path, not_after.timestamp())


def describe_certificate(certificate: x509.Certificate) -> str:
    expiry = certificate.not_valid_after_utc
    state = " (expired)" if expiry <= datetime.now(UTC) else ""
    return (
        f"subject {certificate.subject.rfc4514_string()}; "
        f"addresses {', '.join(certificate_addresses(certificate))}; "
        f"valid until {expiry:%Y-%m-%d %H:%M} UTC{state}"
    )


class KeySelector:
    """Decide how to encrypt to an address: the first method in order with a key."""

    def __init__(
        self,
        pgp: PgpKeyStore | None,
        smime: SmimeStore | None,
        order: tuple[str, ...] = ("pgp", "smime"),
    ) -> None:
        self.stores = {"pgp": pgp, "smime": smime}
        self.order = order

    def recipients(self, address: str) -> list[Recipient]:
        """Return a usable key per enabled method, in the configured order."""
        found = []
        for method in self.order:
            store = self.stores.get(method)
            if store is None:
                continue
            recipient = store.find_recipient(address)
            if recipient is not None:
                found.append(recipient)
        return found


def _data_dir(data_dir: Path | str | None) -> Path:
    return Path(data_dir) if data_dir is not None else load_settings().data_dir


def import_pgp_key(path: str, data_dir: Path | str | None = None) -> str:
    """Import an armoured public key into the mailer's GnuPG home.

    Return the imported fingerprints; raise KeyImportError for an empty file, a
    secret key or anything that is not an ASCII-armoured public key.
    """
    try:
        store = PgpKeyStore(_data_dir(data_dir) / "gnupg")
    except KeyStoreError as error:
        raise KeyImportError(str(error)) from error
    return store.import_key(path)


def import_smime_certificate(path: str, data_dir: Path | str | None = None) -> str:
    """Store a PEM certificate for the mailer; return subject, addresses and expiry."""
    try:
        store = SmimeStore(_data_dir(data_dir) / "smime")
    except KeyStoreError as error:
        raise KeyImportError(str(error)) from error
    return store.import_certificate(path)


def build_selector(settings: MailerSettings) -> KeySelector:
    """Return the selector for the enabled subsystems of ``MailerSettings``."""
    pgp = PgpKeyStore(settings.gnupg_home) if settings.pgp_enabled else None
    smime = SmimeStore(settings.smime_dir) if settings.smime_enabled else None
    return KeySelector(pgp, smime, settings.encryption_order)


def preview_encryption(address: str, data_dir: Path | str | None = None) -> str | None:
    """Return "pgp", "smime" or None: the mailer's choice with email security on.

    An unreadable store also returns None (and logs why): this is a preview for
    a page, while the mailer itself retries such a mail instead of sending it
    in plain text.
    """
    settings = load_mailer_settings()
    if data_dir is not None:
        settings = replace(
            settings, common=replace(settings.common, data_dir=Path(data_dir))
        )
    try:
        recipients = build_selector(settings).recipients(address)
    except (KeyStoreError, OSError, ValueError) as error:
        log.warning("keystore.preview_failed", extra={"error": str(error)})
        return None
    return recipients[0].method if recipients else None
