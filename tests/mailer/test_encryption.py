"""Encryption end to end: real GnuPG and OpenSSL keys, mails captured over SMTP.

Each test imports keys or certificates the way an operator does, lets the mail
processor send a token mail to an aiosmtpd server, then decrypts what arrived
with the real ``gpg`` or ``openssl cms`` and looks for the token inside.
"""

from __future__ import annotations

import datetime
import email
import email.policy
import re

import pytest
import redis
from gatehouse.common.mail import MailJob
from gatehouse.mailer.delivery import ACK, build_processor
from gatehouse.mailer.keystore import (
    build_selector,
    import_pgp_key,
    import_smime_certificate,
    preview_encryption,
)
from gatehouse.mailer.settings import load_mailer_settings
from support.crypto import make_certificate, openssl_decrypt

from .conftest import REDIS_URL

TOKEN = "482913"
ADDRESS = "alice@example.test"


def token_job(to: str = ADDRESS, email_security: bool = True) -> MailJob:
    return MailJob(
        kind="token",
        to=to,
        agent_id=7,
        first_name="Alice",
        params={"token": TOKEN, "ttl_seconds": 600, "purpose": "login"},
        email_security=email_security,
        request_id="req-encryption-test",
    )


def send(job: MailJob, smtp_server) -> email.message.EmailMessage:
    """Run one job through a freshly configured processor; return the mail sent."""
    settings = load_mailer_settings()
    processor = build_processor(
        settings, redis.Redis.from_url(REDIS_URL), build_selector(settings)
    )
    outcome = processor.process(processor.cipher.seal(job), {}, job.message_id)
    assert outcome.action == ACK, outcome.reason
    messages = smtp_server.handler.parsed()
    assert len(messages) == 1
    return messages[0]


@pytest.fixture
def smtp_env(mail_env, smtp_server, monkeypatch):
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(smtp_server.port))
    return mail_env


def has_token_line(text: str) -> bool:
    return re.search(rf"^{TOKEN}\r?$", text, re.MULTILINE) is not None


def pgp_inner(message, recipient_gpg) -> email.message.EmailMessage:
    assert message.get_content_type() == "multipart/encrypted"
    assert message.get_param("protocol") == "application/pgp-encrypted"
    version, payload = message.get_payload()
    assert version.get_content_type() == "application/pgp-encrypted"
    assert b"Version: 1" in version.get_content()
    assert payload.get_content_type() == "application/octet-stream"
    armored = payload.get_payload(decode=True)
    assert armored.startswith(b"-----BEGIN PGP MESSAGE-----")
    return email.message_from_bytes(
        recipient_gpg.decrypt(armored), policy=email.policy.default
    )


def assert_plain_token_mail(message) -> None:
    assert message.get_content_type() == "text/plain"
    assert has_token_line(message.get_content())


def assert_generic_headers(message) -> None:
    assert TOKEN not in message["Subject"]
    assert message["Subject"] == "Your gatehouse sign-in code"
    assert message["Auto-Submitted"] == "auto-generated"


# --- PGP ------------------------------------------------------------------


def test_pgp_untrusted_key_encrypts(smtp_env, smtp_server, recipient_gpg, short_tmp):
    fingerprint = recipient_gpg.generate(f"Alice <{ADDRESS}>")
    imported = import_pgp_key(
        str(recipient_gpg.export(fingerprint, short_tmp / "a.asc"))
    )
    assert fingerprint in imported

    message = send(token_job(), smtp_server)

    assert_generic_headers(message)
    inner = pgp_inner(message, recipient_gpg)
    assert inner.get_content_type() == "text/plain"
    assert has_token_line(inner.get_content())
    assert TOKEN.encode() not in message.as_bytes()


def test_pgp_expired_key_sends_plain(smtp_env, smtp_server, recipient_gpg, short_tmp):
    fingerprint = recipient_gpg.generate(
        f"Alice <{ADDRESS}>", expire="1d", created="20200101T000000"
    )
    import_pgp_key(str(recipient_gpg.export(fingerprint, short_tmp / "old.asc")))

    assert preview_encryption(ADDRESS) is None
    assert_plain_token_mail(send(token_job(), smtp_server))


def test_pgp_revoked_key_sends_plain(smtp_env, smtp_server, recipient_gpg, short_tmp):
    fingerprint = recipient_gpg.generate(f"Alice <{ADDRESS}>")
    recipient_gpg.revoke(fingerprint)
    import_pgp_key(str(recipient_gpg.export(fingerprint, short_tmp / "revoked.asc")))

    assert preview_encryption(ADDRESS) is None
    assert_plain_token_mail(send(token_job(), smtp_server))


