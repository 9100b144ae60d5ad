"""Audit events queued in Redis by the gateway for the identity service to store.

Pushing an event costs the gateway one Redis command instead of an HTTP call
and an SQL commit per event. Identity drains the list in batches, one commit per
batch. An event contains only what the audit table stores: the client address is
already a keyed hash, never the address itself.
"""

from __future__ import annotations

import json
import time

import redis

from .logs import current_request_id

QUEUE_KEY = "id:audit-queue"


def queue_audit_event(
    client: redis.Redis,
    redis_prefix: str,
    agent_id: int | None,
    event: str,
    ip_hash: str | None,
    user_agent: str | None,
    detail: dict | None = None,
) -> None:
    """Append one event to the queue; a Redis error propagates to the caller."""
    entry = {
        "time": time.time(),
        "agent_id": agent_id,
        "event": event,
        "ip_hash": ip_hash,
        "user_agent": user_agent,
        "request_id": current_request_id(),
        "detail": detail or {},
    }
    client.rpush(redis_prefix + QUEUE_KEY, json.dumps(entry))
