"""Pending enrollments in Redis: nothing reaches the database before it is confirmed.

A marker outlives each pending enrollment by a day, so a late confirmation raises
TokenExpired rather than InvalidToken ("never started").
"""

from __future__ import annotations

import json

import redis
from cryptography.fernet import InvalidToken as FernetInvalidToken
from cryptography.fernet import MultiFernet

from .interfaces import InvalidToken, TokenExpired

MARKER_TTL_SECONDS = 24 * 3600


class RedisPendingEnrollments:
    def __init__(
        self, client: redis.Redis, key_prefix: str, cipher: MultiFernet
    ) -> None:
        self._client = client
        self._prefix = key_prefix
        self._cipher = cipher

    def _keys(self, method: str, agent_id: int) -> tuple[str, str]:
        base = f"{self._prefix}enroll:{method}:{agent_id}"
        return base, base + ":marker"

    def _save(self, method: str, agent_id: int, data: dict, ttl: int) -> None:
        key, marker = self._keys(method, agent_id)
        # The pending TOTP secret is as sensitive as a stored one, so it is
        # encrypted in Redis too.
        value = self._cipher.encrypt(json.dumps(data).encode())
        pipeline = self._client.pipeline(transaction=True)
        pipeline.set(key, value, ex=ttl)
        pipeline.set(marker, b"1", ex=ttl + MARKER_TTL_SECONDS)
        pipeline.execute()

    def _load(self, method: str, agent_id: int) -> dict:
        key, marker = self._keys(method, agent_id)
        value = self._client.get(key)
        if value is None:
            if self._client.exists(marker):
                raise TokenExpired("The setup has expired. Start it again.")
            raise InvalidToken("No setup is in progress. Start it first.")
        try:
            return json.loads(self._cipher.decrypt(value))
        except (FernetInvalidToken, ValueError):
            raise TokenExpired("The setup has expired. Start it again.") from None

    def _claim(self, method: str, agent_id: int) -> bool:
        key, marker = self._keys(method, agent_id)
        return self._client.delete(key, marker) > 0

    def save_app(self, agent_id: int, secret: str, ttl: int) -> None:
        self._save("app", agent_id, {"secret": secret}, ttl)

    def load_app(self, agent_id: int) -> str:
        """Return the pending TOTP secret; raise TokenExpired or InvalidToken."""
        return self._load("app", agent_id)["secret"]

    def claim_app(self, agent_id: int) -> bool:
        """Remove the pending app enrollment; return False if another request
        already did, so only one confirmation stores the factor."""
        return self._claim("app", agent_id)

    def save_email(self, agent_id: int, email_security: bool, ttl: int) -> None:
        self._save("email", agent_id, {"email_security": email_security}, ttl)

    def take_email(self, agent_id: int) -> bool:
        """Remove the pending email enrollment and return its email_security;
        raise TokenExpired or InvalidToken."""
        data = self._load("email", agent_id)
        self._claim("email", agent_id)
        return bool(data.get("email_security"))

    def discard(self, agent_id: int) -> None:
        self._client.delete(
            *self._keys("app", agent_id), *self._keys("email", agent_id)
        )
