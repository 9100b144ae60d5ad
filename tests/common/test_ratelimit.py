import time
import uuid

import pytest
import redis
from gatehouse.common.ratelimit import FailureThrottle, Limit, Throttled


@pytest.fixture
def throttle():
    client = redis.Redis()
    prefix = f"test-{uuid.uuid4().hex}:"
    yield FailureThrottle(client, prefix)
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)


def test_check_passes_below_limit(throttle):
    limits = [Limit("agent", "agent:1", 3, 60)]

    throttle.record_failure(limits)
    throttle.record_failure(limits)

    throttle.check(limits)


def test_failure_that_fills_window_raises(throttle):
    limits = [Limit("agent", "agent:1", 2, 60)]
    throttle.record_failure(limits)

    with pytest.raises(Throttled) as raised:
        throttle.record_failure(limits)

    assert raised.value.limit_name == "agent"
    assert 59 <= raised.value.retry_after <= 60


def test_full_window_blocks_check(throttle):
    limits = [Limit("agent", "agent:1", 1, 60)]
    with pytest.raises(Throttled):
        throttle.record_failure(limits)

    with pytest.raises(Throttled):
        throttle.check(limits)


def test_window_releases_after_expiry(throttle):
    limits = [Limit("agent", "agent:1", 1, 1)]
    with pytest.raises(Throttled):
        throttle.record_failure(limits)

    time.sleep(1.1)

    throttle.check(limits)


def test_longest_wait_is_reported(throttle):
    limits = [Limit("short", "agent:1", 1, 10), Limit("long", "agent:1", 1, 100)]

    with pytest.raises(Throttled) as raised:
        throttle.record_failure(limits)

    assert raised.value.limit_name == "long"


def test_other_keys_unaffected(throttle):
    with pytest.raises(Throttled):
        throttle.record_failure([Limit("agent", "agent:1", 1, 60)])

    throttle.check([Limit("agent", "agent:2", 1, 60)])


def test_clear_lifts_throttle(throttle):
    limits = [Limit("agent", "agent:1", 1, 60)]
    with pytest.raises(Throttled):
        throttle.record_failure(limits)

    removed = throttle.clear(["agent:1"])

    assert removed == 1
    throttle.check(limits)


def test_window_keeps_at_most_max_entries(throttle):
    limits = [Limit("agent", "agent:1", 3, 60)]
    for _ in range(10):
        try:
            throttle.record_failure(limits)
        except Throttled:
            pass

    stored = throttle._client.zcard(throttle._redis_key(limits[0]))

    assert stored == 3
