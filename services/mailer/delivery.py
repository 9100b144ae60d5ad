"""Turn one queued mail job into one delivered mail.

The Redis sent log makes a redelivered job go out at most once, except when the
process dies between the SMTP server's accept and the Redis write.

``MailProcessor.process`` never raises for a bad job or a failed delivery: it
returns an ``Outcome`` that tells the consumer to ack, retry later or
dead-letter the message. It runs on a worker thread, away from the AMQP
connection's I/O loop.
"""

from __future__ import annotations

import functools
import logging
import os
import smtplib
import ssl
import tempfile
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import redis
from gatehouse.common.logs import bind_request_id, clean_request_id
from gatehouse.common.mail import (
    InvalidMailJob,
    MailJob,
    MailJobCipher,
    UnreadableMailJob,
)

from .encrypt import pgp_mime, smime_envelope
from .interfaces import (
    EncryptionFailed,
    KeyStoreError,
    PermanentDeliveryError,
    SentLog,
    TransientDeliveryError,
    Transport,
)
from .keystore import KeySelector
from .render import render_text, set_headers, text_part
from .settings import MailerSettings

log = logging.getLogger(__name__)

ACK = "ack"
RETRY = "retry"
DEAD = "dead"


@dataclass(frozen=True)
class Outcome:
    """The consumer's next step for a message: ack, retry or dead-letter."""

    action: str
    reason: str = ""
    message_id: str | None = None
    request_id: str | None = None


class SmtpTransport:
    """Delivery over SMTP, with the TLS mode that ``SMTP_TLS`` selects.

    With TLS the server's certificate and host name are verified against
    ``SMTP_CA_FILE``, or the system's CA store when that is unset. A failed
    handshake or a server without STARTTLS is a transient error, so the job is
    retried and then dead-lettered, never sent in plain text.
    """

    def __init__(self, settings: MailerSettings) -> None:
        self.settings = settings
        self.tls_context: ssl.SSLContext | None = None
        if settings.smtp_tls != "off":
            cafile = str(settings.smtp_ca_file) if settings.smtp_ca_file else None
            self.tls_context = ssl.create_default_context(cafile=cafile)

    def _connect(self) -> smtplib.SMTP:
        settings = self.settings
        if settings.smtp_tls == "implicit":
            return smtplib.SMTP_SSL(
                settings.smtp_host,
                settings.smtp_port,
                timeout=settings.smtp_timeout,
                context=self.tls_context,
            )
        return smtplib.SMTP(
            settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout
        )

    def send(self, message: EmailMessage, envelope_from: str, to: str) -> str:
        settings = self.settings
        data = message.as_bytes(policy=SMTP)
        try:
            client = self._connect()
        except (OSError, smtplib.SMTPException) as error:
            raise TransientDeliveryError(f"SMTP connect failed: {error!r}") from error
        try:
            client.ehlo()
            if settings.smtp_tls == "starttls":
                client.starttls(context=self.tls_context)
                client.ehlo()
            if settings.smtp_username:
                client.login(settings.smtp_username, settings.smtp_password or "")
            client.sendmail(envelope_from, [to], data)
        except smtplib.SMTPRecipientsRefused as error:
            code, _ = error.recipients.get(to, (450, b""))
            raise _classify(code, "SMTP server rejected the recipient with") from error
        except smtplib.SMTPAuthenticationError as error:
            # A 535 is a configuration problem, not the mail's: keep retrying.
            raise TransientDeliveryError(
                f"SMTP login failed ({error.smtp_code})"
            ) from error
        except smtplib.SMTPResponseException as error:
            raise _classify(error.smtp_code, "SMTP server replied") from error
        except (OSError, smtplib.SMTPException) as error:
            raise TransientDeliveryError(f"SMTP failed: {error!r}") from error
        finally:
            _close_quietly(client)
        return f"smtp://{settings.smtp_host}:{settings.smtp_port}"


def _classify(code: int, what: str) -> TransientDeliveryError | PermanentDeliveryError:
    if 500 <= code < 600:
        return PermanentDeliveryError(f"{what} {code}")
    return TransientDeliveryError(f"{what} {code}")


