"""Failure throttling in Redis: sliding-window logs, shared by every replica.

Each limit is a sorted set of failure times (milliseconds, from the Redis server's
clock so replicas with skewed clocks agree). A limit is exhausted while its window
contains ``max_failures`` entries. It frees itself as the oldest entries age out,
so throttling slows an attacker down and never locks anyone out for good.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

import redis

# KEYS: one sorted set per limit. ARGV[1]: "check" or "record"; ARGV[2]: a nonce that
# makes this call's entries unique; then max_failures and window_ms for each key.
# Returns {index of the limit that waits longest (0 when none), wait in ms}.
_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local record = ARGV[1] == 'record'
local worst_index, worst_wait = 0, 0
for i, key in ipairs(KEYS) do
  local max_failures = tonumber(ARGV[1 + 2 * i])
  local window = tonumber(ARGV[2 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if record then
    redis.call('ZADD', key, now, ARGV[2] .. ':' .. i)
    redis.call('PEXPIRE', key, window)
  end
  local count = redis.call('ZCARD', key)
  if count > max_failures then
    -- Only the newest max_failures entries decide when the window frees up.
    redis.call('ZREMRANGEBYRANK', key, 0, count - max_failures - 1)
    count = max_failures
  end
  if count >= max_failures then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local wait = tonumber(oldest[2]) + window - now
    if wait > worst_wait then
      worst_index, worst_wait = i, wait
    end
  end
end
return {worst_index, worst_wait}
"""


@dataclass(frozen=True)
class Limit:
    """At most ``max_failures`` failures per ``window_seconds`` for one key."""

    name: str
    key: str
    max_failures: int
    window_seconds: int


class Throttled(Exception):
    """A limit is exhausted; retry after ``retry_after`` whole seconds."""

    def __init__(self, limit_name: str, retry_after: int) -> None:
        super().__init__(f"throttled by {limit_name}, retry after {retry_after} s")
        self.limit_name = limit_name
        self.retry_after = retry_after


class FailureThrottle:
    """Count failures per key and refuse attempts while a window is full."""

    def __init__(self, client: redis.Redis, key_prefix: str) -> None:
        self._client = client
        self._prefix = key_prefix
        self._script = client.register_script(_SCRIPT)

    def _redis_key(self, limit: Limit) -> str:
        return f"{self._prefix}{limit.key}:{limit.window_seconds}"

    def _run(self, mode: str, limits: list[Limit]) -> None:
        if not limits:
            return
        keys = [self._redis_key(limit) for limit in limits]
        arguments: list[str | int] = [mode, secrets.token_hex(8)]
        for limit in limits:
            arguments += [limit.max_failures, limit.window_seconds * 1000]
        index, wait_ms = self._script(keys=keys, args=arguments)
        if index:
            retry_after = max(1, math.ceil(int(wait_ms) / 1000))
            raise Throttled(limits[int(index) - 1].name, retry_after)

    def check(self, limits: list[Limit]) -> None:
        """Raise Throttled if any limit's window is already full."""
        self._run("check", limits)

    def record_failure(self, limits: list[Limit]) -> None:
        """Add one failure to every limit; raise Throttled if one is now full."""
        self._run("record", limits)

    def clear(self, keys: list[str]) -> int:
        """Forget the failures recorded under ``keys`` (every window); return count."""
        removed = 0
        for key in keys:
            pattern = f"{self._prefix}{key}:*"
            for redis_key in self._client.scan_iter(match=pattern, count=100):
                removed += self._client.delete(redis_key)
        return removed
