"""TOTP codes for the benchmark, computed independently of the servers' code.

Replay protection accepts a factor's code only for a time step later than the last
one it accepted, and the servers accept steps within one step of the current one
(RFC 6238 section 5.2). So a factor yields at most three accepted verifications
when it is fresh (steps c-1, c, c+1, used in that order) and then one more every
30 seconds. ``StepLedger`` hands out (factor, step) pairs that the server will
accept: each factor at most once per round, always at a step later than its last.
"""

from __future__ import annotations

import base64
import hmac
import struct
import time

TIME_STEP = 30
DRIFT_WINDOW = 1
# A code for step c-1 dies when step c ends; only hand it out if the round can
# finish before that.
MIN_SECONDS_LEFT_FOR_PREVIOUS_STEP = 10.0


def decode_secret(secret: str) -> bytes:
    cleaned = secret.replace(" ", "").upper()
    return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))


def hotp(key: bytes, counter: int, digits: int = 6) -> str:
    """Return the RFC 4226 HOTP value (HMAC-SHA1, dynamic truncation)."""
    mac = hmac.new(key, struct.pack(">Q", counter), "sha1").digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def current_step(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // TIME_STEP)


def seconds_left_in_step(now: float | None = None) -> float:
    now = time.time() if now is None else now
    return TIME_STEP - (now % TIME_STEP)


def wrong_code(key: bytes, step: int) -> str:
    """Return a code that matches no step in the drift window around ``step``."""
    valid = {
        hotp(key, step + offset)
        for offset in range(-DRIFT_WINDOW - 1, DRIFT_WINDOW + 2)
    }
    candidate = int(hotp(key, step + 7))
    while f"{candidate:06d}" in valid:
        candidate = (candidate + 1) % 10**6
    return f"{candidate:06d}"


class StepLedger:
    """The last accepted-or-spent time step per factor, and the next usable one."""

    def __init__(self, secrets: dict[object, str], last_used_step: int) -> None:
        self.keys = {
            factor: decode_secret(secret) for factor, secret in secrets.items()
        }
        self.last = dict.fromkeys(self.keys, last_used_step)

    def next_step(self, factor: object, now: float | None = None) -> int | None:
        """Return the smallest step the server will accept now, or None."""
        now = time.time() if now is None else now
        step = current_step(now)
        lowest = step - DRIFT_WINDOW
        if seconds_left_in_step(now) < MIN_SECONDS_LEFT_FOR_PREVIOUS_STEP:
            lowest = step
        candidate = max(self.last[factor] + 1, lowest)
        return candidate if candidate <= step + DRIFT_WINDOW else None

    def take(self, factor: object, now: float | None = None) -> str | None:
        """Return an accepted code for ``factor`` and mark its step spent, or None."""
        step = self.next_step(factor, now)
        if step is None:
            return None
        self.last[factor] = step
        return hotp(self.keys[factor], step)

    def plan_round(self, limit: int | None = None) -> list[tuple[object, str]]:
        """Return one accepted code per factor that has a usable step."""
        now = time.time()
        plan = []
        for factor in self.keys:
            if limit is not None and len(plan) >= limit:
                break
            code = self.take(factor, now)
            if code is not None:
                plan.append((factor, code))
        return plan

    def usable_now(self) -> int:
        now = time.time()
        return sum(1 for factor in self.keys if self.next_step(factor, now) is not None)