def test_pgp_expired_and_valid_key_uses_valid(
    smtp_env, smtp_server, recipient_gpg, short_tmp
):
    expired_home = type(recipient_gpg)(short_tmp / "expired-gnupg")
    expired = expired_home.generate(
        f"Alice <{ADDRESS}>", expire="1d", created="20200101T000000"
    )
    valid = recipient_gpg.generate(f"Alice <{ADDRESS}>")
    import_pgp_key(str(expired_home.export(expired, short_tmp / "expired.asc")))
    import_pgp_key(str(recipient_gpg.export(valid, short_tmp / "valid.asc")))

    message = send(token_job(), smtp_server)

    inner = pgp_inner(message, recipient_gpg)
    assert has_token_line(inner.get_content())


def test_pgp_newest_usable_key_wins(smtp_env, smtp_server, recipient_gpg, short_tmp):
    older_home = type(recipient_gpg)(short_tmp / "older-gnupg")
    older = older_home.generate(
        f"Alice <{ADDRESS}>", expire="10y", created="20240101T000000"
    )
    newer = recipient_gpg.generate(f"Alice <{ADDRESS}>")
    import_pgp_key(str(older_home.export(older, short_tmp / "older.asc")))
    import_pgp_key(str(recipient_gpg.export(newer, short_tmp / "newer.asc")))

    message = send(token_job(), smtp_server)

    inner = pgp_inner(message, recipient_gpg)
    assert has_token_line(inner.get_content())
    with pytest.raises(AssertionError, match="decrypt"):
        older_home.decrypt(message.get_payload()[1].get_payload(decode=True))


def test_pgp_mixed_case_address_matches(
    smtp_env, smtp_server, recipient_gpg, short_tmp
):
    fingerprint = recipient_gpg.generate("Alice <Alice.Smith@Example.TEST>")
    import_pgp_key(str(recipient_gpg.export(fingerprint, short_tmp / "mixed.asc")))

    assert preview_encryption("alice.smith@example.test") == "pgp"
    message = send(token_job(to="ALICE.smith@example.test"), smtp_server)

    inner = pgp_inner(message, recipient_gpg)
    assert has_token_line(inner.get_content())


def test_pgp_reset_mail_is_encrypted(smtp_env, smtp_server, recipient_gpg, short_tmp):
    fingerprint = recipient_gpg.generate(f"Alice <{ADDRESS}>")
    import_pgp_key(str(recipient_gpg.export(fingerprint, short_tmp / "a.asc")))
    link = "https://desk.example.test/agent/password/reset/abcDEF123"
    job = MailJob(
        kind="password_reset",
        to=ADDRESS,
        agent_id=7,
        first_name="Alice",
        params={"link": link, "ttl_seconds": 1800},
        email_security=True,
    )

    message = send(job, smtp_server)

    assert message["Subject"] == "Reset your gatehouse password"
    inner = pgp_inner(message, recipient_gpg)
    assert link in inner.get_content()
    assert b"abcDEF123" not in message.as_bytes()


# --- S/MIME ---------------------------------------------------------------


def assert_smime_envelope(raw: bytes, message) -> None:
    assert message.get_content_type() == "application/pkcs7-mime"
    assert message.get_param("smime-type") == "enveloped-data"
    assert message.get_param("name") == "smime.p7m"
    assert message["Content-Transfer-Encoding"] == "base64"
    assert b"\r\n" in raw
    assert re.search(rb"(?<!\r)\n", raw) is None


def smime_inner(raw: bytes, certificate, folder) -> email.message.EmailMessage:
    decrypted = openssl_decrypt(raw, certificate, folder)
    assert len(re.findall(rb"(?im)^content-type:", decrypted)) == 1
    return email.message_from_bytes(decrypted, policy=email.policy.default)


def test_smime_address_only_in_san(smtp_env, smtp_server, short_tmp):
    certificate = make_certificate(short_tmp / "certs", "alice", san_address=ADDRESS)
    description = import_smime_certificate(str(certificate.certificate_path))
    assert ADDRESS in description

    message = send(token_job(), smtp_server)
    raw = smtp_server.handler.messages[0][1]

    assert_generic_headers(message)
    assert_smime_envelope(raw, message)
    inner = smime_inner(raw, certificate, short_tmp)
    assert has_token_line(inner.get_content())
    assert TOKEN.encode() not in raw


def test_smime_subject_email_fallback(smtp_env, smtp_server, short_tmp):
    certificate = make_certificate(
        short_tmp / "certs",
        "alice",
        san_address=None,
        subject_address="Alice@Example.test",
    )
    import_smime_certificate(str(certificate.certificate_path))

    assert preview_encryption(ADDRESS) == "smime"
    raw = send(token_job(), smtp_server).as_bytes()
    assert has_token_line(smime_inner(raw, certificate, short_tmp).get_content())


def test_smime_expired_and_valid_uses_valid(smtp_env, smtp_server, short_tmp):
    now = datetime.datetime.now(datetime.UTC)
    expired = make_certificate(
        short_tmp / "certs",
        "old",
        san_address=ADDRESS,
        not_before=now - datetime.timedelta(days=400),
        not_after=now - datetime.timedelta(days=1),
    )
    valid = make_certificate(short_tmp / "certs", "new", san_address=ADDRESS)
    assert "expired" in import_smime_certificate(str(expired.certificate_path))
    import_smime_certificate(str(valid.certificate_path))

    raw = send(token_job(), smtp_server).as_bytes()

    assert has_token_line(smime_inner(raw, valid, short_tmp).get_content())
    with pytest.raises(AssertionError, match="openssl"):
        openssl_decrypt(raw, expired, short_tmp)


