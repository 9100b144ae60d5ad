"""Configuration read from the environment, shared by every service and agentctl.

Every variable is documented in README.md. Secrets come from the environment. In
development (``GATEHOUSE_ENV=development``) missing secrets are generated once and
kept in ``dev-secrets.json`` under the data folder, so ``make run`` and ``agentctl``
agree without any set-up. Outside development a missing secret stops the process.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.fernet import Fernet

log = logging.getLogger(__name__)

CHECKOUT_DIR = Path(__file__).resolve().parent.parent

SECRET_VARIABLES = (
    "GATEHOUSE_SECRET_KEY",
    "GATEHOUSE_SERVICE_TOKEN",
    "GATEHOUSE_OTP_KEYS",
    "GATEHOUSE_LOG_HASH_KEY",
)


class ConfigError(RuntimeError):
    """A variable is missing or invalid; the message names it."""


def env_str(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def env_int(
    name: str, default: int, minimum: int | None = None, maximum: int | None = None
) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={value} is below the minimum {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={value} is above the maximum {maximum}")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean; use on or off")


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def _generate_dev_secrets() -> dict[str, str]:
    return {
        "GATEHOUSE_SECRET_KEY": secrets.token_urlsafe(32),
        "GATEHOUSE_SERVICE_TOKEN": secrets.token_urlsafe(32),
        "GATEHOUSE_OTP_KEYS": Fernet.generate_key().decode(),
        "GATEHOUSE_LOG_HASH_KEY": secrets.token_urlsafe(32),
    }


def load_dev_secrets(data_dir: Path) -> dict[str, str]:
    """Return the development secrets, creating the file with mode 0600 once."""
    path = data_dir / "dev-secrets.json"
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return json.loads(path.read_text())
    with os.fdopen(fd, "w") as handle:
        json.dump(_generate_dev_secrets(), handle)
    log.warning("config.dev_secrets_created", extra={"path": str(path)})
    return json.loads(path.read_text())


@dataclass(frozen=True)
class Settings:
    """Settings every component reads; service-specific ones live beside each app."""

    environment: str
    data_dir: Path
    redis_url: str
    redis_prefix: str
    amqp_url: str
    amqp_prefix: str
    identity_url: str
    otp_urls: list[str]
    secret_key: str = field(repr=False)
    service_token: str = field(repr=False)
    otp_keys: list[str] = field(repr=False)
    log_hash_key: str = field(repr=False)
    log_format: str = "text"

    @property
    def development(self) -> bool:
        return self.environment == "development"


# Secrets that are random strings rather than keys with a format of their own.
MIN_SECRET_LENGTH = 32


def _secret(name: str, dev_secrets: dict[str, str] | None) -> str:
    value = os.environ.get(name, "")
    if value:
        if name != "GATEHOUSE_OTP_KEYS" and len(value) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"{name} is too short ({len(value)} characters); use at least "
                f"{MIN_SECRET_LENGTH} random characters, for example from "
                "'openssl rand -hex 32'"
            )
        return value
    if dev_secrets is not None:
        return dev_secrets[name]
    raise ConfigError(
        f"{name} is not set; production needs every secret "
        f"({', '.join(SECRET_VARIABLES)}), or set GATEHOUSE_ENV=development"
    )


def load_settings() -> Settings:
    """Read the shared settings from the environment; raise ConfigError if invalid."""
    environment = env_str("GATEHOUSE_ENV", "development")
    if environment not in ("development", "production"):
        raise ConfigError(
            f"GATEHOUSE_ENV={environment!r} is invalid; use development or production"
        )
    data_dir = Path(env_str("GATEHOUSE_DATA_DIR", str(CHECKOUT_DIR / "var"))).resolve()
    dev_secrets = load_dev_secrets(data_dir) if environment == "development" else None

    identity_port = env_int("IDENTITY_PORT", 8081, 1, 65535)
    otp_port = env_int("OTP_PORT", 8082, 1, 65535)
    otp_replicas = env_int("OTP_REPLICAS", 1, 1, 16)
    default_otp_urls = [
        f"http://127.0.0.1:{otp_port + index}" for index in range(otp_replicas)
    ]
    log_format = env_str(
        "GATEHOUSE_LOG_FORMAT", "text" if environment == "development" else "json"
    )

    return Settings(
        environment=environment,
        data_dir=data_dir,
        redis_url=env_str("REDIS_URL", "redis://127.0.0.1:6379/0"),
        redis_prefix=env_str("GATEHOUSE_REDIS_PREFIX", "gatehouse:"),
        amqp_url=env_str("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"),
        amqp_prefix=env_str("GATEHOUSE_AMQP_PREFIX", "gatehouse"),
        identity_url=env_str("IDENTITY_URL", f"http://127.0.0.1:{identity_port}"),
        otp_urls=env_list("OTP_URLS", default_otp_urls),
        secret_key=_secret("GATEHOUSE_SECRET_KEY", dev_secrets),
        service_token=_secret("GATEHOUSE_SERVICE_TOKEN", dev_secrets),
        otp_keys=_secret("GATEHOUSE_OTP_KEYS", dev_secrets).split(","),
        log_hash_key=_secret("GATEHOUSE_LOG_HASH_KEY", dev_secrets),
        log_format=log_format,
    )
