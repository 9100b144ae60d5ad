"""TLS to the SMTP server: settings, STARTTLS and implicit TLS against aiosmtpd.

Every certificate is made here with ``cryptography``: a self-signed CA that
signs a server certificate for 127.0.0.1, and a second, unrelated CA that must
not be trusted.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from gatehouse.common.config import ConfigError, load_settings
from gatehouse.common.mail import MailJob
from gatehouse.mailer.delivery import ACK, RETRY, build_processor
from gatehouse.mailer.keystore import build_selector
from gatehouse.mailer.settings import load_mailer_settings

from .conftest import REDIS_URL, CapturingHandler, free_port, wait_for

pytestmark = pytest.mark.timeout(120)

TOKEN = "6051937"


class TlsHandler(CapturingHandler):
    """Keeps each mail with whether its session ran over TLS."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions_with_tls: list[bool] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd API
        # STARTTLS sets session.ssl, while implicit TLS shows on the transport.
        implicit = server.transport.get_extra_info("ssl_object") is not None
        self.sessions_with_tls.append(session.ssl is not None or implicit)
        return await super().handle_DATA(server, session, envelope)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def make_ca(folder: Path, common_name: str):
    """Create a self-signed CA and return its key, certificate and PEM file path."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    path = folder / f"{common_name}.pem"
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key, certificate, path


def make_server_context(folder: Path, ca_key, ca_certificate) -> ssl.SSLContext:
    """Return a server context with a certificate for 127.0.0.1 signed by the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    certificate_path = folder / "server.pem"
    key_path = folder / "server.key"
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate_path, key_path)
    return context


@pytest.fixture
def certificates(short_tmp):
    folder = short_tmp / "tls"
    folder.mkdir()
    ca_key, ca_certificate, ca_path = make_ca(folder, "test-smtp-ca")
    _other_key, _other_certificate, other_ca_path = make_ca(folder, "unrelated-ca")
    context = make_server_context(folder, ca_key, ca_certificate)
    return {"server_context": context, "ca": ca_path, "other_ca": other_ca_path}


class TlsSmtpServer:
    """aiosmtpd on loopback, with STARTTLS required or with implicit TLS."""

    def __init__(self, context: ssl.SSLContext, implicit: bool) -> None:
        self.handler = TlsHandler()
        self.port = free_port()
        if implicit:
            self.controller = Controller(
                self.handler, hostname="127.0.0.1", port=self.port, ssl_context=context
            )
        else:
            self.controller = Controller(
                self.handler,
                hostname="127.0.0.1",
                port=self.port,
                tls_context=context,
                require_starttls=True,
            )
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


@pytest.fixture
def starttls_server(certificates):
    server = TlsSmtpServer(certificates["server_context"], implicit=False)
    yield server
    server.stop()


@pytest.fixture
def implicit_tls_server(certificates):
    server = TlsSmtpServer(certificates["server_context"], implicit=True)
    yield server
    server.stop()


def token_job() -> MailJob:
    return MailJob(
        kind="token",
        to="erin@example.test",
        agent_id=12,
        first_name="Erin",
        params={"token": TOKEN, "ttl_seconds": 600},
    )


def deliver(job: MailJob):
    settings = load_mailer_settings()
    processor = build_processor(
        settings, redis.Redis.from_url(REDIS_URL), build_selector(settings)
    )
    return processor.process(processor.cipher.seal(job), {}, job.message_id)


def point_at(monkeypatch, port: int, mode: str, ca_file: Path | None) -> None:
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(port))
    monkeypatch.setenv("SMTP_TLS", mode)
    if ca_file is not None:
        monkeypatch.setenv("SMTP_CA_FILE", str(ca_file))


# --- settings -----------------------------------------------------------------


def test_tls_off_by_default_in_development(mail_env):
    assert load_mailer_settings().smtp_tls == "off"


def test_starttls_by_default_in_production(mail_env):
    production = replace(load_settings(), environment="production")
    settings = load_mailer_settings(production)
    assert settings.smtp_tls == "starttls"
    assert settings.smtp_port == 25


def test_implicit_tls_default_port(mail_env, monkeypatch):
    monkeypatch.setenv("SMTP_TLS", "implicit")
    assert load_mailer_settings().smtp_port == 465


