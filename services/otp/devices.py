"""Remembered devices: signed tokens whose device ids live in Redis until revoked.

The token alone proves nothing: its device id must still be in the agent's sorted
set (score = expiry in ms), so deleting the set revokes every device at once.
Beside it, a hash keeps each device's creation time and browser description, and a
second sorted set its last use (score = Unix time in ms), for the security page.
"""

from __future__ import annotations

import hashlib
import hmac
import json
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

    def _info_key(self, agent_id: int) -> str:
        return f"{self._prefix}devices-info:{agent_id}"

    def _used_key(self, agent_id: int) -> str:
        return f"{self._prefix}devices-used:{agent_id}"

    def remember(self, agent_id: int, browser: str = "") -> str:
        device_id = secrets.token_urlsafe(16)
        now_ms = int(time.time() * 1000)
        key = self._key(agent_id)
        info = json.dumps({"created": now_ms / 1000, "browser": browser})
        # Each call renews the keys' TTL, so without this cleanup the details of
        # expired devices would stay while the agent keeps remembering browsers.
        expired = self._client.zrangebyscore(key, "-inf", now_ms)
        pipeline = self._client.pipeline(transaction=True)
        pipeline.zremrangebyscore(key, "-inf", now_ms)
        if expired:
            pipeline.hdel(self._info_key(agent_id), *expired)
            pipeline.zrem(self._used_key(agent_id), *expired)
        pipeline.zadd(key, {device_id: now_ms + self.ttl_seconds * 1000})
        pipeline.hset(self._info_key(agent_id), device_id, info)
        pipeline.zadd(self._used_key(agent_id), {device_id: now_ms})
        for name in (key, self._info_key(agent_id), self._used_key(agent_id)):
            pipeline.expire(name, self.ttl_seconds)
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
        now_ms = int(time.time() * 1000)
        expires_ms = self._client.zscore(self._key(agent_id), device_id)
        if expires_ms is None or expires_ms <= now_ms:
            return False
        self._client.zadd(self._used_key(agent_id), {device_id: now_ms}, xx=True)
        return True

    def list_devices(self, agent_id: int) -> list[dict]:
        """Return the unexpired devices, most recently used first."""
        now_ms = int(time.time() * 1000)
        live = self._client.zrangebyscore(self._key(agent_id), now_ms, "+inf")
        device_ids = [raw.decode() for raw in live]
        if not device_ids:
            return []
        infos = self._client.hmget(self._info_key(agent_id), device_ids)
        devices = []
        for device_id, raw_info in zip(device_ids, infos, strict=True):
            info = json.loads(raw_info) if raw_info else {}
            last_used_ms = self._client.zscore(self._used_key(agent_id), device_id)
            devices.append(
                {
                    "handle": device_handle(device_id),
                    "created": info.get("created"),
                    "last_used": last_used_ms / 1000 if last_used_ms else None,
                    "browser": info.get("browser", ""),
                }
            )
        return sorted(devices, key=lambda item: item["last_used"] or 0, reverse=True)

    def revoke(self, agent_id: int, handle: str) -> bool:
        """Forget the device whose handle is ``handle``; return False if none."""
        # Handles are hex digests, and compare_digest raises on non-ASCII text.
        if not handle.isascii():
            return False
        for raw in self._client.zrange(self._key(agent_id), 0, -1):
            device_id = raw.decode()
            if hmac.compare_digest(device_handle(device_id), handle):
                pipeline = self._client.pipeline(transaction=True)
                pipeline.zrem(self._key(agent_id), device_id)
                pipeline.hdel(self._info_key(agent_id), device_id)
                pipeline.zrem(self._used_key(agent_id), device_id)
                pipeline.execute()
                return True
        return False

    def revoke_all(self, agent_id: int) -> None:
        self._client.delete(
            self._key(agent_id), self._info_key(agent_id), self._used_key(agent_id)
        )


def device_handle(device_id: str) -> str:
    """Name a device on the security page without revealing its id."""
    return hashlib.sha256(b"device handle:" + device_id.encode()).hexdigest()[:20]
