"""Remembered devices: signed tokens whose device ids live in Redis until revoked.

The token alone proves nothing: its device id must still be in the agent's sorted
set (score = expiry in ms), so deleting the set revokes every device at once.
"""

from __future__ import annotations

import secrets
import time

import redis
from itsdangerous import BadData, URLSafeTimedSerializer

SALT = "gatehouse.otp.remembered-device"


class RedisDeviceStore:
    def __init__(
        self, client: redis.Redis, key_prefix: str, secret_key: str, ttl_seconds: int
    ) -> None:
        self._client = client
        self._prefix = key_prefix
        self._serializer = URLSafeTimedSerializer(secret_key, salt=SALT)
        self.ttl_seconds = ttl_seconds

    def _key(self, agent_id: int) -> str:
        return f"{self._prefix}devices:{agent_id}"

    def remember(self, agent_id: int) -> str:
        device_id = secrets.token_urlsafe(16)
        now_ms = int(time.time() * 1000)
        key = self._key(agent_id)
        pipeline = self._client.pipeline(transaction=True)
        pipeline.zremrangebyscore(key, "-inf", now_ms)
        pipeline.zadd(key, {device_id: now_ms + self.ttl_seconds * 1000})
        pipeline.expire(key, self.ttl_seconds)
        pipeline.execute()
        return self._serializer.dumps({"agent": agent_id, "device": device_id})

    def is_trusted(self, agent_id: int, device_token: str) -> bool:
        try:
            data = self._serializer.loads(device_token, max_age=self.ttl_seconds)
        except BadData:
            return False
        if not isinstance(data, dict) or data.get("agent") != agent_id:
            return False
        device_id = data.get("device")
        if not isinstance(device_id, str):
            return False
        expires_ms = self._client.zscore(self._key(agent_id), device_id)
        return expires_ms is not None and expires_ms > time.time() * 1000

    def revoke_all(self, agent_id: int) -> None:
        self._client.delete(self._key(agent_id))