def _close_quietly(client: smtplib.SMTP) -> None:
    # The server has already accepted (or refused) the mail; an error while
    # saying QUIT must not turn an accepted mail into a retry.
    try:
        client.quit()
    except (OSError, smtplib.SMTPException):
        client.close()


class MailboxTransport:
    """Development delivery: each mail becomes a .eml file in the mailbox folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    def send(self, message: EmailMessage, envelope_from: str, to: str) -> str:
        name = time.strftime("%Y%m%dT%H%M%S") + f"-{message['Message-ID'].strip('<>')}"
        target = self.folder / f"{name.replace('/', '_')}.eml"
        try:
            descriptor, temporary = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(message.as_bytes(policy=SMTP))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except OSError as error:
            raise TransientDeliveryError(
                f"cannot write mailbox file: {error}"
            ) from error
        log.info("mailer.saved_to_mailbox", extra={"path": str(target)})
        return str(target)


class RedisSentLog:
    """Ids of accepted mails (``mail:sent:<id>``) and in-flight claims."""

    def __init__(
        self, client: redis.Redis, prefix: str, ttl_seconds: int, claim_seconds: int
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds
        self.claim_seconds = claim_seconds

    def _sent_key(self, message_id: str) -> str:
        return f"{self.prefix}mail:sent:{message_id}"

    def _claim_key(self, message_id: str) -> str:
        return f"{self.prefix}mail:sending:{message_id}"

    def was_sent(self, message_id: str) -> bool:
        return bool(self.client.exists(self._sent_key(message_id)))

    def claim(self, message_id: str) -> bool:
        """Return True if this process may send now; False while another one does."""
        return bool(
            self.client.set(
                self._claim_key(message_id), os.getpid(), nx=True, ex=self.claim_seconds
            )
        )

    def release(self, message_id: str) -> None:
        self.client.delete(self._claim_key(message_id))

    def mark_sent(self, message_id: str) -> None:
        self.client.set(
            self._sent_key(message_id), int(time.time()), ex=self.ttl_seconds
        )
        self.client.delete(self._claim_key(message_id))


def _request_id(value) -> str | None:
    # A malformed id (one with a line break, say) is replaced, never logged.
    return clean_request_id(value) if isinstance(value, str) and value else None


class MailProcessor:
    def __init__(
        self,
        settings: MailerSettings,
        transport: Transport,
        sent_log: SentLog,
        selector: KeySelector,
        cipher: MailJobCipher,
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.sent_log = sent_log
        self.selector = selector
        self.cipher = cipher

    def build_message(self, job: MailJob) -> tuple[EmailMessage, str | None]:
        """Render and, by the encryption rules, encrypt ``job``.

        Return the message and the method used ("pgp", "smime" or None). Raise
        PermanentDeliveryError for an invalid job, TransientDeliveryError when
        the key stores cannot be read.
        """
        subject, text = render_text(job, self.settings.product_name)
        inner = text_part(text)
        message, method = inner, None
        if job.email_security:
            message, method = self._encrypt(job, inner)
        set_headers(message, job, subject, self.settings)
        return message, method

    def _encrypt(self, job: MailJob, inner: EmailMessage):
        try:
            recipients = self.selector.recipients(job.to)
        except (KeyStoreError, OSError, ValueError) as error:
            # Sending plain text when a key may exist would break the person's
            # choice, so an unreadable store is a reason to retry later.
            raise TransientDeliveryError(f"key lookup failed: {error}") from error
        for recipient in recipients:
            try:
                if recipient.method == "pgp":
                    return pgp_mime(
                        inner, recipient, self.selector.stores["pgp"]
                    ), "pgp"
                return smime_envelope(inner, recipient), "smime"
            except EncryptionFailed as error:
                log.warning(
                    "mailer.encryption_failed",
                    extra={"method": recipient.method, "error": str(error)},
                )
        if recipients and self.settings.encryption_fallback == "dead-letter":
            raise PermanentDeliveryError("every encryption method failed")
        if recipients:
            log.warning(
                "mailer.plain_after_encryption_failure",
                extra={"methods": [r.method for r in recipients]},
            )
        return inner, None

    def process(
        self, body: bytes, headers: dict | None, fallback_id: str | None
    ) -> Outcome:
        """Deliver one queued message; return what to do with it."""
        try:
            return self._process(body, headers, fallback_id)
        finally:
            bind_request_id(None)

    def _process(
        self, body: bytes, headers: dict | None, fallback_id: str | None
    ) -> Outcome:
        header_request_id = _request_id((headers or {}).get("x-request-id"))
        try:
            job = self.cipher.open(body)
        except UnreadableMailJob as error:
            # Only the broker's message id is logged, because nothing inside
            # the body can be trusted or shown.
            log.error("mailer.job_unreadable", extra={"message_id": fallback_id})
            return Outcome(DEAD, str(error), fallback_id, header_request_id)
        except InvalidMailJob as error:
            return Outcome(
                DEAD, f"invalid job: {error}", fallback_id, header_request_id
            )
        request_id = _request_id(job.request_id) or header_request_id
        bind_request_id(request_id)
        outcome = functools.partial(
            Outcome, message_id=job.message_id, request_id=request_id
        )
        fields = {
            "message_id": job.message_id,
            "kind": job.kind,
            "agent_id": job.agent_id,
        }

        if not isinstance(job.email_security, bool):
            return outcome(DEAD, "invalid job: email_security is not a boolean")
        if job.expires_at is not None and (
            isinstance(job.expires_at, bool)
            or not isinstance(job.expires_at, int | float)
        ):
            return outcome(DEAD, "invalid job: expires_at is not a number")
        if job.expires_at is not None and job.expires_at < time.time():
            log.info("mailer.expired_dropped", extra=fields)
            return outcome(ACK, "expired")
        try:
            if self.sent_log.was_sent(job.message_id):
                log.info("mailer.duplicate_skipped", extra=fields)
                return outcome(ACK, "already sent")
            message, method = self.build_message(job)
            if not self.sent_log.claim(job.message_id):
                return outcome(RETRY, "another mailer is sending it")
        except PermanentDeliveryError as error:
            return outcome(DEAD, str(error))
        except TransientDeliveryError as error:
            return outcome(RETRY, str(error))
        except redis.RedisError as error:
            return outcome(RETRY, f"Redis unavailable: {error!r}")

        envelope_from = self.settings.from_address.addr_spec
        try:
            target = self.transport.send(message, envelope_from, job.to)
        except (PermanentDeliveryError, TransientDeliveryError) as error:
            self._release(job.message_id)
            permanent = isinstance(error, PermanentDeliveryError)
            return outcome(DEAD if permanent else RETRY, str(error))

        # The SMTP server has the mail now. If the process dies before this
        # write, a redelivery sends it again: the one window for a duplicate.
        self._mark_sent(job.message_id)
        log.info(
            "mailer.delivered",
            extra={**fields, "encryption": method or "none", "target": target},
        )
        return outcome(ACK, "delivered")

    def _release(self, message_id: str) -> None:
        try:
            self.sent_log.release(message_id)
        except redis.RedisError as error:
            log.warning(
                "mailer.claim_release_failed",
                extra={"message_id": message_id, "error": repr(error)},
            )

    def _mark_sent(self, message_id: str) -> None:
        for attempt in (1, 2, 3):
            try:
                self.sent_log.mark_sent(message_id)
                return
            except redis.RedisError as error:
                log.error(
                    "mailer.mark_sent_failed",
                    extra={
                        "message_id": message_id,
                        "attempt": attempt,
                        "error": repr(error),
                    },
                )
                time.sleep(0.2 * attempt)


def build_processor(
    settings: MailerSettings, redis_client: redis.Redis, selector: KeySelector
) -> MailProcessor:
    if settings.smtp_host:
        transport: Transport = SmtpTransport(settings)
    else:
        transport = MailboxTransport(settings.mailbox_dir)
    claim_seconds = int(settings.smtp_timeout * 2 + 5)
    sent_log = RedisSentLog(
        redis_client,
        settings.common.redis_prefix,
        settings.sent_ttl_seconds,
        claim_seconds,
    )
    cipher = MailJobCipher(settings.common.mail_job_keys)
    return MailProcessor(settings, transport, sent_log, selector, cipher)