def test_smime_longest_valid_certificate_wins(smtp_env, smtp_server, short_tmp):
    now = datetime.datetime.now(datetime.UTC)
    shorter = make_certificate(
        short_tmp / "certs",
        "short",
        san_address=ADDRESS,
        not_after=now + datetime.timedelta(days=30),
    )
    longer = make_certificate(
        short_tmp / "certs",
        "long",
        san_address=ADDRESS,
        not_after=now + datetime.timedelta(days=700),
    )
    import_smime_certificate(str(longer.certificate_path))
    import_smime_certificate(str(shorter.certificate_path))

    raw = send(token_job(), smtp_server).as_bytes()

    assert has_token_line(smime_inner(raw, longer, short_tmp).get_content())


# --- preference and plain cases --------------------------------------------


@pytest.fixture
def both_keys(recipient_gpg, short_tmp):
    fingerprint = recipient_gpg.generate(f"Alice <{ADDRESS}>")
    import_pgp_key(str(recipient_gpg.export(fingerprint, short_tmp / "a.asc")))
    certificate = make_certificate(short_tmp / "certs", "alice", san_address=ADDRESS)
    import_smime_certificate(str(certificate.certificate_path))
    return certificate


def test_pgp_preferred_over_smime(smtp_env, smtp_server, both_keys, recipient_gpg):
    message = send(token_job(), smtp_server)
    assert has_token_line(pgp_inner(message, recipient_gpg).get_content())


def test_encryption_order_smime_first(
    smtp_env, smtp_server, both_keys, short_tmp, monkeypatch
):
    monkeypatch.setenv("GATEHOUSE_ENCRYPTION_ORDER", "smime,pgp")
    assert preview_encryption(ADDRESS) == "smime"
    raw = send(token_job(), smtp_server).as_bytes()
    assert has_token_line(smime_inner(raw, both_keys, short_tmp).get_content())


def test_both_subsystems_off_sends_plain(smtp_env, smtp_server, both_keys, monkeypatch):
    monkeypatch.setenv("GATEHOUSE_PGP_ENABLED", "off")
    monkeypatch.setenv("GATEHOUSE_SMIME_ENABLED", "off")
    assert preview_encryption(ADDRESS) is None
    assert_plain_token_mail(send(token_job(), smtp_server))


def test_pgp_off_falls_to_smime(
    smtp_env, smtp_server, both_keys, short_tmp, monkeypatch
):
    monkeypatch.setenv("GATEHOUSE_PGP_ENABLED", "off")
    raw = send(token_job(), smtp_server).as_bytes()
    assert has_token_line(smime_inner(raw, both_keys, short_tmp).get_content())


def test_no_key_sends_plain(smtp_env, smtp_server):
    assert preview_encryption(ADDRESS) is None
    message = send(token_job(), smtp_server)
    assert_plain_token_mail(message)
    assert_generic_headers(message)


def test_email_security_off_sends_plain(smtp_env, smtp_server, both_keys):
    assert_plain_token_mail(send(token_job(email_security=False), smtp_server))


def test_failed_pgp_encryption_falls_back_to_smime(
    smtp_env, smtp_server, both_keys, short_tmp, monkeypatch
):
    # gpg's result is not ok and carries no armour: that text must never be sent.
    class FailedResult:
        ok = False
        status = "encryption failed"

        def __str__(self) -> str:
            return ""

    monkeypatch.setattr("gnupg.GPG.encrypt", lambda *args, **kwargs: FailedResult())
    raw = send(token_job(), smtp_server).as_bytes()
    assert has_token_line(smime_inner(raw, both_keys, short_tmp).get_content())


def test_failed_encryption_dead_letter_policy(
    smtp_env, smtp_server, recipient_gpg, short_tmp, monkeypatch
):
    fingerprint = recipient_gpg.generate(f"Alice <{ADDRESS}>")
    import_pgp_key(str(recipient_gpg.export(fingerprint, short_tmp / "a.asc")))
    monkeypatch.setenv("GATEHOUSE_ENCRYPTION_FALLBACK", "dead-letter")
    monkeypatch.setattr(
        "gnupg.GPG.encrypt",
        lambda *args, **kwargs: type(
            "Failed", (), {"ok": False, "status": "failed", "__str__": lambda self: ""}
        )(),
    )
    settings = load_mailer_settings()
    processor = build_processor(
        settings, redis.Redis.from_url(REDIS_URL), build_selector(settings)
    )
    job = token_job()

    outcome = processor.process(processor.cipher.seal(job), {}, job.message_id)

    assert outcome.action == "dead"
    assert smtp_server.handler.messages == []
