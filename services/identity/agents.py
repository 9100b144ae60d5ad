"""Agents in SQL, and the service that creates them and checks their passwords."""

from __future__ import annotations

import hmac
import logging
import re
import unicodedata
from datetime import datetime, timedelta

from gatehouse.common.ratelimit import FailureThrottle
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from .config import MAX_PASSWORD_LENGTH, IdentityConfig
from .interfaces import (
    CHANGE_REASON_BREACHED,
    CHANGE_REASON_INITIAL,
    Agent,
    AgentNotFound,
    DuplicateLogin,
    InitialPasswordExpired,
    InvalidAgentData,
    InvalidCredentials,
    InvalidCurrentPassword,
    InvalidEmail,
    InvalidPassword,
)
from .models import AgentRow, PasswordHistoryRow, ResetTokenRow, utcnow
from .passwords import Argon2Hasher, PasswordPolicy, context_words, normalize_password
from .throttling import ThrottleLimits

log = logging.getLogger(__name__)

MAX_LOGIN_LENGTH = 64
MAX_NAME_LENGTH = 100
# RFC 5321 limits: 64 octets for the local part, 254 for a usable address.
MAX_EMAIL_LENGTH = 254
MAX_LOCAL_PART_LENGTH = 64
_DOMAIN_LABEL = re.compile(r"^(?!-)[^\W_](?:[\w-]{0,61}[^\W_])?$")


def _has_control_or_space(text: str) -> bool:
    return any(char.isspace() or unicodedata.category(char)[0] == "C" for char in text)


def login_key(login: str) -> str:
    """Return the form logins are compared in: NFC, then lowercased."""
    return unicodedata.normalize("NFC", login).lower()


def validate_login(login: object) -> str:
    if not isinstance(login, str) or login == "":
        raise InvalidAgentData("The login is missing.")
    login = unicodedata.normalize("NFC", login)
    if len(login) > MAX_LOGIN_LENGTH:
        raise InvalidAgentData(
            f"The login is longer than {MAX_LOGIN_LENGTH} characters."
        )
    if _has_control_or_space(login):
        raise InvalidAgentData(
            f"The login {login!r} contains spaces or control characters."
        )
    return login


def validate_email(email: object) -> str:
    if not isinstance(email, str) or email == "":
        raise InvalidEmail("The email address is missing.")
    if len(email) > MAX_EMAIL_LENGTH:
        raise InvalidEmail(
            f"The email address is longer than {MAX_EMAIL_LENGTH} characters."
        )
    if _has_control_or_space(email):
        raise InvalidEmail(
            f"The email address {email!r} contains spaces or control characters."
        )
    if email.count("@") != 1:
        raise InvalidEmail(
            f"The email address {email!r} is invalid: it needs exactly one @."
        )
    local_part, domain = email.split("@")
    if not local_part or len(local_part) > MAX_LOCAL_PART_LENGTH:
        raise InvalidEmail(
            f"The email address {email!r} is invalid: the part before @ must have "
            f"1 to {MAX_LOCAL_PART_LENGTH} characters."
        )
    labels = domain.split(".")
    if len(labels) < 2 or not all(_DOMAIN_LABEL.match(label) for label in labels):
        raise InvalidEmail(
            f"The email address {email!r} is invalid: the domain after @ must be "
            "a name like example.com."
        )
    return email


def validate_name(value: object, field: str) -> str:
    if not isinstance(value, str) or value.strip() == "":
        raise InvalidAgentData(f"The {field} is missing.")
    value = unicodedata.normalize("NFC", value.strip())
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidAgentData(
            f"The {field} is longer than {MAX_NAME_LENGTH} characters."
        )
    if any(unicodedata.category(char)[0] == "C" for char in value):
        raise InvalidAgentData(f"The {field} contains control characters.")
    return value


