"""The throttle limits identity applies, built from its configuration."""

from __future__ import annotations

import hashlib
import unicodedata

from gatehouse.common.device_cookie import DeviceCookieCodec
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
    def __init__(self, config: IdentityConfig, secret_key: str) -> None:
        self._config = config
        self.device_cookies = DeviceCookieCodec(
            secret_key, config.device_cookie_days * 86400
        )

    def login_limits(
        self, login: object, ip_hash: str, device_cookie: object = None
    ) -> list[Limit]:
        """Limits on failed password checks: per login (known or not) or per
        (login, device), per client IP and for the whole service.

        A request carrying a valid device cookie entry for ``login`` is counted
        only in that device's windows, so a full per-login window does not block
        it. Forged, expired and other logins' entries count as no cookie.
        """
        config = self._config
        login_text = login if isinstance(login, str) else ""
        cookie = device_cookie if isinstance(device_cookie, str) else None
        device_id = self.device_cookies.find(cookie, login_text)
        if device_id is None:
            account_limits = self._untrusted_limits(login_text)
        else:
            account_limits = self._device_limits(login_text, device_id)
        return [
            *account_limits,
            Limit("ip", f"ip:{ip_hash}", config.ip_max_failures, config.ip_window),
            Limit("global", "global", config.global_max_failures, config.global_window),
        ]

    def _device_limits(self, login_text: str, device_id: str) -> list[Limit]:
        # The key starts with the login's key, so clearing the login's windows
        # (agentctl agent unlock) clears its device windows too.
        key = f"{login_throttle_key(login_text)}:device:{device_id}"
        config = self._config
        return [
            Limit("device", key, config.device_max_failures, config.device_window),
            Limit(
                "device-hour",
                key,
                config.device_long_max_failures,
                config.device_long_window,
            ),
        ]

    def _untrusted_limits(self, login_text: str) -> list[Limit]:
        config = self._config
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
