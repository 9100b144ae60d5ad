"""TOTP replay protection: the last accepted time step per agent, in Redis."""

from __future__ import annotations

import redis

# Keep the state well past the drift window: after it expires, every step that
# was ever accepted is too old to match the current window anyway.
STATE_TTL_SECONDS = 3600

# KEYS: last accepted step. ARGV: candidate step, ttl seconds. The read and the
# write happen in one script, so two replicas given the same code at the same
# moment cannot both accept it.
_ACCEPT = """
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
local step = tonumber(ARGV[1])
if step <= last then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


class RedisReplayGuard:
    def __init__(self, client: redis.Redis, key_prefix: str) -> None:
        self._client = client
        self._prefix = key_prefix
        self._accept = client.register_script(_ACCEPT)

    def _key(self, agent_id: int) -> str:
        return f"{self._prefix}totp:last-step:{agent_id}"

    def accept(self, agent_id: int, step: int) -> bool:
        """Record ``step`` and return True only if it is later than every step
        accepted before for this agent."""
        accepted = self._accept(
            keys=[self._key(agent_id)], args=[step, STATE_TTL_SECONDS]
        )
        return bool(accepted)

    def reset(self, agent_id: int) -> None:
        self._client.delete(self._key(agent_id))
