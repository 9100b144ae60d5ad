"""Unit tests for the key and certificate stores: import checks and selection."""

from __future__ import annotations

import datetime
import os
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from gatehouse.mailer.interfaces import KeyImportError, Recipient
from gatehouse.mailer.keystore import (
    KeySelector,
    PgpKeyStore,
    import_pgp_key,
    import_smime_certificate,
    prepare_private_dir,
    preview_encryption,
    uid_address,
)
from support.crypto import make_certificate

ADDRESS = "carol@example.test"


@pytest.mark.parametrize(
    ("uid", "address"),
    [
        ("Carol <Carol@Example.TEST>", "carol@example.test"),
        ("carol@example.test", "carol@example.test"),
        ("Carol (desk) <carol@example.test>", "carol@example.test"),
        ("Carol only", None),
    ],
)
def test_uid_address(uid, address):
    assert uid_address(uid) == address


def test_gnupg_home_created_private(mail_env, short_tmp):
    home = short_tmp / "data" / "gnupg"
    PgpKeyStore(home)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_gnupg_home_mode_tightened(short_tmp):
    home = short_tmp / "loose"
    home.mkdir()
    os.chmod(home, 0o750)  # noqa: S103 - the loose mode is what this test repairs
    prepare_private_dir(home)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_pgp_import_empty_file(mail_env, short_tmp):
    path = short_tmp / "empty.asc"
    path.write_bytes(b"\n")
    with pytest.raises(KeyImportError, match="is empty"):
        import_pgp_key(str(path))


def test_pgp_import_missing_file(mail_env, short_tmp):
    with pytest.raises(KeyImportError, match="cannot read"):
        import_pgp_key(str(short_tmp / "absent.asc"))


def test_pgp_import_binary_key(mail_env, recipient_gpg, short_tmp):
    fingerprint = recipient_gpg.generate(f"Carol <{ADDRESS}>")
    binary = short_tmp / "binary.gpg"
    binary.write_bytes(recipient_gpg.run("--export", fingerprint))
    with pytest.raises(KeyImportError, match="not ASCII-armoured"):
        import_pgp_key(str(binary))


def test_pgp_import_secret_key(mail_env, recipient_gpg, short_tmp):
    fingerprint = recipient_gpg.generate(f"Carol <{ADDRESS}>")
    path = recipient_gpg.export_secret(fingerprint, short_tmp / "secret.asc")
    with pytest.raises(KeyImportError, match="secret key"):
        import_pgp_key(str(path))
    assert preview_encryption(ADDRESS) is None


def test_pgp_import_not_a_key(mail_env, short_tmp):
    path = short_tmp / "note.txt"
    path.write_text("hello, this is not a key\n")
    with pytest.raises(KeyImportError, match="not an ASCII-armoured PGP public key"):
        import_pgp_key(str(path))


def test_pgp_import_garbled_armour(mail_env, short_tmp):
    path = short_tmp / "garbled.asc"
    path.write_text(
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n"
        "-----END PGP PUBLIC KEY BLOCK-----\n"
    )
    with pytest.raises(KeyImportError, match="no importable"):
        import_pgp_key(str(path))


def test_pgp_import_returns_fingerprint(mail_env, recipient_gpg, short_tmp):
    fingerprint = recipient_gpg.generate(f"Carol <{ADDRESS}>")
    path = recipient_gpg.export(fingerprint, short_tmp / "carol.asc")
    assert import_pgp_key(str(path)) == fingerprint
    assert preview_encryption(ADDRESS) == "pgp"
    assert preview_encryption("someone.else@example.test") is None


def test_pgp_import_explicit_data_dir(recipient_gpg, short_tmp):
    fingerprint = recipient_gpg.generate(f"Carol <{ADDRESS}>")
    path = recipient_gpg.export(fingerprint, short_tmp / "carol.asc")
    assert import_pgp_key(str(path), data_dir=short_tmp / "other") == fingerprint
    assert (short_tmp / "other" / "gnupg" / "pubring.kbx").exists()


def test_pgp_key_without_encryption_subkey(mail_env, recipient_gpg, short_tmp):
    recipient_gpg.run("--quick-gen-key", f"Carol <{ADDRESS}>", "ed25519", "sign", "1y")
    listing = recipient_gpg.run("--with-colons", "--list-keys", ADDRESS).decode()
    fingerprint = next(
        line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")
    )
    import_pgp_key(str(recipient_gpg.export(fingerprint, short_tmp / "sign.asc")))
    assert preview_encryption(ADDRESS) is None


def test_smime_import_not_pem(mail_env, short_tmp):
    path = short_tmp / "cert.der"
    path.write_bytes(b"\x30\x82\x01\x00garbage")
    with pytest.raises(KeyImportError, match="not a PEM X.509 certificate"):
        import_smime_certificate(str(path))


def test_smime_import_garbled_pem(mail_env, short_tmp):
    path = short_tmp / "cert.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(KeyImportError, match="not a valid PEM X.509 certificate"):
        import_smime_certificate(str(path))


def test_smime_import_with_private_key(mail_env, short_tmp):
    certificate = make_certificate(short_tmp, "carol", san_address=ADDRESS)
    bundle = short_tmp / "bundle.pem"
    bundle.write_bytes(
        certificate.certificate_path.read_bytes() + certificate.key_path.read_bytes()
    )
    with pytest.raises(KeyImportError, match="private key"):
        import_smime_certificate(str(bundle))


def test_smime_import_no_address(mail_env, short_tmp):
    certificate = make_certificate(short_tmp, "carol", san_address=None)
    with pytest.raises(KeyImportError, match="no email address"):
        import_smime_certificate(str(certificate.certificate_path))


def test_smime_import_non_rsa(mail_env, short_tmp):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "carol")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(ADDRESS)]), False)
        .sign(key, hashes.SHA256())
    )
    path = short_tmp / "ec.pem"
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(KeyImportError, match="not RSA"):
        import_smime_certificate(str(path))


def test_smime_import_description(mail_env, short_tmp):
    certificate = make_certificate(short_tmp, "carol", san_address="Carol@Example.test")
    description = import_smime_certificate(str(certificate.certificate_path))
    assert "CN=carol" in description
    assert "carol@example.test" in description
    assert "valid until" in description
    stored = list((short_tmp / "data" / "smime").glob("*.pem"))
    assert len(stored) == 1


def test_smime_not_yet_valid_skipped(mail_env, short_tmp):
    now = datetime.datetime.now(datetime.UTC)
    certificate = make_certificate(
        short_tmp,
        "future",
        san_address=ADDRESS,
        not_before=now + datetime.timedelta(days=2),
    )
    import_smime_certificate(str(certificate.certificate_path))
    assert preview_encryption(ADDRESS) is None


class FakeStore:
    def __init__(self, recipient: Recipient | None) -> None:
        self.recipient = recipient
        self.calls: list[str] = []

    def find_recipient(self, address: str) -> Recipient | None:
        self.calls.append(address)
        return self.recipient


def test_selector_order_and_disabled():
    pgp = FakeStore(Recipient("pgp", "FPR", None))
    smime = FakeStore(Recipient("smime", "/x.pem", None))
    assert [r.method for r in KeySelector(pgp, smime).recipients("a@b.test")] == [
        "pgp",
        "smime",
    ]
    assert [
        r.method
        for r in KeySelector(pgp, smime, ("smime", "pgp")).recipients("a@b.test")
    ] == ["smime", "pgp"]
    assert [r.method for r in KeySelector(None, smime).recipients("a@b.test")] == [
        "smime"
    ]
    assert KeySelector(None, None).recipients("a@b.test") == []
