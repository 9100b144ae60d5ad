import time
import uuid

import pytest
import redis
from gatehouse.gateway.sessions import RedisSessionStore


@pytest.fixture
def store():
    prefix = f"test-{uuid.uuid4().hex}:"
    client = redis.Redis()
    yield RedisSessionStore(client, prefix, idle_timeout=60, absolute_timeout=3600)
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)


def test_saved_session_loads_back(store):
    store.save("session-a", {"_created": time.time(), "agent_id": 1})

    assert store.load("session-a")["agent_id"] == 1


def test_session_id_not_stored_in_clear(store):
    store.save("session-a", {"_created": time.time()})

    keys = [key.decode() for key in store.client.scan_iter(match=f"{store.prefix}*")]

    assert keys
    assert not any("session-a" in key for key in keys)


def test_idle_timeout_is_redis_ttl(store):
    store.save("session-a", {"_created": time.time()})

    ttl = store.client.ttl(
        next(store.client.scan_iter(match=f"{store.prefix}session:*"))
    )

    assert 55 <= ttl <= 60


def test_absolute_timeout_ends_session(store):
    store.save("session-a", {"_created": time.time() - 3601, "agent_id": 1})

    assert store.load("session-a") is None


def test_end_all_keeps_current_session(store):
    now = time.time()
    for name in ("one", "two", "three"):
        store.save(name, {"_created": now, "agent_id": 5})
    store.save("other-agent", {"_created": now, "agent_id": 6})

    ended = store.end_all(5, keep_session_id="two")

    assert ended == 2
    assert store.load("one") is None
    assert store.load("three") is None
    assert store.load("two") is not None
    assert store.load("other-agent") is not None


def test_session_data_sealed_at_rest(store):
    store.save(
        "session-a",
        {
            "_created": time.time(),
            "agent_id": 1,
            "reset_token": "reset-token-value-123",
        },
    )

    (key,) = store.client.scan_iter(match=f"{store.prefix}session:*")
    stored = store.client.get(key)

    assert b"reset-token-value-123" not in stored
    assert store.load("session-a")["reset_token"] == "reset-token-value-123"


def test_sealed_data_bound_to_its_key(store):
    now = time.time()
    store.save("session-a", {"_created": now, "secret": "a"})
    store.save("session-b", {"_created": now, "secret": "b"})
    keys = {
        key.decode(): store.client.get(key)
        for key in store.client.scan_iter(match=f"{store.prefix}session:*")
    }
    first, second = sorted(keys)

    store.client.set(first, keys[second])
    store.client.set(second, keys[first])

    assert store.load("session-a") is None
    assert store.load("session-b") is None