def test_explicit_opt_out_in_production(mail_env, monkeypatch):
    monkeypatch.setenv("SMTP_TLS", "off")
    production = replace(load_settings(), environment="production")
    assert load_mailer_settings(production).smtp_tls == "off"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SMTP_TLS", "maybe", "SMTP_TLS='maybe' is invalid"),
        ("SMTP_STARTTLS", "off", "SMTP_STARTTLS is no longer read"),
        ("SMTP_CA_FILE", "/nonexistent/ca.pem", "SMTP_CA_FILE="),
    ],
)
def test_tls_settings_rejected(mail_env, monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        load_mailer_settings()


# --- delivery -----------------------------------------------------------------


def test_starttls_delivery_with_ca_file(
    mail_env, monkeypatch, starttls_server, certificates
):
    point_at(monkeypatch, starttls_server.port, "starttls", certificates["ca"])

    outcome = deliver(token_job())

    assert outcome.action == ACK, outcome.reason
    assert starttls_server.handler.sessions_with_tls == [True]
    assert len(starttls_server.handler.messages) == 1


def test_starttls_wrong_ca_retried(
    mail_env, monkeypatch, starttls_server, certificates
):
    point_at(monkeypatch, starttls_server.port, "starttls", certificates["other_ca"])

    outcome = deliver(token_job())

    assert outcome.action == RETRY
    assert "CERTIFICATE_VERIFY_FAILED" in outcome.reason
    assert starttls_server.handler.messages == []


def test_starttls_without_ca_file_uses_system_store(
    mail_env, monkeypatch, starttls_server
):
    point_at(monkeypatch, starttls_server.port, "starttls", None)

    outcome = deliver(token_job())

    assert outcome.action == RETRY
    assert "CERTIFICATE_VERIFY_FAILED" in outcome.reason
    assert starttls_server.handler.messages == []


def test_server_without_starttls_not_sent_plain(mail_env, monkeypatch, smtp_server):
    point_at(monkeypatch, smtp_server.port, "starttls", None)

    outcome = deliver(token_job())

    assert outcome.action == RETRY
    assert "STARTTLS" in outcome.reason
    assert smtp_server.handler.attempts == 0


def test_implicit_tls_delivery(
    mail_env, monkeypatch, implicit_tls_server, certificates
):
    point_at(monkeypatch, implicit_tls_server.port, "implicit", certificates["ca"])

    outcome = deliver(token_job())

    assert outcome.action == ACK, outcome.reason
    assert implicit_tls_server.handler.sessions_with_tls == [True]


def test_implicit_tls_wrong_ca_retried(
    mail_env, monkeypatch, implicit_tls_server, certificates
):
    point_at(
        monkeypatch, implicit_tls_server.port, "implicit", certificates["other_ca"]
    )

    outcome = deliver(token_job())

    assert outcome.action == RETRY
    assert implicit_tls_server.handler.messages == []


def test_wrong_ca_job_kept_until_fixed(
    mail_env, monkeypatch, starttls_server, certificates, mailer_process
):
    """The mailer process retries a job it cannot deliver over verified TLS, and
    a mailer started with the right CA delivers that same job."""
    from .test_faults import publish, queue_depth

    point_at(monkeypatch, starttls_server.port, "starttls", certificates["other_ca"])
    wrong = mailer_process()
    wrong.wait_consuming()
    job = token_job()
    publish(mail_env, [job])
    wait_for(
        lambda: "mailer.retry_scheduled" in wrong.log(),
        20,
        message=f"no retry scheduled:\n{wrong.log()}",
    )
    assert wrong.terminate() == 0
    assert starttls_server.handler.messages == []

    right = mailer_process(SMTP_CA_FILE=str(certificates["ca"]))
    right.wait_consuming()
    wait_for(
        lambda: len(starttls_server.handler.messages) == 1,
        30,
        message=f"job not delivered after the fix:\n{right.log()}",
    )
    assert starttls_server.handler.sessions_with_tls == [True]
    assert "CERTIFICATE_VERIFY_FAILED" in wrong.log()
    assert TOKEN not in wrong.log() + right.log()
    assert right.terminate() == 0
    assert queue_depth(mail_env, f"{mail_env['GATEHOUSE_AMQP_PREFIX']}.mail.dead") == 0
