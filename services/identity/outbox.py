"""The durable mail outbox: rows in the identity database, relayed to RabbitMQ.

A mail is first a row in ``mail_outbox``, so a worker that dies before
publishing loses nothing, because any identity process relays the row later.
The relay thread publishes with publisher confirms and deletes the row only
after the broker confirmed it.

A forgot-password request becomes a ``reset_request`` row at once, whether or
not the login exists, so the HTTP response costs one insert either way. The relay
looks the login up later and, for a known agent, replaces the row with a
``password_reset`` row in the same transaction that stores the reset token.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from cryptography.fernet import MultiFernet
from gatehouse.common.logs import current_request_id
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import sessionmaker

from .models import MailOutboxRow, utcnow

log = logging.getLogger(__name__)

KIND_RESET_REQUEST = "reset_request"
KIND_PASSWORD_RESET = "password_reset"
KIND_NOTICE = "notice"


def new_message_id() -> str:
    return uuid.uuid4().hex


class SqlMailOutbox:
    """Outbox rows: writing them, claiming them for one relay, and settling them."""

    def __init__(
        self, session_factory: sessionmaker, link_cipher: MultiFernet | None = None
    ) -> None:
        self._sessions = session_factory
        # Seals reset links at rest; needed only by processes that relay resets.
        self._link_cipher = link_cipher

    def _add(self, session, kind: str, agent_id: int | None, payload: dict) -> None:
        now = utcnow()
        session.add(
            MailOutboxRow(
                kind=kind,
                agent_id=agent_id,
                message_id=new_message_id(),
                payload=payload,
                request_id=current_request_id(),
                created_at=now,
                available_at=now,
                attempts=0,
            )
        )

    def add_reset_request(
        self, login: str, reset_url_base: str, ip_hash: str, user_agent: str | None
    ) -> None:
        payload = {
            "login": login,
            "reset_url_base": reset_url_base,
            "ip_hash": ip_hash,
            "user_agent": user_agent,
        }
        with self._sessions.begin() as session:
            self._add(session, KIND_RESET_REQUEST, None, payload)

    def add_notice(self, agent_id: int, params: dict, session=None) -> None:
        """Queue a notice mail with the MailJob ``params`` (``{"event": ...}`` and
        more); with ``session``, inside the caller's transaction."""
        payload = {"params": params}
        if session is not None:
            self._add(session, KIND_NOTICE, agent_id, payload)
            return
        with self._sessions.begin() as own_session:
            self._add(own_session, KIND_NOTICE, agent_id, payload)

    def replace_with_reset_mail(
        self,
        session,
        row_id: int,
        owner: str,
        agent_id: int,
        link: str,
        expires_at: float,
    ) -> bool:
        """Turn a claimed reset_request row into a password_reset row, inside the
        caller's transaction (the one that stores the token). Return False when
        ``owner`` no longer holds the row's lease, so the caller rolls back.

        The link carries the raw token, so the row stores it sealed with the mail
        job keys: a copy of the database alone yields no working link.
        """
        sealed = self.seal_link(link)
        result = session.execute(
            update(MailOutboxRow)
            .where(MailOutboxRow.id == row_id)
            .where(MailOutboxRow.lease_owner == owner)
            .values(
                kind=KIND_PASSWORD_RESET,
                agent_id=agent_id,
                payload={"sealed_link": sealed, "expires_at": expires_at},
                attempts=0,
                available_at=utcnow(),
            )
        )
        return result.rowcount == 1

    def seal_link(self, link: str) -> str:
        """Return ``link`` sealed with the newest mail job key."""
        if self._link_cipher is None:
            raise RuntimeError("SqlMailOutbox needs link_cipher to store reset links")
        return self._link_cipher.encrypt(link.encode()).decode()

    def reset_link(self, payload: dict) -> str:
        """Return the link sealed in a password_reset row's ``payload``.

        Raise cryptography's InvalidToken when no mail job key opens it.
        """
        if self._link_cipher is None:
            raise RuntimeError("SqlMailOutbox needs link_cipher to open reset links")
        return self._link_cipher.decrypt(payload["sealed_link"].encode()).decode()

    def due_ids(self, limit: int) -> list[int]:
        now = utcnow()
        with self._sessions() as session:
            return list(
                session.scalars(
                    select(MailOutboxRow.id)
                    .where(MailOutboxRow.available_at <= now)
                    .where(
                        or_(
                            MailOutboxRow.lease_until.is_(None),
                            MailOutboxRow.lease_until < now,
                        )
                    )
                    .order_by(MailOutboxRow.id)
                    .limit(limit)
                )
            )

    def claim(self, row_id: int, owner: str, lease: timedelta) -> MailOutboxRow | None:
        """Return the row if this relay now holds its lease, else None.

        The conditional UPDATE is the guard between relays: of two relays that
        claim one row at once, only one matches the "lease ended" condition.
        The row must still be due, because another relay may have rescheduled it
        since ``due_ids`` listed it.
        """
        now = utcnow()
        with self._sessions.begin() as session:
            result = session.execute(
                update(MailOutboxRow)
                .where(MailOutboxRow.id == row_id)
                .where(MailOutboxRow.available_at <= now)
                .where(
                    or_(
                        MailOutboxRow.lease_until.is_(None),
                        MailOutboxRow.lease_until < now,
                    )
                )
                .values(lease_owner=owner, lease_until=now + lease)
            )
            if result.rowcount != 1:
                return None
            return session.get(MailOutboxRow, row_id)

    def delete(self, row_id: int, owner: str, session=None) -> None:
        statement = (
            delete(MailOutboxRow)
            .where(MailOutboxRow.id == row_id)
            .where(MailOutboxRow.lease_owner == owner)
        )
        if session is not None:
            session.execute(statement)
            return
        with self._sessions.begin() as own_session:
            own_session.execute(statement)

    def retry_later(self, row_id: int, owner: str, available_at: datetime) -> None:
        with self._sessions.begin() as session:
            session.execute(
                update(MailOutboxRow)
                .where(MailOutboxRow.id == row_id)
                .where(MailOutboxRow.lease_owner == owner)
                .values(
                    attempts=MailOutboxRow.attempts + 1,
                    available_at=available_at,
                    lease_owner=None,
                    lease_until=None,
                )
            )

    def count(self) -> int:
        with self._sessions() as session:
            return session.scalar(select(func.count()).select_from(MailOutboxRow))
