"""OTP service settings: defaults, then the environment, then test overrides.

Each variable is documented in docs/otp.md. The shared settings (Redis, RabbitMQ,
secrets) come from ``gatehouse.common.config.load_settings``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gatehouse.common.config import ConfigError, env_int, env_list, env_str

# name: (default, minimum, maximum); every one is a whole number.
INTEGER_VARIABLES: dict[str, tuple[int, int, int]] = {
    "OTP_TOKEN_DIGITS": (6, 6, 10),
    "OTP_TOKEN_TTL": (600, 1, 86400),
    "OTP_RESEND_COOLDOWN": (30, 0, 3600),
    "OTP_RESEND_HOURLY_CAP": (5, 1, 1000),
    "OTP_MAX_TOKEN_ATTEMPTS": (5, 1, 100),
    "OTP_ENROLLMENT_TTL": (600, 1, 86400),
    "OTP_DEVICE_TTL": (30 * 86400, 60, 400 * 86400),
    "OTP_THROTTLE_AGENT_SHORT_MAX": (5, 1, 1_000_000),
    "OTP_THROTTLE_AGENT_SHORT_WINDOW": (300, 1, 86400),
    "OTP_THROTTLE_AGENT_LONG_MAX": (20, 1, 1_000_000),
    "OTP_THROTTLE_AGENT_LONG_WINDOW": (3600, 1, 86400),
    "OTP_THROTTLE_IP_MAX": (30, 1, 1_000_000),
    "OTP_THROTTLE_IP_WINDOW": (300, 1, 86400),
    "OTP_THROTTLE_GLOBAL_MAX": (2000, 1, 1_000_000),
    "OTP_THROTTLE_GLOBAL_WINDOW": (60, 1, 86400),
    "OTP_WEBAUTHN_CHALLENGE_TTL": (300, 30, 1800),
    "OTP_WEBAUTHN_MAX_KEYS": (10, 1, 100),
}


@dataclass(frozen=True)
class ThrottleLimits:
    agent_short_max: int
    agent_short_window: int
    agent_long_max: int
    agent_long_window: int
    ip_max: int
    ip_window: int
    global_max: int
    global_window: int


@dataclass(frozen=True)
class OtpConfig:
    """Settings that only the OTP service reads; times are in seconds."""

    token_digits: int
    token_ttl: int
    totp_issuer: str
    resend_cooldown: int
    resend_hourly_cap: int
    max_token_attempts: int
    enrollment_ttl: int
    device_ttl: int
    database_url: str
    throttle: ThrottleLimits
    throttle_exempt_agents: frozenset[int]
    webauthn_challenge_ttl: int
    webauthn_max_keys: int


def default_database_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'otp.sqlite3'}"


def read_environment(data_dir: Path) -> dict:
    """Return the OTP variables from the environment, with defaults filled in."""
    values: dict = {
        name: env_int(name, default, minimum, maximum)
        for name, (default, minimum, maximum) in INTEGER_VARIABLES.items()
    }
    values["OTP_TOTP_ISSUER"] = env_str("OTP_TOTP_ISSUER", "gatehouse")
    values["OTP_DATABASE_URL"] = env_str(
        "OTP_DATABASE_URL", default_database_url(data_dir)
    )
    values["OTP_THROTTLE_EXEMPT_AGENTS"] = env_list("OTP_THROTTLE_EXEMPT_AGENTS", [])
    return values


def _exempt_agents(raw) -> frozenset[int]:
    items = raw.split(",") if isinstance(raw, str) else raw
    agents = set()
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            agents.add(int(text))
        except ValueError:
            raise ConfigError(
                f"OTP_THROTTLE_EXEMPT_AGENTS contains {text!r}, which is not an "
                "agent id; use a comma-separated list of numbers"
            ) from None
    return frozenset(agents)


def build_config(values: dict) -> OtpConfig:
    """Check ``values`` (a mapping of the variables above); raise ConfigError."""
    for name, (_default, minimum, maximum) in INTEGER_VARIABLES.items():
        value = values[name]
        if not isinstance(value, int) or not minimum <= value <= maximum:
            raise ConfigError(
                f"{name}={value!r} is invalid; use a whole number from "
                f"{minimum} to {maximum}"
            )
    issuer = str(values["OTP_TOTP_ISSUER"]).strip()
    if not issuer or len(issuer) > 100:
        raise ConfigError("OTP_TOTP_ISSUER must be 1 to 100 characters long")

    return OtpConfig(
        token_digits=values["OTP_TOKEN_DIGITS"],
        token_ttl=values["OTP_TOKEN_TTL"],
        totp_issuer=issuer,
        resend_cooldown=values["OTP_RESEND_COOLDOWN"],
        resend_hourly_cap=values["OTP_RESEND_HOURLY_CAP"],
        max_token_attempts=values["OTP_MAX_TOKEN_ATTEMPTS"],
        enrollment_ttl=values["OTP_ENROLLMENT_TTL"],
        device_ttl=values["OTP_DEVICE_TTL"],
        database_url=values["OTP_DATABASE_URL"],
        throttle=ThrottleLimits(
            agent_short_max=values["OTP_THROTTLE_AGENT_SHORT_MAX"],
            agent_short_window=values["OTP_THROTTLE_AGENT_SHORT_WINDOW"],
            agent_long_max=values["OTP_THROTTLE_AGENT_LONG_MAX"],
            agent_long_window=values["OTP_THROTTLE_AGENT_LONG_WINDOW"],
            ip_max=values["OTP_THROTTLE_IP_MAX"],
            ip_window=values["OTP_THROTTLE_IP_WINDOW"],
            global_max=values["OTP_THROTTLE_GLOBAL_MAX"],
            global_window=values["OTP_THROTTLE_GLOBAL_WINDOW"],
        ),
        throttle_exempt_agents=_exempt_agents(values["OTP_THROTTLE_EXEMPT_AGENTS"]),
        webauthn_challenge_ttl=values["OTP_WEBAUTHN_CHALLENGE_TTL"],
        webauthn_max_keys=values["OTP_WEBAUTHN_MAX_KEYS"],
    )


def load_otp_config(data_dir: Path, overrides: dict | None = None) -> OtpConfig:
    """Read the environment, apply ``overrides`` and check the result."""
    values = read_environment(data_dir)
    values.update({k: v for k, v in (overrides or {}).items() if k in values})
    return build_config(values)
