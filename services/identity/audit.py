"""Audit events in SQL: who did what, when, from which (hashed) address."""

from __future__ import annotations

import json
import logging
import re
import threading
from datetime import UTC, datetime

import redis
from gatehouse.common.logs import current_request_id, hash_ip
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from .models import AuditEventRow, utcnow

log = logging.getLogger(__name__)

EVENT_PATTERN = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")
MAX_USER_AGENT_LENGTH = 256


class SqlAuditLog:
    def __init__(self, session_factory: sessionmaker, log_hash_key: str) -> None:
        self._sessions = session_factory
        self._log_hash_key = log_hash_key

    def record(
        self,
        event: str,
        agent_id: int | None,
        client_ip: str | None,
        user_agent: str | None,
        detail: dict | None = None,
        ip_hash: str | None = None,
    ) -> None:
        if client_ip:
            ip_hash = hash_ip(self._log_hash_key, client_ip)
        row = AuditEventRow(
            time=utcnow(),
            agent_id=agent_id,
            event=event,
            ip_hash=ip_hash,
            user_agent=(user_agent or "").replace("\x00", "")[:MAX_USER_AGENT_LENGTH]
            or None,
            request_id=current_request_id(),
            detail=detail or {},
        )
        with self._sessions.begin() as session:
            session.add(row)

    def list_for_agent(self, agent_id: int, limit: int) -> list[dict]:
        with self._sessions() as session:
            rows = session.scalars(
                select(AuditEventRow)
                .where(AuditEventRow.agent_id == agent_id)
                .order_by(AuditEventRow.time.desc(), AuditEventRow.id.desc())
                .limit(limit)
            )
            return [
                {
                    "time": row.time.isoformat(timespec="milliseconds") + "Z",
                    "event": row.event,
                    "ip_hash": row.ip_hash,
                    "user_agent": row.user_agent,
                    "request_id": row.request_id,
                    "detail": row.detail,
                }
                for row in rows
            ]


class AuditQueueDrainer:
    """Move events the gateway queued in Redis into the audit table in batches.

    Every identity worker process runs one drainer thread. A batch is removed
    from the list before it is written. If the write fails, the batch goes back
    to the head of the list, so an event is stored at least once.
    """

    BATCH_SIZE = 100
    WAIT_SECONDS = 2

    def __init__(self, client, queue_key: str, session_factory: sessionmaker) -> None:
        self._client = client
        self._key = queue_key
        self._sessions = session_factory
        self._stopping = threading.Event()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="audit-drainer", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stopping.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.drain_once()
            except (redis.RedisError, SQLAlchemyError) as error:
                log.error("identity.audit_drain_failed", extra={"error": repr(error)})
                self._stopping.wait(1.0)

    def drain_once(self, wait: bool = True) -> int:
        """Store one batch of queued events; return how many were stored."""
        if wait:
            first = self._client.blpop([self._key], timeout=self.WAIT_SECONDS)
            if first is None:
                return 0
            batch = [first[1]]
        else:
            batch = []
        batch += self._client.lpop(self._key, self.BATCH_SIZE - len(batch)) or []
        if not batch:
            return 0
        try:
            rows = [row for row in map(_queued_row, batch) if row is not None]
            with self._sessions.begin() as session:
                session.add_all(rows)
        except SQLAlchemyError:
            self._client.lpush(self._key, *reversed(batch))
            raise
        return len(rows)


def _queued_row(raw: bytes) -> AuditEventRow | None:
    try:
        entry = json.loads(raw)
        event = entry["event"]
        agent_id = entry.get("agent_id")
        moment = datetime.fromtimestamp(float(entry["time"]), UTC)
    except (ValueError, KeyError, TypeError) as error:
        log.error("identity.audit_entry_invalid", extra={"error": repr(error)})
        return None
    if not isinstance(event, str) or not EVENT_PATTERN.match(event):
        log.error("identity.audit_entry_invalid", extra={"error": "bad event name"})
        return None
    if agent_id is not None and not isinstance(agent_id, int):
        log.error("identity.audit_entry_invalid", extra={"error": "bad agent id"})
        return None
    detail = entry.get("detail")
    return AuditEventRow(
        time=moment.replace(tzinfo=None),
        agent_id=agent_id,
        event=event,
        ip_hash=str(entry.get("ip_hash") or "")[:64] or None,
        user_agent=str(entry.get("user_agent") or "")[:MAX_USER_AGENT_LENGTH] or None,
        request_id=str(entry.get("request_id") or "")[:64] or None,
        detail=detail if isinstance(detail, dict) else {},
    )
