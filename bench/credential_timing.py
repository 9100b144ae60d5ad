"""Time signing and verifying one service credential.

Run ``python -m bench.credential_timing [--redis-url URL]`` from the checkout. It
prints the best of five ``timeit`` repeats, in microseconds per call, for a
verification request body like the one the gateway sends to OTP. With
``--redis-url`` it also times the nonce check (one ``SET NX EX``) against that Redis,
under a random key prefix that it deletes afterwards.
"""

from __future__ import annotations

import argparse
import json
import timeit
import uuid

import redis
from gatehouse.common.internal import RedisNonceStore
from gatehouse.common.servicekeys import (
    format_public_key,
    generate_signing_key,
    parse_public_keys,
    sign_request,
    verify_request,
)

CALLS = 2000
REPEATS = 5
PATH = "/v1/verifications"


def _time(name: str, function) -> None:
    best = min(timeit.repeat(function, number=CALLS, repeat=REPEATS))
    print(f"{name:12} {best / CALLS * 1e6:7.1f} us per call")


def _time_nonce_store(redis_url: str, ring, header: str, body: bytes) -> None:
    client = redis.Redis.from_url(redis_url)
    prefix = f"bench-nonce-{uuid.uuid4().hex}:"
    store = RedisNonceStore(client, prefix)
    credential = verify_request(ring, "otp", header, "POST", PATH, body)
    try:
        _time("nonce check", lambda: store.first_use("otp", credential))
    finally:
        for stored in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(stored)
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", help="also time the nonce check on this Redis")
    arguments = parser.parse_args()
    key = generate_signing_key("gateway", "bench")
    ring = parse_public_keys(format_public_key(key))
    body = json.dumps(
        {"agent_id": 41, "token": "123456", "client_ip": "203.0.113.9"}
    ).encode()
    header = sign_request(key, "otp", "POST", PATH, body)

    def sign() -> None:
        sign_request(key, "otp", "POST", PATH, body)

    def verify() -> None:
        verify_request(ring, "otp", header, "POST", PATH, body)

    def both() -> None:
        verify_request(
            ring,
            "otp",
            sign_request(key, "otp", "POST", PATH, body),
            "POST",
            PATH,
            body,
        )

    for name, function in (("sign", sign), ("verify", verify), ("sign+verify", both)):
        _time(name, function)
    if arguments.redis_url:
        _time_nonce_store(arguments.redis_url, ring, header, body)


if __name__ == "__main__":
    main()
