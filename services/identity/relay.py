"""The relay that hands outbox rows to RabbitMQ, one background thread per process.

Every identity process runs a relay. A relay claims a row with a lease before it
works on it, so two relays never work on the same row at the same time. The rows
of a process that died are taken over once their lease has ended.

NOTE: a mail can still be published twice. That happens when a process dies
after the broker confirmed the job but before it deleted the row, or when a
relay stalls past its lease. Both copies carry the row's message id, so the
mailer's duplicate check normally drops the second one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta

from gatehouse.common.internal import ServiceClient, ServiceUnavailable
from gatehouse.common.logs import bind_request_id
from gatehouse.common.mail import (
    KIND_NOTICE,
    KIND_PASSWORD_RESET,
    MailJob,
    MailPublisher,
    PublishFailed,
)
from sqlalchemy.orm import sessionmaker

from .agents import AgentService
from .audit import SqlAuditLog
from .interfaces import AgentNotFound
from .models import MailOutboxRow, utcnow
from .outbox import KIND_RESET_REQUEST, SqlMailOutbox
from .resets import SqlResetStore

log = logging.getLogger(__name__)

# Waits in seconds between publish attempts of one row. The last one repeats
# until the broker takes the job, so a broker outage delays a mail but never
# drops it.
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
# Well above one claim-and-publish (an OTP call of at most 3 s and a publish of
# two connection attempts with 5 s socket timeouts). A relay stalled for longer,
# for example by a database lock, loses its lease and may cause a duplicate.
DEFAULT_LEASE_SECONDS = 120
POLL_INTERVAL_SECONDS = 1.0
BATCH_SIZE = 50


class MailRelay:
    """Relays due outbox rows to RabbitMQ and deletes each after its confirm."""

    def __init__(
        self,
        store: SqlMailOutbox,
        publisher: MailPublisher,
        otp_client: ServiceClient | None,
        agents: AgentService,
        resets: SqlResetStore,
        reset_ttl: int,
        audit: SqlAuditLog,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self._otp = otp_client
        self._agents = agents
        self._resets = resets
        self._reset_ttl = reset_ttl
        self._audit = audit
        self._sessions: sessionmaker = agents.repository.session_factory
        self._retry_delays = tuple(retry_delays) or (1.0,)
        self._lease = timedelta(seconds=lease_seconds)
        self.owner = uuid.uuid4().hex
        self._wakeup = threading.Event()
        self._enabled = False
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the relay thread; again after a fork, which threads do not
        survive (gunicorn may build the app in its master)."""
        with self._lock:
            self._enabled = True
            if (
                self._thread is not None
                and self._pid == os.getpid()
                and self._thread.is_alive()
            ):
                return
            self._pid = os.getpid()
            self.owner = uuid.uuid4().hex
            self._thread = threading.Thread(
                target=self._run, name="identity-mail-relay", daemon=True
            )
            self._thread.start()
            log.info("identity.mail_relay_started", extra={"owner": self.owner})

    def wake(self) -> None:
        """Ask a running relay thread to look for rows now instead of at its next
        poll; without a thread (tests), rows wait for drain()."""
        if self._enabled:
            self.start()
            self._wakeup.set()

    def _run(self) -> None:
        while True:
            self._wakeup.wait(POLL_INTERVAL_SECONDS)
            self._wakeup.clear()
            try:
                self.relay_once()
            except Exception:
                # Database outages land here; the rows stay and the next poll
                # tries again.
                log.exception("identity.mail_relay_failed")

    def relay_once(self) -> int:
        """Relay every row that is due and not leased; return how many were
        handled (published, dropped or rescheduled)."""
        handled = 0
        for row_id in self.store.due_ids(BATCH_SIZE):
            row = self.store.claim(row_id, self.owner, self._lease)
            if row is None:
                continue
            bind_request_id(row.request_id)
            try:
                self._relay(row)
            except Exception as error:  # noqa: BLE001 - logged; the batch goes on
                self._row_failed(row, error)
            finally:
                bind_request_id(None)
            handled += 1
        return handled

    def _row_failed(self, row: MailOutboxRow, error: Exception) -> None:
        """Log a row that raised and retry it after the next delay, so a row that
        can never be sent (bad payload) neither stops the batch nor spins."""
        log.exception(
            "identity.mail_row_failed",
            extra={
                "row_id": row.id,
                "kind": row.kind,
                "attempt": row.attempts + 1,
                "error": type(error).__name__,
            },
        )
        delay = self._retry_delays[min(row.attempts + 1, len(self._retry_delays)) - 1]
        self.store.retry_later(row.id, self.owner, utcnow() + timedelta(seconds=delay))

    def drain(self, timeout: float) -> bool:
        """Relay rows in this thread until the outbox is empty; return False
        when rows are left after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.store.count():
            if time.monotonic() >= deadline:
                log.warning(
                    "identity.outbox_not_drained", extra={"pending": self.store.count()}
                )
                return False
            if not self.relay_once():
                time.sleep(0.02)
        return True

    def _relay(self, row: MailOutboxRow) -> None:
        if row.kind == KIND_RESET_REQUEST:
            row = self._issue_reset(row)
            if row is None:
                return
        try:
            agent = self._agents.repository.get(row.agent_id)
        except AgentNotFound:
            log.warning(
                "identity.mail_agent_gone",
                extra={"agent_id": row.agent_id, "kind": row.kind},
            )
            self.store.delete(row.id, self.owner)
            return

        job = self._build_job(row, agent)
        if job.expires_at is not None and job.expires_at <= time.time():
            log.error(
                "identity.mail_expired_unsent",
                extra={
                    "agent_id": agent.id,
                    "kind": job.kind,
                    "attempts": row.attempts,
                },
            )
            self.store.delete(row.id, self.owner)
            return
        self._publish(row, job)

    def _issue_reset(self, row: MailOutboxRow) -> MailOutboxRow | None:
        """Look the requested login up; for a known agent, store a reset token and
        turn the row into its reset mail in one transaction."""
        payload = row.payload
        agent = self._agents.repository.find_by_login(payload["login"])
        if agent is None:
            self.store.delete(row.id, self.owner)
            return None

        with self._sessions.begin() as session:
            token = self._resets.issue(agent, self._reset_ttl, session=session)
            replaced = self.store.replace_with_reset_mail(
                session,
                row.id,
                self.owner,
                agent.id,
                payload["reset_url_base"] + token,
                time.time() + self._reset_ttl,
            )
            if not replaced:
                # Another relay took the row over after this one's lease ended.
                # Storing this token would kill the link that relay mails.
                session.rollback()
                log.warning(
                    "identity.mail_lease_lost",
                    extra={"row_id": row.id, "kind": row.kind, "agent_id": agent.id},
                )
                return None
        self._audit.record(
            "password_reset_requested",
            agent.id,
            None,
            payload.get("user_agent"),
            ip_hash=payload.get("ip_hash"),
        )
        with self._sessions() as session:
            return session.get(MailOutboxRow, row.id)

    def _build_job(self, row: MailOutboxRow, agent) -> MailJob:
        common = {
            "to": agent.email,
            "agent_id": agent.id,
            "first_name": agent.first_name,
            "email_security": self.email_security(agent.id),
            "message_id": row.message_id,
            "request_id": row.request_id,
        }
        if row.kind == KIND_PASSWORD_RESET:
            return MailJob(
                kind=KIND_PASSWORD_RESET,
                params={
                    "link": self.store.reset_link(row.payload),
                    "ttl_seconds": self._reset_ttl,
                },
                expires_at=row.payload["expires_at"],
                **common,
            )
        return MailJob(kind=KIND_NOTICE, params=row.payload["params"], **common)

    def _publish(self, row: MailOutboxRow, job: MailJob) -> None:
        try:
            self.publisher.publish(job)
        except PublishFailed as error:
            self._retry_later(row, job, error)
            return
        self.store.delete(row.id, self.owner)

    def _retry_later(self, row: MailOutboxRow, job: MailJob, error: Exception) -> None:
        attempt = row.attempts + 1
        delay = self._retry_delays[min(attempt, len(self._retry_delays)) - 1]
        self.store.retry_later(row.id, self.owner, utcnow() + timedelta(seconds=delay))
        extra = {
            "agent_id": job.agent_id,
            "kind": job.kind,
            "message_id": job.message_id,
            "attempt": attempt,
            "retry_in": delay,
            "error": str(error),
        }
        if attempt >= len(self._retry_delays):
            # Every attempt from here on is logged at ERROR, at most one per
            # last retry delay.
            log.error("identity.mail_publish_failed", extra=extra)
        else:
            log.warning("identity.mail_publish_retry", extra=extra)

    def email_security(self, agent_id: int) -> bool:
        """Return the agent's "encrypt mail when a key exists" choice from OTP.

        When OTP is unreachable or returns no valid choice, the result is True
        (encrypt when a key exists), the safer of the two guesses.
        """
        if self._otp is None:
            return True
        try:
            response = self._otp.get(f"/v1/factors/{agent_id}")
        except ServiceUnavailable as error:
            log.warning(
                "identity.otp_unavailable",
                extra={"agent_id": agent_id, "error": str(error)},
            )
            return True
        value = response.body.get("email_security") if response.status == 200 else None
        if not isinstance(value, bool):
            log.warning(
                "identity.otp_factor_unknown",
                extra={"agent_id": agent_id, "status": response.status},
            )
            return True
        return value
