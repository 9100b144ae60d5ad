"""The mail job schema and its publisher, shared by the services that send mail.

A job names a kind of mail and its parameters; the mailer renders, encrypts and
delivers it. Jobs travel as persistent messages on a durable quorum queue. Each body
is the job's JSON sealed with Fernet under ``GATEHOUSE_MAIL_JOB_KEYS``, so tokens,
reset links and addresses never rest in the broker in plain text, and the mailer
accepts only jobs sealed by a holder of the key.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field

import pika
import pika.exceptions
from cryptography.fernet import InvalidToken, MultiFernet

from .config import load_settings, multi_fernet
from .logs import current_request_id

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
KIND_TOKEN = "token"
KIND_PASSWORD_RESET = "password_reset"
KIND_NOTICE = "notice"
KINDS = (KIND_TOKEN, KIND_PASSWORD_RESET, KIND_NOTICE)
ROUTING_KEY = "mail"
SEALED_CONTENT_TYPE = "application/vnd.gatehouse.mail-job+fernet"


class InvalidMailJob(ValueError):
    """A message body is not a valid mail job; the message names the field."""


class UnreadableMailJob(InvalidMailJob):
    """A sealed body opens with no configured key, or it was altered."""


@dataclass
class MailJob:
    """One mail to send.

    ``params`` per kind: token ``{"token", "ttl_seconds", "purpose"}``, password_reset
    ``{"link", "ttl_seconds"}``, notice ``{"event"}``. ``expires_at`` (Unix seconds)
    is when the mail becomes pointless; the mailer drops it after that time.
    """

    kind: str
    to: str
    agent_id: int
    first_name: str
    params: dict
    email_security: bool = False
    expires_at: float | None = None
    message_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_at: float = field(default_factory=time.time)
    request_id: str | None = field(default_factory=current_request_id)
    version: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, body: bytes) -> MailJob:
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InvalidMailJob(f"body is not JSON: {error}") from error
        if not isinstance(data, dict):
            raise InvalidMailJob("body is not a JSON object")
        if data.get("version") != SCHEMA_VERSION:
            raise InvalidMailJob(f"unsupported version {data.get('version')!r}")
        if data.get("kind") not in KINDS:
            raise InvalidMailJob(f"unknown kind {data.get('kind')!r}")
        for name, kind in (
            ("to", str),
            ("message_id", str),
            ("params", dict),
            ("agent_id", int),
            ("first_name", str),
        ):
            if not isinstance(data.get(name), kind):
                raise InvalidMailJob(
                    f"field {name!r} is missing or not a {kind.__name__}"
                )
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in data.items() if key in known})


def mail_job_cipher(keys: list[str]) -> MultiFernet:
    """Return the MultiFernet over the ``GATEHOUSE_MAIL_JOB_KEYS`` list."""
    return multi_fernet(
        "GATEHOUSE_MAIL_JOB_KEYS",
        keys,
        "identity, otp, agentctl and the mailer need the same comma list of "
        "Fernet keys, created with cryptography.fernet.Fernet.generate_key()",
    )


class MailJobCipher:
    """Seal and open job bodies with Fernet (AES-128-CBC and HMAC-SHA256).

    ``keys`` is the ``GATEHOUSE_MAIL_JOB_KEYS`` list, newest first: the first key
    seals, every key opens, so a key is rotated by adding the new one everywhere
    before it moves to the front.
    """

    def __init__(self, keys: list[str]) -> None:
        self._cipher = mail_job_cipher(keys)

    def seal(self, job: MailJob) -> bytes:
        return self._cipher.encrypt(job.to_json())

    def open(self, body: bytes) -> MailJob:
        """Return the job sealed in ``body``.

        Raise UnreadableMailJob when no key opens it, InvalidMailJob when the
        opened text is not a valid job.
        """
        try:
            plain = self._cipher.decrypt(body)
        except (InvalidToken, TypeError) as error:
            raise UnreadableMailJob(
                "no key in GATEHOUSE_MAIL_JOB_KEYS opens the sealed body; it was "
                "sealed under another key or altered"
            ) from error
        return MailJob.from_json(plain)


@dataclass(frozen=True)
class Topology:
    """Names of the exchanges and queues, all under one prefix."""

    prefix: str

    @property
    def exchange(self) -> str:
        return f"{self.prefix}.mail"

    @property
    def queue(self) -> str:
        return f"{self.prefix}.mail"

    @property
    def dead_exchange(self) -> str:
        return f"{self.prefix}.mail.dead"

    @property
    def dead_queue(self) -> str:
        return f"{self.prefix}.mail.dead"

    def retry_queue(self, delay_seconds: int) -> str:
        """Return the name of the queue where a message waits ``delay_seconds``.

        The delay is part of the name because RabbitMQ rejects a redeclaration with
        a different ``x-message-ttl``. Changing the configured delays therefore
        declares new queues, and the old ones drain on their own.
        """
        return f"{self.prefix}.mail.retry.{delay_seconds}s"

    def declare_retry_queues(self, channel, delays: list[int]) -> None:
        """Declare one delay queue per delay; each dead-letters back to the exchange.

        Only the mailer needs them, so publishers never call this. A message sits
        in the queue for its ``x-message-ttl``, then RabbitMQ dead-letters it to the
        main exchange with routing key ``mail``. ``at-least-once`` dead-lettering
        (quorum queues, RabbitMQ 3.10 and later) keeps the message until the main
        queue has confirmed it, so a broker restart cannot drop it in between.
        """
        for delay in sorted(set(delays)):
            channel.queue_declare(
                self.retry_queue(delay),
                durable=True,
                arguments={
                    "x-queue-type": "quorum",
                    "x-message-ttl": delay * 1000,
                    "x-dead-letter-exchange": self.exchange,
                    "x-dead-letter-routing-key": ROUTING_KEY,
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                },
            )

    def queue_names(self, delays: tuple[int, ...] | list[int] = ()) -> list[str]:
        """Return every queue name under the prefix (for clean-up in tests)."""
        retry = [self.retry_queue(delay) for delay in sorted(set(delays))]
        return [self.queue, self.dead_queue, *retry]

    def declare(self, channel) -> None:
        """Declare the main and dead-letter queues; safe to repeat."""
        channel.exchange_declare(self.exchange, "direct", durable=True)
        channel.exchange_declare(self.dead_exchange, "fanout", durable=True)
        channel.queue_declare(
            self.dead_queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        channel.queue_bind(self.dead_queue, self.dead_exchange)
        channel.queue_declare(
            self.queue,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-dead-letter-exchange": self.dead_exchange,
            },
        )
        channel.queue_bind(self.queue, self.exchange, routing_key=ROUTING_KEY)


class PublishFailed(RuntimeError):
    """The broker did not confirm a mail job; the mail was not queued."""


class MailPublisher:
    """Publish mail jobs with publisher confirms, one connection per process.

    The connection is opened lazily and reopened after a fork or a broker
    restart. A lock serialises publishes because pika's BlockingConnection is
    not thread-safe. Bodies are sealed with ``job_keys``, by default the
    ``GATEHOUSE_MAIL_JOB_KEYS`` of the shared settings.
    """

    def __init__(
        self, amqp_url: str, prefix: str, job_keys: list[str] | None = None
    ) -> None:
        self._url = amqp_url
        self.topology = Topology(prefix)
        if job_keys is None:
            job_keys = load_settings().mail_job_keys
        self._cipher = MailJobCipher(job_keys)
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._connection = None
        self._channel = None

    def _open(self) -> None:
        parameters = pika.URLParameters(self._url)
        parameters.connection_attempts = 2
        parameters.retry_delay = 0.5
        parameters.socket_timeout = 5
        parameters.blocked_connection_timeout = 10
        # A BlockingConnection sends heartbeats only while it is called, so an
        # idle publisher would be dropped by the broker after two missed beats and
        # log a reset at its next publish. Without heartbeats, TCP keepalive
        # notices a dead peer instead, and publish() reconnects once on failure.
        parameters.heartbeat = 0
        parameters.tcp_options = {
            "TCP_KEEPIDLE": 60,
            "TCP_KEEPINTVL": 10,
            "TCP_KEEPCNT": 3,
        }
        self._connection = pika.BlockingConnection(parameters)
        self._channel = self._connection.channel()
        self._channel.confirm_delivery()
        self.topology.declare(self._channel)
        self._pid = os.getpid()

    def _discard(self) -> None:
        if self._connection is not None and self._pid == os.getpid():
            try:
                self._connection.close()
            except pika.exceptions.AMQPError:
                pass
        self._connection = self._channel = None

    def publish(self, job: MailJob) -> None:
        """Queue ``job`` durably; raise PublishFailed unless the broker confirms."""
        properties = pika.BasicProperties(
            content_type=SEALED_CONTENT_TYPE,
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=job.message_id,
            timestamp=int(job.created_at),
            headers={"x-request-id": job.request_id or ""},
        )
        body = self._cipher.seal(job)
        with self._lock:
            for attempt in (1, 2):
                try:
                    if (
                        self._channel is None
                        or self._pid != os.getpid()
                        or not self._channel.is_open
                    ):
                        self._discard()
                        self._open()
                    self._channel.basic_publish(
                        self.topology.exchange,
                        ROUTING_KEY,
                        body,
                        properties=properties,
                        mandatory=True,
                    )
                    log.info(
                        "mail.queued",
                        extra={
                            "message_id": job.message_id,
                            "kind": job.kind,
                            "agent_id": job.agent_id,
                        },
                    )
                    return
                except (
                    pika.exceptions.UnroutableError,
                    pika.exceptions.NackError,
                ) as error:
                    raise PublishFailed(
                        f"broker rejected mail {job.message_id}: {error}"
                    ) from error
                except pika.exceptions.AMQPError as error:
                    log.warning(
                        "mail.publish_retry",
                        extra={
                            "message_id": job.message_id,
                            "attempt": attempt,
                            "error": repr(error),
                        },
                    )
                    self._discard()
                    if attempt == 2:
                        raise PublishFailed(
                            f"broker unreachable, mail {job.message_id} not queued"
                        ) from error

    def check(self) -> None:
        """Raise an AMQPError when the broker is unreachable (for /readyz)."""
        with self._lock:
            if (
                self._channel is None
                or self._pid != os.getpid()
                or not self._channel.is_open
            ):
                self._discard()
                self._open()
            self._connection.process_data_events(0)