def _to_agent(row: AgentRow) -> Agent:
    return Agent(
        id=row.id,
        login=row.login,
        email=row.email,
        first_name=row.first_name,
        last_name=row.last_name,
        must_change_password=row.must_change_password,
        password_hash=row.password_hash,
        password_version=row.password_version,
        password_change_reason=row.password_change_reason,
        initial_password_expires_at=row.initial_password_expires_at,
    )


class SqlAgentRepository:
    def __init__(self, session_factory: sessionmaker) -> None:
        self._sessions = session_factory

    @property
    def session_factory(self) -> sessionmaker:
        return self._sessions

    def get(self, agent_id: int) -> Agent:
        with self._sessions() as session:
            row = session.get(AgentRow, agent_id)
            if row is None:
                raise AgentNotFound(f"No agent has id {agent_id}.")
            return _to_agent(row)

    def find_by_login(self, login: str) -> Agent | None:
        if "\x00" in login or len(login) > MAX_LOGIN_LENGTH * 4:
            return None  # no stored login can match; PostgreSQL rejects NUL in text
        with self._sessions() as session:
            row = session.scalars(
                select(AgentRow).where(AgentRow.login_key == login_key(login))
            ).one_or_none()
            return None if row is None else _to_agent(row)

    def list(self) -> list[Agent]:
        with self._sessions() as session:
            rows = session.scalars(select(AgentRow).order_by(AgentRow.id))
            return [_to_agent(row) for row in rows]

    def create(
        self,
        login: str,
        email: str,
        first_name: str,
        last_name: str,
        password_hash: str,
        must_change_password: bool,
        initial_password_expires_at: datetime | None = None,
    ) -> Agent:
        row = AgentRow(
            login=login,
            login_key=login_key(login),
            email=email,
            first_name=first_name,
            last_name=last_name,
            password_hash=password_hash,
            password_version=1,
            must_change_password=must_change_password,
            password_change_reason=(
                CHANGE_REASON_INITIAL if must_change_password else None
            ),
            initial_password_expires_at=initial_password_expires_at,
        )
        try:
            with self._sessions.begin() as session:
                session.add(row)
        except IntegrityError as error:
            raise DuplicateLogin(
                f"The login {login!r} is already taken (logins are case-insensitive)."
            ) from error
        return _to_agent(row)

    def previous_password_hashes(self, agent_id: int, count: int) -> list[str]:
        with self._sessions() as session:
            return list(
                session.scalars(
                    select(PasswordHistoryRow.password_hash)
                    .where(PasswordHistoryRow.agent_id == agent_id)
                    .order_by(PasswordHistoryRow.id.desc())
                    .limit(count)
                )
            )

    def replace_password(
        self, agent_id: int, password_hash: str, history_size: int, session=None
    ) -> Agent:
        if session is None:
            with self._sessions.begin() as own_session:
                return self._replace_password(
                    own_session, agent_id, password_hash, history_size
                )
        return self._replace_password(session, agent_id, password_hash, history_size)

    def _replace_password(
        self, session, agent_id: int, password_hash: str, history_size: int
    ) -> Agent:
        row = session.get(AgentRow, agent_id, with_for_update=True)
        if row is None:
            raise AgentNotFound(f"No agent has id {agent_id}.")

        session.add(
            PasswordHistoryRow(agent_id=agent_id, password_hash=row.password_hash)
        )
        row.password_hash = password_hash
        row.password_version += 1
        row.password_changed_at = utcnow()
        row.must_change_password = False
        row.password_change_reason = None
        row.initial_password_expires_at = None
        session.flush()

        keep = (
            select(PasswordHistoryRow.id)
            .where(PasswordHistoryRow.agent_id == agent_id)
            .order_by(PasswordHistoryRow.id.desc())
            .limit(history_size)
        )
        session.execute(
            delete(PasswordHistoryRow)
            .where(PasswordHistoryRow.agent_id == agent_id)
            .where(PasswordHistoryRow.id.not_in(keep.scalar_subquery()))
        )
        # Any outstanding reset link dies with the old password.
        session.execute(delete(ResetTokenRow).where(ResetTokenRow.agent_id == agent_id))
        return _to_agent(row)

    def issue_initial_password(
        self,
        agent_id: int,
        password_hash: str,
        expires_at: datetime,
        history_size: int,
        session=None,
    ) -> Agent:
        if session is None:
            with self._sessions.begin() as own_session:
                return self.issue_initial_password(
                    agent_id, password_hash, expires_at, history_size, own_session
                )
        self._replace_password(session, agent_id, password_hash, history_size)
        row = session.get(AgentRow, agent_id)
        row.must_change_password = True
        row.password_change_reason = CHANGE_REASON_INITIAL
        row.initial_password_expires_at = expires_at
        session.flush()
        return _to_agent(row)

    def require_password_change(self, agent_id: int, reason: str) -> Agent:
        with self._sessions.begin() as session:
            row = session.get(AgentRow, agent_id, with_for_update=True)
            if row is None:
                raise AgentNotFound(f"No agent has id {agent_id}.")
            row.must_change_password = True
            # An initial password keeps its reason and expiry.
            if row.password_change_reason is None:
                row.password_change_reason = reason
            return _to_agent(row)

    def update_hash(self, agent_id: int, password_hash: str) -> None:
        with self._sessions.begin() as session:
            row = session.get(AgentRow, agent_id)
            if row is not None:
                row.password_hash = password_hash


