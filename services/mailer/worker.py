"""The mailer process: consume mail jobs from RabbitMQ and deliver them.

One AMQP connection per process, owned by the main thread, which runs the I/O
loop (heartbeats included). SMTP work runs on a thread pool as large as the
prefetch count. Each result comes back to the I/O thread through
``connection.add_callback_threadsafe`` because pika connections are not
thread-safe. A message is acked only after the SMTP server accepted the mail,
or after it was moved to a delay queue or the dead-letter queue with a
publisher confirm.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import pika
import pika.exceptions
import redis
from gatehouse.common.config import ConfigError
from gatehouse.common.logs import bind_request_id, configure_logging
from gatehouse.common.mail import Topology
from gatehouse.common.redis_store import connect

from .delivery import ACK, RETRY, MailProcessor, Outcome, build_processor
from .interfaces import KeyStoreError
from .keystore import build_selector
from .settings import MailerSettings, load_mailer_settings

log = logging.getLogger(__name__)

ATTEMPT_HEADER = "x-gatehouse-attempt"
ERROR_HEADER = "x-gatehouse-error"
ALIVE_KEY = "mail:alive"
ALIVE_INTERVAL_SECONDS = 5
ALIVE_TTL_SECONDS = 15
MAX_RECONNECT_DELAY_SECONDS = 30


class MailConsumer:
    def __init__(
        self,
        settings: MailerSettings,
        processor: MailProcessor,
        redis_client: redis.Redis,
    ) -> None:
        self.settings = settings
        self.processor = processor
        self.redis = redis_client
        self.topology = Topology(settings.common.amqp_prefix)
        self.delays = list(settings.retry_delays)
        self.executor = ThreadPoolExecutor(
            max_workers=settings.prefetch, thread_name_prefix="mail-delivery"
        )
        self.stopping = threading.Event()
        self.consuming = threading.Event()
        self.in_flight: dict[int, str] = {}

    def stop(self, signum: int | None = None, frame=None) -> None:
        """Ask the loop to stop; safe to call from a signal handler."""
        self.stopping.set()

    def run(self) -> int:
        """Consume until stopped, reconnecting with exponential backoff."""
        alive = threading.Thread(
            target=self._refresh_alive, name="mail-alive", daemon=True
        )
        alive.start()
        delay = 1.0
        while not self.stopping.is_set():
            try:
                self._consume()
                delay = 1.0
            except (pika.exceptions.AMQPError, OSError) as error:
                log.warning("mailer.connection_lost", extra={"error": repr(error)})
            finally:
                self.consuming.clear()
            if self.stopping.is_set():
                break
            log.info("mailer.reconnect", extra={"delay_seconds": delay})
            self.stopping.wait(delay)
            delay = min(delay * 2, MAX_RECONNECT_DELAY_SECONDS)
        self.executor.shutdown(wait=True)
        return 0

    def _parameters(self) -> pika.URLParameters:
        parameters = pika.URLParameters(self.settings.common.amqp_url)
        parameters.heartbeat = self.settings.heartbeat
        parameters.client_properties = {
            "connection_name": self.settings.connection_name
        }
        parameters.connection_attempts = 1
        parameters.socket_timeout = 5
        parameters.blocked_connection_timeout = 60
        return parameters

    def _consume(self) -> None:
        connection = pika.BlockingConnection(self._parameters())
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            self.topology.declare(channel)
            self.topology.declare_retry_queues(channel, self.delays)
            channel.basic_qos(prefetch_count=self.settings.prefetch)
            on_message = functools.partial(self._on_message, connection)
            consumer_tag = channel.basic_consume(self.topology.queue, on_message)
            self.in_flight.clear()
            self.consuming.set()
            log.info(
                "mailer.consuming",
                extra={
                    "queue": self.topology.queue,
                    "prefetch": self.settings.prefetch,
                },
            )
            while not self.stopping.is_set():
                connection.process_data_events(time_limit=1)
            self.consuming.clear()
            self._drain(connection, channel, consumer_tag)
        finally:
            if connection.is_open:
                try:
                    connection.close()
                except pika.exceptions.AMQPError:
                    pass

    def _on_message(self, connection, channel, method, properties, body) -> None:
        headers = properties.headers or {}
        self.in_flight[method.delivery_tag] = properties.message_id or ""
        future = self.executor.submit(
            self.processor.process, body, headers, properties.message_id
        )
        finish = functools.partial(self._finish, channel, method, properties, body)

        def hand_back(done: Future) -> None:
            try:
                connection.add_callback_threadsafe(functools.partial(finish, done))
            except pika.exceptions.AMQPError:
                # The connection is gone; the broker redelivers the message and
                # the sent log keeps a delivered mail from going out twice.
                log.warning(
                    "mailer.result_dropped", extra={"message_id": properties.message_id}
                )

        future.add_done_callback(hand_back)

    def _finish(self, channel, method, properties, body, done: Future) -> None:
        try:
            self._settle(channel, method, properties, body, done)
        finally:
            bind_request_id(None)

    def _settle(self, channel, method, properties, body, done: Future) -> None:
        tag = method.delivery_tag
        if self.in_flight.pop(tag, None) is None or not channel.is_open:
            return
        try:
            outcome = done.result()
        except Exception as error:  # noqa: BLE001 - a bug must not kill the loop
            log.exception("mailer.process_crashed", extra={"error": repr(error)})
            outcome = Outcome(RETRY, f"internal error: {error!r}")
        bind_request_id(outcome.request_id)
        fields = {"message_id": outcome.message_id or properties.message_id}

        if outcome.action == ACK:
            channel.basic_ack(tag)
            return
        headers = dict(properties.headers or {})
        attempt = int(headers.get(ATTEMPT_HEADER) or 0) + 1
        if outcome.action == RETRY and attempt <= len(self.delays):
            delay = self.delays[attempt - 1]
            headers[ATTEMPT_HEADER] = attempt
            headers[ERROR_HEADER] = outcome.reason[:200]
            log.warning(
                "mailer.retry_scheduled",
                extra={
                    **fields,
                    "attempt": attempt,
                    "delay_seconds": delay,
                    "reason": outcome.reason,
                },
            )
            self._republish(
                channel,
                tag,
                "",
                self.topology.retry_queue(delay),
                properties,
                headers,
                body,
            )
            return
        reason = outcome.reason
        if outcome.action == RETRY:
            reason = f"retry limit of {len(self.delays)} reached: {outcome.reason}"
        headers[ERROR_HEADER] = reason[:200]
        log.error("mailer.dead_lettered", extra={**fields, "reason": reason})
        self._republish(
            channel, tag, self.topology.dead_exchange, "", properties, headers, body
        )

    def _republish(
        self, channel, tag, exchange, routing_key, properties, headers, body
    ) -> None:
        """Publish a copy with a confirm, then ack the original."""
        copy = pika.BasicProperties(
            content_type=properties.content_type,
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=properties.message_id,
            timestamp=properties.timestamp,
            headers=headers,
        )
        try:
            channel.basic_publish(
                exchange, routing_key, body, properties=copy, mandatory=True
            )
        except (pika.exceptions.NackError, pika.exceptions.UnroutableError) as error:
            log.error(
                "mailer.republish_failed",
                extra={"message_id": properties.message_id, "error": repr(error)},
            )
            channel.basic_nack(tag, requeue=True)
            return
        channel.basic_ack(tag)

    def _drain(self, connection, channel, consumer_tag) -> None:
        """Stop taking messages, let in-flight ones finish, requeue the rest."""
        channel.basic_cancel(consumer_tag)
        deadline = time.monotonic() + self.settings.shutdown_grace_seconds
        while self.in_flight and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.2)
        for tag, message_id in list(self.in_flight.items()):
            log.warning("mailer.requeued_on_stop", extra={"message_id": message_id})
            channel.basic_nack(tag, requeue=True)
        self.in_flight.clear()

    def _refresh_alive(self) -> None:
        key = self.settings.common.redis_prefix + ALIVE_KEY
        value = json.dumps({"host": socket.gethostname(), "pid": os.getpid()})
        while not self.stopping.is_set():
            if self.consuming.is_set():
                try:
                    self.redis.set(key, value, ex=ALIVE_TTL_SECONDS)
                except redis.RedisError as error:
                    log.warning("mailer.alive_failed", extra={"error": repr(error)})
            # Poll faster until consuming starts, so readiness shows up at once.
            interval = ALIVE_INTERVAL_SECONDS if self.consuming.is_set() else 0.5
            self.stopping.wait(interval)


def check_alive(settings: MailerSettings, client: redis.Redis) -> int:
    """Return 0 when a mailer consumed within the last ALIVE_TTL_SECONDS, else 1."""
    try:
        alive = client.exists(settings.common.redis_prefix + ALIVE_KEY)
    except redis.RedisError as error:
        print(f"gatehouse-mailer: Redis unreachable: {error}", file=sys.stderr)
        return 1
    if not alive:
        print("gatehouse-mailer: no mailer is consuming", file=sys.stderr)
        return 1
    print("ok")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gatehouse-mailer",
        description="Consume gatehouse mail jobs from RabbitMQ and deliver them.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 0 if a mailer is consuming (its heartbeat key is in Redis), else 1",
    )
    arguments = parser.parse_args(argv)
    try:
        settings = load_mailer_settings()
    except ConfigError as error:
        print(f"gatehouse-mailer: {error}", file=sys.stderr)
        return 2
    configure_logging("mailer", settings.common.log_format)
    redis_client = connect(settings.common.redis_url)
    if arguments.check:
        return check_alive(settings, redis_client)

    try:
        selector = build_selector(settings)
    except KeyStoreError as error:
        log.error("mailer.keystore_failed", extra={"error": str(error)})
        print(f"gatehouse-mailer: {error}", file=sys.stderr)
        return 2
    processor = build_processor(settings, redis_client, selector)
    consumer = MailConsumer(settings, processor, redis_client)
    signal.signal(signal.SIGTERM, consumer.stop)
    signal.signal(signal.SIGINT, consumer.stop)

    log.info(
        "mailer.started",
        extra={
            "pid": os.getpid(),
            "delivery": "smtp" if settings.smtp_host else "mailbox",
            "smtp_tls": settings.smtp_tls,
            "pgp": settings.pgp_enabled,
            "smime": settings.smime_enabled,
            "retry_delays": list(settings.retry_delays),
        },
    )
    if (
        settings.smtp_host
        and settings.smtp_tls == "off"
        and not settings.common.development
    ):
        # SMTP_TLS=off is the opt-out for a relay on the same host or network.
        log.warning(
            "mailer.smtp_plain_text",
            extra={"smtp_host": settings.smtp_host, "smtp_port": settings.smtp_port},
        )
    code = consumer.run()
    log.info("mailer.stopped", extra={"pid": os.getpid()})
    return code


if __name__ == "__main__":
    sys.exit(main())
