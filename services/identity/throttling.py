"""The throttle limits identity applies, built from its configuration."""

from __future__ import annotations

import hashlib
import unicodedata

from gatehouse.common.ratelimit import Limit

from .config import IdentityConfig

LOGIN_THROTTLE_PREFIX = "id:throttle:"
RESET_THROTTLE_PREFIX = "id:reset-throttle:"


def login_throttle_key(login: str) -> str:
    """Return the Redis key part for a login, the same for every spelling case.

    The login is hashed so that arbitrary input never shapes Redis key names.
    """
    folded = unicodedata.normalize("NFC", login).lower()
    return "login:" + hashlib.sha256(folded.encode()).hexdigest()[:32]


class ThrottleLimits:
    def __init__(self, config: IdentityConfig) -> None:
        self._config = config

    def login_limits(self, login: object, ip_hash: str) -> list[Limit]:
        """Limits on failed password checks: per login (known or not), per client
        IP and for the whole service."""
        config = self._config
        login_text = login if isinstance(login, str) else ""
        return [
            Limit(
                "login",
                login_throttle_key(login_text),
                config.login_max_failures,
                config.login_window,
            ),
            Limit(
                "login-hour",
                login_throttle_key(login_text),
                config.login_long_max_failures,
                config.login_long_window,
            ),
            Limit("ip", f"ip:{ip_hash}", config.ip_max_failures, config.ip_window),
            Limit("global", "global", config.global_max_failures, config.global_window),
        ]

    def reset_limits(self, login: object, ip_hash: str) -> list[Limit]:
        """Limits on reset requests (every request counts, known login or not)."""
        config = self._config
        login_text = login if isinstance(login, str) else ""
        return [
            Limit(
                "reset-login",
                login_throttle_key(login_text),
                config.reset_login_max,
                config.reset_window,
            ),
            Limit(
                "reset-ip", f"ip:{ip_hash}", config.reset_ip_max, config.reset_window
            ),
        ]