class AgentService:
    """Creating agents, authenticating them and changing their passwords."""

    def __init__(
        self,
        config: IdentityConfig,
        repository: SqlAgentRepository,
        hasher: Argon2Hasher,
        policy: PasswordPolicy,
        throttle: FailureThrottle | None,
        limits: ThrottleLimits,
    ) -> None:
        self.config = config
        self.repository = repository
        self.hasher = hasher
        self.policy = policy
        self.throttle = throttle
        self.limits = limits

    def create_agent(
        self, login: str, email: str, first_name: str, last_name: str, password: str
    ) -> Agent:
        """Validate and store a new agent; raise InvalidAgentData, InvalidEmail,
        InvalidPassword or DuplicateLogin."""
        login = validate_login(login)
        email = validate_email(email)
        first_name = validate_name(first_name, "first name")
        last_name = validate_name(last_name, "last name")
        if self.repository.find_by_login(login) is not None:
            raise DuplicateLogin(
                f"The login {login!r} is already taken (logins are case-insensitive)."
            )

        words = context_words(login, email, first_name, last_name)
        password = self.policy.check(password, words)

        must_change = self.config.change_initial_password
        agent = self.repository.create(
            login,
            email,
            first_name,
            last_name,
            self.hasher.hash(password),
            must_change_password=must_change,
            initial_password_expires_at=(
                self.initial_password_expiry() if must_change else None
            ),
        )
        log.info("identity.agent_created", extra={"agent_id": agent.id})
        return agent

    def authenticate(
        self, login: str, password: str, ip_hash: str, device_cookie: str | None = None
    ) -> Agent:
        """Return the agent; raise InvalidCredentials or Throttled."""
        limits = self.limits.login_limits(login, ip_hash, device_cookie)
        self.throttle.check(limits)

        agent = self.repository.find_by_login(login) if isinstance(login, str) else None
        password = normalize_password(password)[: MAX_PASSWORD_LENGTH + 1]
        if agent is None or len(password) > MAX_PASSWORD_LENGTH:
            self.hasher.verify(self.hasher.dummy_hash, password)
            verified = False
        else:
            verified = self.hasher.verify(agent.password_hash, password)

        if not verified:
            self.throttle.record_failure(limits)
            raise InvalidCredentials("invalid user name or password")

        if self.hasher.needs_rehash(agent.password_hash):
            self.repository.update_hash(agent.id, self.hasher.hash(password))
            log.info("identity.password_rehashed", extra={"agent_id": agent.id})
        return agent

    def initial_password_expiry(self) -> datetime:
        """Return when an initial password issued now expires (naive UTC)."""
        return utcnow() + timedelta(seconds=self.config.initial_password_ttl)

    def check_initial_password(self, agent: Agent) -> None:
        """Raise InitialPasswordExpired when the agent, whose password was just
        verified, still has an initial password past its expiry."""
        expires_at = agent.initial_password_expires_at
        if expires_at is not None and utcnow() >= expires_at:
            log.info("identity.initial_password_expired", extra={"agent_id": agent.id})
            raise InitialPasswordExpired(
                "Your initial password has expired. Set a new one with "
                '"Forgot your password?", or ask an operator to issue a '
                "new one."
            )

    def require_change_if_breached(self, agent: Agent, password: str) -> Agent:
        """Return the agent, marked to change the password first when the
        password, just verified at login, is on a breach list."""
        if not self.policy.is_breached(normalize_password(password)):
            return agent
        log.warning("identity.breached_password_at_login", extra={"agent_id": agent.id})
        return self.repository.require_password_change(agent.id, CHANGE_REASON_BREACHED)

    def issue_initial_password(
        self, agent: Agent, password: str, session=None
    ) -> Agent:
        """Replace the password with an operator-issued initial password that
        expires and must be changed at the next login; raise InvalidPassword."""
        words = context_words(
            agent.login, agent.email, agent.first_name, agent.last_name
        )
        password = self.policy.check(password, words)
        return self.repository.issue_initial_password(
            agent.id,
            self.hasher.hash(password),
            self.initial_password_expiry(),
            self.config.password_history,
            session=session,
        )

    def known_agent_id(self, login: object) -> int | None:
        if not isinstance(login, str):
            return None
        agent = self.repository.find_by_login(login)
        return None if agent is None else agent.id

    def check_new_password(
        self, agent: Agent, new_password: str, new_password_confirm: str
    ) -> str:
        """Return the normalized new password; raise InvalidPassword."""
        if not isinstance(new_password, str) or not isinstance(
            new_password_confirm, str
        ):
            raise InvalidPassword("Enter the new password twice.")
        new_password = normalize_password(new_password)
        confirm = normalize_password(new_password_confirm)
        if not hmac.compare_digest(new_password.encode(), confirm.encode()):
            raise InvalidPassword("The two new passwords do not match.")

        previous = [agent.password_hash] + self.repository.previous_password_hashes(
            agent.id, self.config.password_history
        )
        words = context_words(
            agent.login, agent.email, agent.first_name, agent.last_name
        )
        return self.policy.check(new_password, words, previous)

    def change_password(
        self,
        agent_id: int,
        new_password: str,
        new_password_confirm: str,
        current_password: str | None,
        ip_hash: str,
        device_cookie: str | None = None,
    ) -> Agent:
        """Set a new password; raise AgentNotFound, InvalidCurrentPassword,
        InvalidPassword or Throttled."""
        agent = self.repository.get(agent_id)
        if current_password is not None or not agent.must_change_password:
            self._verify_current(agent, current_password, ip_hash, device_cookie)

        password = self.check_new_password(agent, new_password, new_password_confirm)
        updated = self.repository.replace_password(
            agent.id, self.hasher.hash(password), self.config.password_history
        )
        log.info("identity.password_changed", extra={"agent_id": agent.id})
        return updated

    def _verify_current(
        self,
        agent: Agent,
        current_password: str | None,
        ip_hash: str,
        device_cookie: str | None,
    ) -> None:
        if not isinstance(current_password, str) or current_password == "":
            raise InvalidCurrentPassword("Enter your current password.")
        limits = self.limits.login_limits(agent.login, ip_hash, device_cookie)
        self.throttle.check(limits)
        if not self.hasher.verify(
            agent.password_hash, normalize_password(current_password)
        ):
            self.throttle.record_failure(limits)
            raise InvalidCurrentPassword("The current password is wrong.")
