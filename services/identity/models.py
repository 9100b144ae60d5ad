"""SQLAlchemy tables of the identity database. Times are naive UTC."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY.
BIG_ID = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class AgentRow(Base):
    __tablename__ = "agents"
    __table_args__ = (UniqueConstraint("login_key", name="uq_agents_login_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    login: Mapped[str] = mapped_column(String(64))
    # The lowercased login carries the unique constraint, so logins are unique
    # case-insensitively on every database.
    login_key: Mapped[str] = mapped_column(String(64))
    email: Mapped[str] = mapped_column(String(254))
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))
    # Bumped on every password change; reset tokens carry the version they were
    # issued under, so a change kills older links.
    password_version: Mapped[int] = mapped_column(Integer, default=1)
    password_changed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    # Why must_change_password is set: "initial" (an operator issued the
    # password) or "breached" (the password turned up on a breach list at login).
    password_change_reason: Mapped[str | None] = mapped_column(
        String(16), nullable=True
    )
    # When an operator-issued initial password stops signing in; None for a
    # password the agent chose.
    initial_password_expires_at: Mapped[datetime | None] = mapped_column(
        DateTime, nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class PasswordHistoryRow(Base):
    __tablename__ = "password_history"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    agent_id: Mapped[int] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), index=True
    )
    password_hash: Mapped[str] = mapped_column(String(255))
    retired_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ResetTokenRow(Base):
    """The one outstanding reset token of an agent (a new request replaces it)."""

    __tablename__ = "password_reset_tokens"
    __table_args__ = (
        UniqueConstraint("token_hash", name="uq_password_reset_tokens_token_hash"),
    )

    agent_id: Mapped[int] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    # SHA-256 hex of the token; the token itself is only in the mail.
    token_hash: Mapped[str] = mapped_column(String(64))
    password_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class AuditEventRow(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    time: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    # No foreign key: audit rows outlive agents and may name none (unknown login).
    agent_id: Mapped[int | None] = mapped_column(Integer, index=True, nullable=True)
    event: Mapped[str] = mapped_column(String(64))
    ip_hash: Mapped[str | None] = mapped_column(String(32), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(256), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[dict] = mapped_column(JSON, default=dict)


class MailOutboxRow(Base):
    """A mail identity still has to hand to RabbitMQ (a transactional outbox).

    A row is written with the change it reports (in the same transaction for
    reset mails) and deleted after the broker confirms the job. ``kind`` is
    ``reset_request`` (a forgot-password request whose login is not yet looked
    up), ``password_reset`` or ``notice``.
    """

    __tablename__ = "mail_outbox"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    agent_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The MailJob message id, the same on every publish of this row, so the
    # mailer's duplicate check drops a second copy.
    message_id: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    available_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # A relay claims a row by writing its owner id and a lease end. Another relay
    # takes the row over only after the lease has ended.
    lease_owner: Mapped[str | None] = mapped_column(String(32), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
