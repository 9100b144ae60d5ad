"""An SMTP server on loopback that keeps every accepted message for the tests."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage

from aiosmtpd.controller import Controller


@dataclass
class ReceivedMail:
    envelope_from: str
    recipients: list[str]
    raw: bytes
    message: EmailMessage


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd API
        message = email.message_from_bytes(
            envelope.original_content or envelope.content, policy=email.policy.default
        )
        self.sink._add(
            ReceivedMail(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.original_content or envelope.content,
                message,
            )
        )
        return "250 Message accepted"


class SmtpSink:
    """Start with ``start()``; ``wait_for`` blocks until mail for an address comes."""

    def __init__(self) -> None:
        self._mails: list[ReceivedMail] = []
        self._condition = threading.Condition()
        self._controller: Controller | None = None
        self.port = 0

    def start(self) -> SmtpSink:
        # aiosmtpd connects to its own port to check it started, so it needs a
        # real port number rather than 0.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._controller = Controller(
            _Handler(self), hostname="127.0.0.1", port=self.port
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller:
            self._controller.stop()

    def _add(self, mail: ReceivedMail) -> None:
        with self._condition:
            self._mails.append(mail)
            self._condition.notify_all()

    def mails_to(self, address: str) -> list[ReceivedMail]:
        with self._condition:
            return [
                m
                for m in self._mails
                if address.lower() in (r.lower() for r in m.recipients)
            ]

    def wait_for(
        self,
        address: str,
        count: int = 1,
        timeout: float = 20.0,
        matching: Callable[[ReceivedMail], bool] | None = None,
    ) -> list[ReceivedMail]:
        """Return the first ``count`` mails to ``address`` that ``matching``
        accepts; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                mails = [
                    m
                    for m in self._mails
                    if address.lower() in (r.lower() for r in m.recipients)
                    and (matching is None or matching(m))
                ]
                if len(mails) >= count:
                    return mails
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"expected {count} mail(s) to {address} within {timeout} s, "
                        f"got {len(mails)}"
                    )
                self._condition.wait(remaining)
