"""Audit events in SQL: who did what, when, from which (hashed) address."""

from __future__ import annotations

import logging
import re

from gatehouse.common.logs import current_request_id, hash_ip
from sqlalchemy import select
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
    ) -> None:
        row = AuditEventRow(
            time=utcnow(),
            agent_id=agent_id,
            event=event,
            ip_hash=hash_ip(self._log_hash_key, client_ip) if client_ip else None,
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
