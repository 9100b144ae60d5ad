"""An aiosmtpd server on loopback that timestamps each accepted mail.

The accept time is taken when the DATA command completes, just before the server
returns 250, which is the moment the mailer may ack its job.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from dataclasses import dataclass
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller

# A token is a run of digits alone on its line in the text part.
TOKEN_LINE = re.compile(rb"^\s*(\d{6,10})\s*$", re.MULTILINE)


@dataclass
class AcceptedMail:
    accepted_at: float  # time.perf_counter() of the bench process
    recipients: list[str]
    content: bytes

    @property
    def content_type(self) -> str:
        return message_from_bytes(
            self.content, policy=policy.default
        ).get_content_type()

    def plain_token(self) -> str | None:
        message = message_from_bytes(self.content, policy=policy.default)
        part = message.get_body(preferencelist=("plain",))
        if part is None:
            return None
        match = TOKEN_LINE.search(part.get_content().encode())
        return match.group(1).decode() if match else None


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server, session, envelope):
        accepted_at = time.perf_counter()
        if self.sink.accept_delay:
            await asyncio.sleep(self.sink.accept_delay)
            accepted_at = time.perf_counter()
        mail = AcceptedMail(
            accepted_at,
            [r.lower() for r in envelope.rcpt_tos],
            envelope.original_content or envelope.content,
        )
        self.sink.record(mail)
        return "250 OK"


class SmtpSink:
    """Collect mails per recipient; ``wait_for`` blocks until one arrives."""

    def __init__(self) -> None:
        self.accept_delay = 0.0
        self.port: int | None = None
        self._condition = threading.Condition()
        self._by_recipient: dict[str, list[AcceptedMail]] = {}
        self.count = 0
        self._controller: Controller | None = None

    def start(self, port: int) -> None:
        self.port = port
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=port)
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def record(self, mail: AcceptedMail) -> None:
        with self._condition:
            for recipient in mail.recipients:
                self._by_recipient.setdefault(recipient, []).append(mail)
            self.count += 1
            self._condition.notify_all()

    def mails_for(self, address: str) -> list[AcceptedMail]:
        with self._condition:
            return list(self._by_recipient.get(address.lower(), []))

    def wait_for_count(
        self, address: str, count: int, timeout: float
    ) -> list[AcceptedMail]:
        """Return the mails to ``address`` once there are ``count``.

        Raise TimeoutError when they have not all arrived within ``timeout`` s.
        """
        deadline = time.monotonic() + timeout
        with self._condition:
            while len(self._by_recipient.get(address.lower(), [])) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no mail #{count} for {address} in {timeout} s")
                self._condition.wait(remaining)
            return list(self._by_recipient[address.lower()])

    def wait_for_total(self, total: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._condition:
            while self.count < total:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(remaining)
            return True
