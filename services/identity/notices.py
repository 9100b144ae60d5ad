"""Notice mails about sign-in events: their parameters and flood control."""

from __future__ import annotations

import unicodedata

import redis

# Events whose mail names the browser and the time. The browser is a short
# description such as "Firefox on Linux" that the gateway derives from the
# User-Agent header. No notice carries the client's IP address.
BROWSER_EVENTS = ("browser_remembered", "new_browser")
# Events sent at most once per agent per IDENTITY_NEW_BROWSER_NOTICE_INTERVAL
# seconds, unless the interval is 0.
LIMITED_EVENTS = ("new_browser",)
MAX_BROWSER_LENGTH = 60


def clean_browser(value: object) -> str:
    """Return ``value`` without control characters, cut to 60 characters."""
    if not isinstance(value, str):
        return ""
    text = "".join(
        char for char in value if unicodedata.category(char)[0] != "C"
    ).strip()
    return text[:MAX_BROWSER_LENGTH]


def notice_params(event: str, browser: object) -> dict:
    """Return the mail job params of a notice about ``event``."""
    params: dict = {"event": event}
    if event in BROWSER_EVENTS:
        params["browser"] = clean_browser(browser) or "unknown browser"
    return params


class RedisNoticeLimiter:
    """Allow one notice of a limited event per agent per interval."""

    def __init__(self, client: redis.Redis, key_prefix: str, interval: int) -> None:
        self._client = client
        self._prefix = key_prefix
        self.interval = interval

    def claim(self, agent_id: int, event: str) -> bool:
        """Return True if a notice of ``event`` may go to the agent now."""
        if event not in LIMITED_EVENTS or self.interval == 0:
            return True
        key = f"{self._prefix}notice-sent:{event}:{agent_id}"
        return bool(self._client.set(key, "1", nx=True, ex=self.interval))
