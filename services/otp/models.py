"""Tables of the OTP service: one factor per agent, its recovery codes and, for the
webauthn method, the agent's security keys."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    make_url,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class FactorRow(Base):
    __tablename__ = "otp_factors"

    agent_id: Mapped[int] = mapped_column(
        Integer, primary_key=True, autoincrement=False
    )
    method: Mapped[str] = mapped_column(String(16))
    email_security: Mapped[bool] = mapped_column(Boolean, default=False)
    # Fernet token of the TOTP secret; NULL for the email method.
    secret_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RecoveryCodeRow(Base):
    __tablename__ = "otp_recovery_codes"
    __table_args__ = (UniqueConstraint("agent_id", "code_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_id: Mapped[int] = mapped_column(
        ForeignKey("otp_factors.agent_id"), index=True
    )
    # Hex HMAC-SHA256 of the normalized code; the code itself is never stored.
    code_hash: Mapped[str] = mapped_column(String(64))
    # Hex random salt of the code and the id of the HMAC key. Both are NULL in
    # rows written before per-code salts, because those hash only agent id and code.
    salt: Mapped[str | None] = mapped_column(String(32), nullable=True)
    key_id: Mapped[str | None] = mapped_column(String(16), nullable=True)
    used_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )


class WebAuthnCredentialRow(Base):
    """A registered WebAuthn credential (security key or passkey) of an agent.

    There is no foreign key to ``otp_factors``: the factor repository deletes an
    agent's credentials together with its factor row, in one transaction.
    """

    __tablename__ = "otp_webauthn_credentials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_id: Mapped[int] = mapped_column(Integer, index=True)
    # base64url without padding. WebAuthn Level 3 limits a credential id to 1023
    # bytes (1364 characters), and registration rejects longer ones.
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)
    # COSE_Key bytes as the authenticator sent them at registration.
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    # An unsigned 32-bit counter, which does not fit PostgreSQL's INTEGER.
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    # Comma-separated AuthenticatorTransport values, for example "usb,nfc".
    transports: Mapped[str] = mapped_column(String(200), default="")
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )


def _enable_sqlite_concurrency(dbapi_connection, _record) -> None:
    # Several gunicorn workers write the same SQLite file: WAL lets readers run
    # beside a writer, and the busy timeout makes a writer wait instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    """Return an engine for ``url`` (SQLite or PostgreSQL)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 15})
        event.listen(engine, "connect", _enable_sqlite_concurrency)
        return engine
    return create_engine(url, pool_pre_ping=True)
