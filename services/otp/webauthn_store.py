"""Storage of WebAuthn ceremonies: challenges in Redis, credentials in SQL."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import redis
from gatehouse.common.ratelimit import Throttled
from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from .interfaces import (
    ChallengeExpired,
    CredentialNotFound,
    DuplicateCredential,
    LastCredential,
    SignCountRegressed,
    TooManyCredentials,
    WebAuthnCredential,
)
from .models import FactorRow, WebAuthnCredentialRow

CEREMONY_REGISTRATION = "registration"
CEREMONY_AUTHENTICATION = "authentication"


class RedisChallengeStore:
    """Challenges keyed by ceremony, agent and challenge, so each one is bound to
    the agent and the ceremony it was issued for.

    Every page that offers a key issues a challenge, so at most
    MAX_CHALLENGES_PER_TTL are issued per agent in one TTL. Without that cap,
    someone with only the password could fill Redis by reloading the page.
    """

    MAX_CHALLENGES_PER_TTL = 50

    def __init__(self, client: redis.Redis, key_prefix: str, ttl_seconds: int) -> None:
        self._client = client
        self._prefix = key_prefix
        self.ttl_seconds = ttl_seconds

    def _key(self, agent_id: int, ceremony: str, challenge: bytes) -> str:
        digest = hashlib.sha256(challenge).hexdigest()
        return f"{self._prefix}webauthn:challenge:{ceremony}:{agent_id}:{digest}"

    def issue(self, agent_id: int, ceremony: str, challenge: bytes, data: dict) -> None:
        """Store the challenge; raise Throttled once the agent has had
        MAX_CHALLENGES_PER_TTL challenges within the TTL."""
        counter = f"{self._prefix}webauthn:issued:{agent_id}"
        pipeline = self._client.pipeline(transaction=True)
        pipeline.incr(counter)
        pipeline.expire(counter, self.ttl_seconds, nx=True)
        pipeline.ttl(counter)
        issued, _, remaining = pipeline.execute()
        if issued > self.MAX_CHALLENGES_PER_TTL:
            raise Throttled("webauthn_challenges", max(int(remaining), 1))
        key = self._key(agent_id, ceremony, challenge)
        self._client.set(key, json.dumps(data), ex=self.ttl_seconds)

    def consume(self, agent_id: int, ceremony: str, challenge: bytes) -> dict:
        # GETDEL reads and deletes in one command, so of two replicas given the
        # same response only one finds the challenge.
        value = self._client.getdel(self._key(agent_id, ceremony, challenge))
        if value is None:
            raise ChallengeExpired()
        return json.loads(value)


def _credential(row) -> WebAuthnCredential:
    return WebAuthnCredential(
        id=row.id,
        agent_id=row.agent_id,
        credential_id=row.credential_id,
        public_key=bytes(row.public_key),
        sign_count=row.sign_count,
        transports=[item for item in row.transports.split(",") if item],
        name=row.name,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
    )


class SqlWebAuthnCredentialStore:
    def __init__(self, engine: Engine, user_handle_key: bytes) -> None:
        self._engine = engine
        self._user_handle_key = user_handle_key

    def user_handle(self, agent_id: int) -> bytes:
        """Return the agent's WebAuthn user handle. It is stable, so an
        authenticator keeps one discoverable credential per agent, and it contains
        no personal data, as py_webauthn's documentation of ``user_id`` requires."""
        return hmac.new(
            self._user_handle_key, str(agent_id).encode(), hashlib.sha256
        ).digest()

    def list(self, agent_id: int) -> list[WebAuthnCredential]:
        query = (
            select(WebAuthnCredentialRow)
            .where(WebAuthnCredentialRow.agent_id == agent_id)
            .order_by(WebAuthnCredentialRow.id)
        )
        with self._engine.connect() as connection:
            return [_credential(row) for row in connection.execute(query)]

    def find(self, agent_id: int, credential_id: str) -> WebAuthnCredential | None:
        query = select(WebAuthnCredentialRow).where(
            WebAuthnCredentialRow.agent_id == agent_id,
            WebAuthnCredentialRow.credential_id == credential_id,
        )
        with self._engine.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else _credential(row)

    @staticmethod
    def _count(connection, agent_id: int) -> int:
        query = (
            select(func.count())
            .select_from(WebAuthnCredentialRow)
            .where(WebAuthnCredentialRow.agent_id == agent_id)
        )
        return connection.execute(query).scalar_one()

    @staticmethod
    def _lock_factor(connection, agent_id: int) -> None:
        # Serializes changes to one agent's keys on PostgreSQL, so two requests
        # cannot both pass a count check. SQLite allows one writer anyway.
        connection.execute(
            select(FactorRow.agent_id)
            .where(FactorRow.agent_id == agent_id)
            .with_for_update()
        )

    def add(self, row: dict, max_count: int) -> WebAuthnCredential:
        agent_id = row["agent_id"]
        try:
            with self._engine.begin() as connection:
                self._lock_factor(connection, agent_id)
                if self._count(connection, agent_id) >= max_count:
                    raise TooManyCredentials()
                connection.execute(insert(WebAuthnCredentialRow), [row])
        except IntegrityError as error:
            raise DuplicateCredential() from error
        added = self.find(agent_id, row["credential_id"])
        if added is None:
            raise CredentialNotFound()
        return added

    def record_use(self, credential: WebAuthnCredential, sign_count: int) -> None:
        now = datetime.now(UTC)
        statement = update(WebAuthnCredentialRow).where(
            WebAuthnCredentialRow.id == credential.id
        )
        if sign_count == 0:
            # Authenticators without a counter (many passkeys) always send 0;
            # the caller has already rejected a 0 after a non-zero count.
            with self._engine.begin() as connection:
                connection.execute(statement.values(last_used_at=now))
            return

        # The condition repeats the regression check inside the UPDATE, so two
        # replicas verifying assertions with the same count at the same moment
        # cannot both succeed.
        statement = statement.where(WebAuthnCredentialRow.sign_count < sign_count)
        with self._engine.begin() as connection:
            updated = connection.execute(
                statement.values(sign_count=sign_count, last_used_at=now)
            )
            if updated.rowcount != 1:
                raise SignCountRegressed()

    def remove(self, agent_id: int, key_id: int) -> None:
        with self._engine.begin() as connection:
            self._lock_factor(connection, agent_id)
            exists = connection.execute(
                select(WebAuthnCredentialRow.id).where(
                    WebAuthnCredentialRow.id == key_id,
                    WebAuthnCredentialRow.agent_id == agent_id,
                )
            ).first()
            if exists is None:
                raise CredentialNotFound()
            if self._count(connection, agent_id) <= 1:
                raise LastCredential()
            connection.execute(
                delete(WebAuthnCredentialRow).where(
                    WebAuthnCredentialRow.id == key_id,
                    WebAuthnCredentialRow.agent_id == agent_id,
                )
            )
