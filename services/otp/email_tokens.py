"""Email tokens in Redis: only a keyed hash is stored, and each token works once.

Per agent and purpose (login or enrollment) there is at most one live token. Issuing
a new one replaces the old, so only the code in the newest mail works. A marker
outlives each token by ``MARKER_TTL_MS``, so a late submission is classified:
"expired" when a token was issued and ran out, "invalid" when none was issued or
the code is wrong. The hash of the last accepted token is kept for
``MARKER_TTL_MS`` too, so entering it again is reported as a replay. Every change
is one Lua script, so replicas cannot interleave.
"""

from __future__ import annotations

import logging
import secrets

import redis

from .interfaces import (
    InvalidToken,
    ReplayedToken,
    ResendTooSoon,
    TokenExpired,
    TooManyAttempts,
)
from .keys import keyed_hash

log = logging.getLogger(__name__)

PURPOSES = ("login", "enrollment")
MARKER_TTL_MS = 24 * 3600 * 1000
SEND_WINDOW_MS = 3600 * 1000

# KEYS: cooldown, send log. ARGV: cooldown ms, hourly cap, reservation id, window ms.
# Returns {1, 0} when the send is allowed, else {0, wait in ms}.
_RESERVE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local cooldown_ms = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local window = tonumber(ARGV[4])
local left = redis.call('PTTL', KEYS[1])
if left > 0 then
  return {0, left}
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
if redis.call('ZCARD', KEYS[2]) >= cap then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {0, tonumber(oldest[2]) + window - now}
end
if cooldown_ms > 0 then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', cooldown_ms)
end
redis.call('ZADD', KEYS[2], now, ARGV[3])
redis.call('PEXPIRE', KEYS[2], window)
return {1, 0}
"""

# KEYS: cooldown, send log. ARGV: reservation id.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: token, marker, superseded hashes. ARGV: hash, token ttl ms, marker ttl ms.
_STORE = """
local previous = redis.call('HGET', KEYS[2], 'h')
if previous then
  redis.call('SADD', KEYS[3], previous)
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'h', ARGV[1], 'tries', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'state', 'issued', 'h', ARGV[1])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]) + tonumber(ARGV[3]))
return 1
"""

# KEYS: token, marker, superseded hashes, cooldown, last accepted hash.
# ARGV: hash, max attempts, marker ttl ms.
# Both sides of the comparison are HMAC outputs under a server key, so the time a
# plain string comparison takes reveals nothing about the code. A wrong code
# counts as a try even when it is the replay of an accepted one.
_VERIFY = """
local stored = redis.call('HGET', KEYS[1], 'h')
local replayed = redis.call('GET', KEYS[5]) == ARGV[1]
if not stored then
  if replayed then return 'replayed' end
  local state = redis.call('HGET', KEYS[2], 'state')
  if state == 'exhausted' then return 'exhausted' end
  if state == 'issued' then return 'expired' end
  return 'missing'
end
if stored == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
  redis.call('SET', KEYS[5], ARGV[1], 'PX', ARGV[3])
  return 'ok'
end
local tries = redis.call('HINCRBY', KEYS[1], 'tries', 1)
if tries >= tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'state', 'exhausted')
  return 'exhausted'
end
if replayed then
  return 'replayed'
end
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then
  return 'superseded'
end
return 'wrong'
"""


def generate_code(digits: int) -> str:
    """Return a uniformly random code of ``digits`` decimal digits."""
    return str(secrets.randbelow(10**digits)).zfill(digits)


class RedisEmailTokenStore:
    def __init__(
        self,
        client: redis.Redis,
        key_prefix: str,
        hash_key: bytes,
        resend_cooldown: int,
        resend_hourly_cap: int,
        max_attempts: int,
    ) -> None:
        self._client = client
        self._prefix = key_prefix
        self._hash_key = hash_key
        self._cooldown_ms = resend_cooldown * 1000
        self._hourly_cap = resend_hourly_cap
        self._max_attempts = max_attempts
        self._reserve = client.register_script(_RESERVE)
        self._release = client.register_script(_RELEASE)
        self._store = client.register_script(_STORE)
        self._verify = client.register_script(_VERIFY)

    def _keys(self, agent_id: int, purpose: str) -> list[str]:
        if purpose not in PURPOSES:
            raise ValueError(f"unknown token purpose {purpose!r}")
        base = f"{self._prefix}email:"
        suffix = f"{purpose}:{agent_id}"
        return [
            f"{base}token:{suffix}",
            f"{base}marker:{suffix}",
            f"{base}superseded:{suffix}",
            f"{base}cooldown:{suffix}",
            f"{base}accepted:{suffix}",
        ]

    def _send_log(self, agent_id: int) -> str:
        return f"{self._prefix}email:sends:{agent_id}"

    def _hash(self, agent_id: int, purpose: str, code: str) -> str:
        return keyed_hash(self._hash_key, f"{purpose}:{agent_id}:{code}")

    def reserve_send(self, agent_id: int, purpose: str) -> str:
        reservation = secrets.token_hex(8)
        cooldown_key = self._keys(agent_id, purpose)[3]
        allowed, wait_ms = self._reserve(
            keys=[cooldown_key, self._send_log(agent_id)],
            args=[self._cooldown_ms, self._hourly_cap, reservation, SEND_WINDOW_MS],
        )
        if not allowed:
            raise ResendTooSoon(
                retry_after=max(1, -(-int(wait_ms) // 1000)),
                hourly_cap=int(wait_ms) > self._cooldown_ms,
            )
        return reservation

    def release_send(self, agent_id: int, purpose: str, reservation: str) -> None:
        cooldown_key = self._keys(agent_id, purpose)[3]
        self._release(keys=[cooldown_key, self._send_log(agent_id)], args=[reservation])

    def store(self, agent_id: int, purpose: str, code: str, ttl_ms: int) -> None:
        token_key, marker_key, superseded_key, *_ = self._keys(agent_id, purpose)
        self._store(
            keys=[token_key, marker_key, superseded_key],
            args=[self._hash(agent_id, purpose, code), max(1, ttl_ms), MARKER_TTL_MS],
        )

    def verify(self, agent_id: int, purpose: str, code: str) -> None:
        outcome = self._verify(
            keys=self._keys(agent_id, purpose),
            args=[
                self._hash(agent_id, purpose, code),
                self._max_attempts,
                MARKER_TTL_MS,
            ],
        )
        outcome = outcome.decode() if isinstance(outcome, bytes) else outcome
        if outcome == "ok":
            return
        if outcome == "expired":
            raise TokenExpired()
        if outcome == "exhausted":
            raise TooManyAttempts()
        if outcome == "replayed":
            raise ReplayedToken("This code was already used. Request a new code.")
        if outcome == "superseded":
            raise InvalidToken(
                "This code was replaced by a newer one. Only the code in the "
                "newest mail works."
            )
        raise InvalidToken()

    def discard(self, agent_id: int) -> None:
        keys = []
        for purpose in PURPOSES:
            key_names = self._keys(agent_id, purpose)
            keys += [*key_names[:3], key_names[4]]
        self._client.delete(*keys)
