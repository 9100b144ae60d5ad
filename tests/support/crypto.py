"""Recipient-side keys for the tests: a GnuPG home with secret keys, self-signed
S/MIME certificates, and decryption with the real gpg and openssl."""

from __future__ import annotations

import datetime
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

# --- PGP ------------------------------------------------------------------


class GpgHome:
    """A throw-away GnuPG home that plays the recipient: it contains the secret keys."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(mode=0o700, parents=True, exist_ok=True)

    def run(self, *arguments: str, stdin: bytes | None = None) -> bytes:
        command = [
            "gpg",
            "--homedir",
            str(self.path),
            "--batch",
            "--yes",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            *arguments,
        ]
        result = subprocess.run(command, input=stdin, capture_output=True, check=False)
        if result.returncode != 0:
            raise AssertionError(f"{command} failed: {result.stderr.decode()}")
        return result.stdout

    def generate(self, uid: str, expire: str = "1y", created: str | None = None) -> str:
        """Create a key pair (with encryption subkey); return its fingerprint."""
        revocations = self.path / "openpgp-revocs.d"
        before = set(revocations.glob("*.rev")) if revocations.exists() else set()
        faked = ["--faked-system-time", created] if created else []
        self.run(*faked, "--quick-gen-key", uid, "future-default", "default", expire)
        # GnuPG stores a revocation certificate named by the new key's fingerprint.
        (new,) = set(revocations.glob("*.rev")) - before
        return new.stem

    def revoke(self, fingerprint: str) -> None:
        certificate = (
            self.path / "openpgp-revocs.d" / f"{fingerprint}.rev"
        ).read_text()
        # GnuPG prefixes the armour line with ":" against an accidental import.
        self.run(
            "--import", stdin=certificate.replace(":-----BEGIN", "-----BEGIN").encode()
        )

    def export(self, fingerprint: str, target: Path) -> Path:
        target.write_bytes(self.run("--armor", "--export", fingerprint))
        return target

    def export_secret(self, fingerprint: str, target: Path) -> Path:
        target.write_bytes(self.run("--armor", "--export-secret-keys", fingerprint))
        return target

    def decrypt(self, armored: bytes) -> bytes:
        return self.run("--decrypt", stdin=armored)


@dataclass
class TestCertificate:
    certificate_path: Path
    key_path: Path
    certificate: x509.Certificate


def make_certificate(
    folder: Path,
    name: str,
    san_address: str | None,
    subject_address: str | None = None,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> TestCertificate:
    """Create a self-signed RSA certificate for S/MIME; write cert and key as PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.UTC)

    subject = [x509.NameAttribute(NameOID.COMMON_NAME, name)]
    if subject_address:
        subject.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, subject_address))
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(subject))
        .issuer_name(x509.Name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - datetime.timedelta(days=1))
        .not_valid_after(not_after or now + datetime.timedelta(days=365))
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if san_address:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name(san_address)]), critical=False
        )
    certificate = builder.sign(key, hashes.SHA256())

    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{uuid.uuid4().hex[:6]}"
    certificate_path = folder / f"{stem}.crt.pem"
    key_path = folder / f"{stem}.key.pem"
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return TestCertificate(certificate_path, key_path, certificate)


def openssl_decrypt(
    raw_message: bytes, certificate: TestCertificate, folder: Path
) -> bytes:
    """Decrypt an S/MIME mail with ``openssl cms -decrypt``; return the inner entity."""
    source = folder / f"smime-{uuid.uuid4().hex[:6]}.eml"
    source.write_bytes(raw_message)
    result = subprocess.run(
        [
            "openssl",
            "cms",
            "-decrypt",
            "-in",
            str(source),
            "-recip",
            str(certificate.certificate_path),
            "-inkey",
            str(certificate.key_path),
        ],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"openssl cms -decrypt failed: {result.stderr.decode()}")
    return result.stdout
