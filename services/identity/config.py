"""Identity settings: defaults, then the environment, then test overrides.

The shared settings (data folder, Redis, RabbitMQ, secrets) come from
``gatehouse.common.config.load_settings``; these are the identity-only ones.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gatehouse.common.config import ConfigError, env_bool, env_int, env_str

# OWASP Password Storage Cheat Sheet: argon2id with 19 MiB, 2 iterations, 1 lane.
DEFAULT_ARGON2_MEMORY_KIB = 19 * 1024
DEFAULT_ARGON2_TIME_COST = 2
DEFAULT_ARGON2_PARALLELISM = 1

# NIST SP 800-63B has verifiers accept at least 64 characters. The cap of 1024
# bounds the hashing work per request.
MAX_PASSWORD_LENGTH = 1024

# An operator-issued initial password stops signing in after 72 hours. That
# covers a handover on Friday evening that the agent uses on Monday morning,
# while a password lost in a ticket or a chat stays usable for days, not months.
DEFAULT_INITIAL_PASSWORD_TTL = 72 * 3600


@dataclass(frozen=True)
class IdentityConfig:
    database_url: str
    argon2_memory_kib: int = DEFAULT_ARGON2_MEMORY_KIB
    argon2_time_cost: int = DEFAULT_ARGON2_TIME_COST
    argon2_parallelism: int = DEFAULT_ARGON2_PARALLELISM
    password_min_length: int = 12
    password_history: int = 5
    change_initial_password: bool = True
    hibp_enabled: bool = False
    hibp_url: str = ""
    hibp_timeout: float = 2.0
    reset_ttl: int = 1800
    initial_password_ttl: int = DEFAULT_INITIAL_PASSWORD_TTL
    # Run the mail outbox relay thread in this process. With False the process
    # only writes outbox rows, and mail waits until some identity process relays.
    mail_relay: bool = True
    # With True, `agentctl agent reset-2fa` requires --evidence and --new-password,
    # so recovering a lost factor repeats the enrollment ceremony.
    reset_2fa_requires_proofing: bool = False
    login_max_failures: int = 10
    login_window: int = 300
    # A second, longer window keeps a login under 50 failures an hour, which the
    # short window alone (10 per 5 minutes) would allow to reach 120.
    login_long_max_failures: int = 50
    login_long_window: int = 3600
    # Failures sent with a valid login device cookie count per (login, device)
    # instead of per login, so a guesser elsewhere cannot lock that browser out.
    device_max_failures: int = 10
    device_window: int = 300
    device_long_max_failures: int = 50
    device_long_window: int = 3600
    device_cookie_days: int = 180
    # At most one new-browser notice per agent in this many seconds.
    new_browser_notice_interval: int = 600
    ip_max_failures: int = 50
    ip_window: int = 300
    global_max_failures: int = 1000
    global_window: int = 60
    reset_login_max: int = 3
    reset_ip_max: int = 20
    reset_window: int = 900


# (field, variable, minimum, maximum) for every integer setting.
_INTEGER_OPTIONS = (
    ("argon2_memory_kib", "IDENTITY_ARGON2_MEMORY_KIB", 8, 4 * 1024 * 1024),
    ("argon2_time_cost", "IDENTITY_ARGON2_TIME_COST", 1, 100),
    ("argon2_parallelism", "IDENTITY_ARGON2_PARALLELISM", 1, 64),
    ("password_min_length", "GATEHOUSE_PASSWORD_MIN_LENGTH", 8, MAX_PASSWORD_LENGTH),
    ("password_history", "IDENTITY_PASSWORD_HISTORY", 0, 50),
    ("reset_ttl", "IDENTITY_RESET_TTL", 60, 7 * 24 * 3600),
    ("initial_password_ttl", "IDENTITY_INITIAL_PASSWORD_TTL", 60, 30 * 24 * 3600),
    ("login_max_failures", "IDENTITY_LOGIN_MAX_FAILURES", 1, 100000),
    ("login_window", "IDENTITY_LOGIN_WINDOW", 1, 86400),
    ("login_long_max_failures", "IDENTITY_LOGIN_LONG_MAX_FAILURES", 1, 100000),
    ("login_long_window", "IDENTITY_LOGIN_LONG_WINDOW", 1, 7 * 86400),
    ("device_max_failures", "IDENTITY_DEVICE_MAX_FAILURES", 1, 100000),
    ("device_window", "IDENTITY_DEVICE_WINDOW", 1, 86400),
    ("device_long_max_failures", "IDENTITY_DEVICE_LONG_MAX_FAILURES", 1, 100000),
    ("device_long_window", "IDENTITY_DEVICE_LONG_WINDOW", 1, 7 * 86400),
    ("device_cookie_days", "GATEHOUSE_DEVICE_COOKIE_DAYS", 1, 730),
    (
        "new_browser_notice_interval",
        "IDENTITY_NEW_BROWSER_NOTICE_INTERVAL",
        0,
        7 * 86400,
    ),
    ("ip_max_failures", "IDENTITY_IP_MAX_FAILURES", 1, 1000000),
    ("ip_window", "IDENTITY_IP_WINDOW", 1, 86400),
    ("global_max_failures", "IDENTITY_GLOBAL_MAX_FAILURES", 1, 10000000),
    ("global_window", "IDENTITY_GLOBAL_WINDOW", 1, 86400),
    ("reset_login_max", "IDENTITY_RESET_LOGIN_MAX", 1, 100000),
    ("reset_ip_max", "IDENTITY_RESET_IP_MAX", 1, 1000000),
    ("reset_window", "IDENTITY_RESET_WINDOW", 1, 86400),
)
_BOOLEAN_OPTIONS = (
    ("change_initial_password", "GATEHOUSE_CHANGE_INITIAL_PASSWORD"),
    ("hibp_enabled", "GATEHOUSE_HIBP_ENABLED"),
    ("mail_relay", "IDENTITY_MAIL_RELAY"),
    ("reset_2fa_requires_proofing", "IDENTITY_RESET_2FA_REQUIRES_PROOFING"),
)

VARIABLES = (
    "IDENTITY_DATABASE_URL",
    "GATEHOUSE_HIBP_URL",
    *(variable for _, variable, _, _ in _INTEGER_OPTIONS),
    *(variable for _, variable in _BOOLEAN_OPTIONS),
)


def default_database_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'identity.sqlite3'}"


def _checked_integer(variable: str, value: object, minimum: int, maximum: int) -> int:
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ConfigError(f"{variable}={value!r} is not an integer") from None
    if not minimum <= number <= maximum:
        raise ConfigError(f"{variable}={number} is outside {minimum}..{maximum}")
    return number


def load_identity_config(
    data_dir: Path, overrides: Mapping[str, object] | None = None
) -> IdentityConfig:
    """Read the identity settings; ``overrides`` (keyed by variable name) win over
    the environment. Raise ConfigError naming an invalid variable."""
    overrides = dict(overrides or {})
    values: dict[str, object] = {}

    values["database_url"] = overrides.get(
        "IDENTITY_DATABASE_URL",
        env_str("IDENTITY_DATABASE_URL", default_database_url(data_dir)),
    )
    for name, variable, minimum, maximum in _INTEGER_OPTIONS:
        default = getattr(IdentityConfig, name)
        raw = overrides.get(variable, env_int(variable, default))
        values[name] = _checked_integer(variable, raw, minimum, maximum)
    for name, variable in _BOOLEAN_OPTIONS:
        default = getattr(IdentityConfig, name)
        values[name] = bool(overrides.get(variable, env_bool(variable, default)))

    values["hibp_url"] = str(
        overrides.get("GATEHOUSE_HIBP_URL", os.environ.get("GATEHOUSE_HIBP_URL", ""))
    )
    if values["hibp_enabled"] and not values["hibp_url"]:
        # No built-in default: the operator names the range API explicitly.
        raise ConfigError(
            "GATEHOUSE_HIBP_ENABLED is on but GATEHOUSE_HIBP_URL is not set; set it "
            "to the range API prefix, e.g. https://api.pwnedpasswords.com/range/"
        )
    return IdentityConfig(**values)  # type: ignore[arg-type]
