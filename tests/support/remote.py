"""Run the functional suite against a stack started elsewhere (docker compose).

Set ``GATEHOUSE_TARGET_URL`` to the gateway, ``GATEHOUSE_AGENTCTL`` to the command
that runs agentctl there (for example ``docker compose exec -T identity agentctl``),
and ``GATEHOUSE_MAILPIT_URL`` to the mail catcher's web address. The tests then
read mails through Mailpit's HTTP API instead of the local SMTP server.
"""

from __future__ import annotations

import email
import email.policy
import os
import shlex
import subprocess
import time
from collections.abc import Callable

import requests

from .smtp import ReceivedMail


class RemoteStack:
    remote = True

    def __init__(self) -> None:
        self.url = os.environ["GATEHOUSE_TARGET_URL"].rstrip("/")
        self._agentctl = shlex.split(os.environ.get("GATEHOUSE_AGENTCTL", "agentctl"))

    def agentctl(
        self, *arguments: str, check: bool = False, extra_env: dict | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self._agentctl, *arguments],
            capture_output=True,
            text=True,
            timeout=120,
            check=check,
        )

    def stop(self) -> None:
        """Leave the stack running: the tool that started it also stops it."""


class MailpitMailbox:
    """The ``SmtpSink`` interface over Mailpit's HTTP API."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._cache: dict[str, ReceivedMail] = {}

    def _fetch_all(self) -> list[ReceivedMail]:
        listing = requests.get(
            f"{self.base_url}/api/v1/messages?limit=1000", timeout=10
        ).json()
        mails = []
        # Mailpit lists the newest first; tests expect arrival order.
        for summary in reversed(listing.get("messages", [])):
            identifier = summary["ID"]
            if identifier not in self._cache:
                raw = requests.get(
                    f"{self.base_url}/api/v1/message/{identifier}/raw", timeout=10
                ).content
                message = email.message_from_bytes(raw, policy=email.policy.default)
                recipients = [entry["Address"] for entry in summary.get("To", [])]
                self._cache[identifier] = ReceivedMail("", recipients, raw, message)
            mails.append(self._cache[identifier])
        return mails

    def mails_to(self, address: str) -> list[ReceivedMail]:
        return [
            mail
            for mail in self._fetch_all()
            if address.lower() in (r.lower() for r in mail.recipients)
        ]

    def wait_for(
        self,
        address: str,
        count: int = 1,
        timeout: float = 30.0,
        matching: Callable[[ReceivedMail], bool] | None = None,
    ) -> list[ReceivedMail]:
        deadline = time.monotonic() + timeout
        while True:
            mails = [
                mail
                for mail in self.mails_to(address)
                if matching is None or matching(mail)
            ]
            if len(mails) >= count:
                return mails
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"expected {count} mail(s) to {address} within "
                    f"{timeout} s, got {len(mails)}"
                )
            time.sleep(0.5)

    def stop(self) -> None:
        """Mailpit outlives the tests."""
