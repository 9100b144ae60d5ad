"""Password reset tokens: only a SHA-256 of each token is stored."""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import sessionmaker

from .agents import AgentService
from .interfaces import Agent, ResetTokenInvalid
from .models import AgentRow, ResetTokenRow, utcnow

log = logging.getLogger(__name__)

# secrets.token_urlsafe(32) gives 43 characters; anything far off is not a token.
_TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{32,64}$")


def hash_token(token: str) -> str:
    # A plain SHA-256 suffices: the token has 256 random bits, so there is
    # nothing to brute-force that a slow hash would protect.
    return hashlib.sha256(token.encode()).hexdigest()


def _invalid() -> ResetTokenInvalid:
    return ResetTokenInvalid("This reset link is invalid or has expired.")


class SqlResetStore:
    def __init__(self, session_factory: sessionmaker) -> None:
        self._sessions = session_factory

    def issue(self, agent: Agent, ttl_seconds: int, session=None) -> str:
        if session is None:
            with self._sessions.begin() as own_session:
                return self.issue(agent, ttl_seconds, own_session)
        token = secrets.token_urlsafe(32)
        now = utcnow()
        # One row per agent: a new request replaces (and so kills) the old link.
        session.execute(delete(ResetTokenRow).where(ResetTokenRow.agent_id == agent.id))
        session.add(
            ResetTokenRow(
                agent_id=agent.id,
                token_hash=hash_token(token),
                password_version=agent.password_version,
                created_at=now,
                expires_at=now + timedelta(seconds=ttl_seconds),
            )
        )
        return token

    def resolve(self, token: str) -> int:
        if not isinstance(token, str) or not _TOKEN_PATTERN.match(token):
            raise _invalid()
        with self._sessions() as session:
            row = session.execute(
                select(ResetTokenRow.agent_id)
                .join(AgentRow, AgentRow.id == ResetTokenRow.agent_id)
                .where(ResetTokenRow.token_hash == hash_token(token))
                .where(ResetTokenRow.expires_at > utcnow())
                .where(ResetTokenRow.password_version == AgentRow.password_version)
            ).one_or_none()
        if row is None:
            raise _invalid()
        return row.agent_id

    def consume(self, token: str, session, agent: Agent) -> None:
        """Delete the token inside ``session``; raise ResetTokenInvalid unless it
        was still valid for ``agent`` at this moment."""
        result = session.execute(
            delete(ResetTokenRow)
            .where(ResetTokenRow.token_hash == hash_token(token))
            .where(ResetTokenRow.agent_id == agent.id)
            .where(ResetTokenRow.password_version == agent.password_version)
            .where(ResetTokenRow.expires_at > utcnow())
        )
        if result.rowcount != 1:
            raise _invalid()


class ResetService:
    """Issuing reset links and setting a new password through one."""

    def __init__(
        self,
        agents: AgentService,
        store: SqlResetStore,
        session_factory: sessionmaker,
        ttl_seconds: int,
    ) -> None:
        self._agents = agents
        self._store = store
        self._sessions = session_factory
        self.ttl_seconds = ttl_seconds

    def request(self, login: str) -> tuple[Agent, str] | None:
        """Return the agent and a new token, or None when the login is unknown."""
        agent = self._agents.repository.find_by_login(login)
        if agent is None:
            return None
        return agent, self._store.issue(agent, self.ttl_seconds)

    def resolve(self, token: str) -> int:
        """Return the agent id of a valid token; raise ResetTokenInvalid."""
        return self._store.resolve(token)

    def complete(
        self, token: str, new_password: str, new_password_confirm: str
    ) -> Agent:
        """Set the new password and kill the token; raise ResetTokenInvalid or
        InvalidPassword (the token stays valid after InvalidPassword)."""
        agent = self._agents.repository.get(self._store.resolve(token))
        password = self._agents.check_new_password(
            agent, new_password, new_password_confirm
        )
        password_hash = self._agents.hasher.hash(password)

        with self._sessions.begin() as session:
            # Deleting the row is the single-use check: of two concurrent uses,
            # only one deletes a row.
            self._store.consume(token, session, agent)
            updated = self._agents.repository.replace_password(
                agent.id,
                password_hash,
                self._agents.config.password_history,
                session=session,
            )
        log.info("identity.password_reset_completed", extra={"agent_id": agent.id})
        return updated
