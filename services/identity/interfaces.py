"""The identity service's contract: what each service object promises and raises."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

# Values of Agent.password_change_reason.
CHANGE_REASON_INITIAL = "initial"
CHANGE_REASON_BREACHED = "breached"


@dataclass(frozen=True)
class Agent:
    """A helpdesk agent as the services pass it around; never sent with its hash."""

    id: int
    login: str
    email: str
    first_name: str
    last_name: str
    must_change_password: bool
    password_hash: str
    password_version: int
    # Why must_change_password is set (CHANGE_REASON_*), or None.
    password_change_reason: str | None = None
    # When an operator-issued initial password expires (naive UTC), or None.
    initial_password_expires_at: datetime | None = None

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "login": self.login,
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "must_change_password": self.must_change_password,
            "password_change_reason": self.password_change_reason,
        }


class IdentityError(Exception):
    """Base class of the identity domain errors; the message is safe to show."""


class DuplicateLogin(IdentityError):
    """Another agent already has this login (logins are case-insensitive)."""


class InvalidAgentData(IdentityError):
    """A login, name or other agent field is invalid; the message names the field."""


class InvalidEmail(InvalidAgentData):
    """The email address is malformed."""


class InvalidPassword(IdentityError):
    """A new password breaks the password policy; the message is for the person."""


class InvalidCredentials(IdentityError):
    """Unknown login or wrong password; the two are deliberately indistinguishable."""


class InitialPasswordExpired(IdentityError):
    """The password was correct but is an initial password past its expiry."""


class InvalidCurrentPassword(IdentityError):
    """The current password given with a password change is missing or wrong."""


class ResetTokenInvalid(IdentityError):
    """A reset token is unknown, used, superseded, expired or outlived a change."""


class AgentNotFound(IdentityError):
    """No agent has this id or login."""


class AgentRepository(Protocol):
    def get(self, agent_id: int) -> Agent:
        """Return the agent; raise AgentNotFound."""

    def find_by_login(self, login: str) -> Agent | None:
        """Return the agent whose login matches case-insensitively, or None."""

    def list(self) -> list[Agent]:
        """Return every agent ordered by id."""

    def create(
        self,
        login: str,
        email: str,
        first_name: str,
        last_name: str,
        password_hash: str,
        must_change_password: bool,
    ) -> Agent:
        """Store a new agent; raise DuplicateLogin."""

    def previous_password_hashes(self, agent_id: int, count: int) -> list[str]:
        """Return the newest ``count`` retired password hashes, newest first."""

    def replace_password(
        self, agent_id: int, password_hash: str, history_size: int, session=None
    ) -> Agent:
        """Replace the password hash and bump password_version; raise AgentNotFound.

        The old hash joins the history (``history_size`` entries are kept),
        must_change_password is cleared and reset tokens are deleted. With
        ``session``, all of it happens in the caller's transaction.
        """

    def update_hash(self, agent_id: int, password_hash: str) -> None:
        """Store a rehash of the same password (no version change)."""


class AuditLog(Protocol):
    def record(
        self,
        event: str,
        agent_id: int | None,
        client_ip: str | None,
        user_agent: str | None,
        detail: dict | None = None,
        ip_hash: str | None = None,
    ) -> None:
        """Store one audit event; the IP is stored as a keyed hash (``ip_hash``
        when the caller has only the hash)."""

    def list_for_agent(self, agent_id: int, limit: int) -> list[dict]:
        """Return the agent's newest ``limit`` events, newest first."""


class ResetStore(Protocol):
    def issue(self, agent: Agent, ttl_seconds: int, session=None) -> str:
        """Return a new reset token for the agent, replacing any older one; with
        ``session``, inside the caller's transaction."""

    def resolve(self, token: str) -> int:
        """Return the agent id the token belongs to; raise ResetTokenInvalid."""

    def consume(self, token: str, session, agent: Agent) -> None:
        """Delete the token inside ``session``; raise ResetTokenInvalid unless it
        was still valid for ``agent``."""
