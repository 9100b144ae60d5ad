"""Configuration read from the environment, shared by every service and agentctl.

Every variable is documented in README.md. Secrets come from the environment. In
development (``GATEHOUSE_ENV=development``) missing secrets are generated once and
kept in ``dev-secrets.json`` under the data folder, so ``make run`` and ``agentctl``
agree without any set-up. Outside development a missing secret stops the process.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.fernet import Fernet, MultiFernet

from .servicekeys import (
    CALLERS,
    PUBLIC_KEYS_VARIABLE,
    KeyFormatError,
    SigningKey,
    format_public_key,
    format_signing_key,
    generate_signing_key,
    parse_public_keys,
    parse_signing_key,
    signing_key_variable,
)

log = logging.getLogger(__name__)

CHECKOUT_DIR = Path(__file__).resolve().parent.parent

SECRET_VARIABLES = (
    "GATEHOUSE_SECRET_KEY",
    "GATEHOUSE_OTP_KEYS",
    "GATEHOUSE_LOG_HASH_KEY",
)
# Secrets that are comma lists of Fernet keys, whose format Fernet checks.
FERNET_KEY_VARIABLES = ("GATEHOUSE_OTP_KEYS", "GATEHOUSE_MAIL_JOB_KEYS")


def multi_fernet(variable: str, keys: list[str], missing_hint: str) -> MultiFernet:
    """Return a MultiFernet over ``keys``, newest first: the first key encrypts and
    every key decrypts. Raise ConfigError naming ``variable`` for a malformed
    entry, or with ``missing_hint`` when the list is empty."""
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key.strip()))
        except ValueError:
            raise ConfigError(
                f"{variable} entry {position} is not a Fernet key; create one "
                "with cryptography.fernet.Fernet.generate_key()"
            ) from None
    if not fernets:
        raise ConfigError(f"{variable} is not set; {missing_hint}")
    return MultiFernet(fernets)


# Compared with GATEWAY_HOST, never bound to.
LOCAL_BIND_ADDRESSES = frozenset({"127.0.0.1", "::1", "0.0.0.0", "::"})  # noqa: S104


def gateway_public_url() -> str:
    """Return the gateway's address as browsers see it: GATEHOUSE_PUBLIC_URL, or
    one built from GATEWAY_HOST and GATEWAY_PORT."""
    host = env_str("GATEWAY_HOST", "127.0.0.1")
    port = env_int("GATEWAY_PORT", 8080, 1, 65535)
    # WebAuthn accepts no IP address as RP ID, so a loopback or wildcard bind
    # defaults to the name localhost, which browsers treat as a secure context.
    public_host = "localhost" if host in LOCAL_BIND_ADDRESSES else host
    return env_str("GATEHOUSE_PUBLIC_URL", f"http://{public_host}:{port}")


# Development defaults. Outside development AMQP_URL and REDIS_URL must be set,
# so that no deployment uses the broker's well-known guest account or a local
# Redis without a password.
DEV_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
DEV_REDIS_URL = "redis://127.0.0.1:6379/0"


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
    signing_keys = {
        signing_key_variable(caller): format_signing_key(
            generate_signing_key(caller, "dev")
        )
        for caller in CALLERS
    }
    return {
        **signing_keys,
        "GATEHOUSE_SECRET_KEY": secrets.token_urlsafe(32),
        "GATEHOUSE_OTP_KEYS": Fernet.generate_key().decode(),
        "GATEHOUSE_LOG_HASH_KEY": secrets.token_urlsafe(32),
        "GATEHOUSE_MAIL_JOB_KEYS": Fernet.generate_key().decode(),
    }


def _write_dev_secrets(path: Path, values: dict[str, str]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(values, handle)
    os.replace(temporary, path)


def load_dev_secrets(data_dir: Path) -> dict[str, str]:
    """Return the development secrets, creating the file with mode 0600 once.

    A file written by an older version gets the secrets it lacks added. Every
    process of ``make run`` starts at once, so an exclusive lock on
    ``dev-secrets.lock`` makes them all read the same generated values.
    """
    path = data_dir / "dev-secrets.json"
    data_dir.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(data_dir / "dev-secrets.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        values = json.loads(path.read_text()) if path.exists() else {}
        missing = {
            name: value
            for name, value in _generate_dev_secrets().items()
            if name not in values
        }
        if missing:
            values.update(missing)
            _write_dev_secrets(path, values)
            log.warning(
                "config.dev_secrets_created",
                extra={"path": str(path), "names": sorted(missing)},
            )
        return values
    finally:
        os.close(lock_fd)


@dataclass(frozen=True)
class Settings:
    """Settings every component reads; service-specific ones live beside each app."""

    environment: str
    data_dir: Path
    # None when REDIS_URL is unset outside development; see the redis_url property.
    configured_redis_url: str | None
    redis_prefix: str
    # None when AMQP_URL is unset outside development; see the amqp_url property.
    configured_amqp_url: str | None
    amqp_prefix: str
    identity_url: str
    otp_urls: list[str]
    secret_key: str = field(repr=False)
    otp_keys: list[str] = field(repr=False)
    log_hash_key: str = field(repr=False)
    log_format: str = "text"
    # Empty outside development when unset, because only the components that
    # publish or consume mail jobs need it. MailJobCipher names it when missing.
    mail_job_keys: list[str] = field(default_factory=list, repr=False)
    # Earlier values of secret_key, newest first, that still verify recovery codes.
    secret_key_fallbacks: list[str] = field(default_factory=list, repr=False)
    # The callers' private keys this process has, from the environment or the
    # development secrets, by caller.
    signing_keys: dict[str, SigningKey] = field(default_factory=dict, repr=False)
    # The public keys of every caller, by (caller, key id).
    public_keys: dict = field(default_factory=dict, repr=False)

    @property
    def development(self) -> bool:
        return self.environment == "development"

    @property
    def redis_url(self) -> str:
        """The Redis URL; raise ConfigError when production did not set one."""
        if self.configured_redis_url is None:
            raise ConfigError(
                "REDIS_URL is not set; production has no default Redis, so set it "
                "to redis://:PASSWORD@HOST:6379/0 (or rediss:// for TLS)"
            )
        return self.configured_redis_url

    @property
    def amqp_url(self) -> str:
        """The broker URL; raise ConfigError when production did not set one."""
        if self.configured_amqp_url is None:
            raise ConfigError(
                "AMQP_URL is not set; production has no default broker account, so "
                "set it to amqp://USER:PASSWORD@HOST:5672/VHOST"
            )
        return self.configured_amqp_url

    def signing_key(self, caller: str) -> SigningKey:
        """Return ``caller``'s private key; raise ConfigError when it is not set."""
        key = self.signing_keys.get(caller)
        if key is None:
            raise ConfigError(
                f"{signing_key_variable(caller)} is not set; create a key pair with "
                f"'python -m gatehouse.common.servicekeys generate {caller}' "
                "(docs/deploy.md)"
            )
        return key

    def service_public_keys(self) -> dict:
        """Return the callers' public keys; raise ConfigError when there are none."""
        if not self.public_keys:
            raise ConfigError(
                f"{PUBLIC_KEYS_VARIABLE} is not set; list every caller's public key "
                "as CALLER:KEY_ID:PUBLIC_KEY, comma-separated (docs/deploy.md)"
            )
        return self.public_keys


# Secrets that are random strings rather than keys with a format of their own.
MIN_SECRET_LENGTH = 32


def _secret(name: str, dev_secrets: dict[str, str] | None) -> str:
    value = os.environ.get(name, "")
    if value:
        if name not in FERNET_KEY_VARIABLES and len(value) < MIN_SECRET_LENGTH:
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


def _signing_keys(dev_secrets: dict[str, str] | None) -> dict[str, SigningKey]:
    keys = {}
    for caller in CALLERS:
        variable = signing_key_variable(caller)
        text = os.environ.get(variable) or (dev_secrets or {}).get(variable)
        if not text:
            continue
        try:
            keys[caller] = parse_signing_key(caller, text)
        except KeyFormatError as error:
            raise ConfigError(
                f"{variable} is invalid: {error}; expected KEY_ID:PRIVATE_KEY as "
                "printed by 'python -m gatehouse.common.servicekeys generate'"
            ) from None
    return keys


def _public_keys(signing_keys: dict[str, SigningKey], development: bool) -> dict:
    text = os.environ.get(PUBLIC_KEYS_VARIABLE, "")
    if not text.strip() and development:
        # Development derives the list from the callers' own keys, so zero
        # configuration works; production lists the public keys explicitly.
        text = ",".join(format_public_key(key) for key in signing_keys.values())
    try:
        return parse_public_keys(text)
    except KeyFormatError as error:
        raise ConfigError(f"{PUBLIC_KEYS_VARIABLE} is invalid: {error}") from None


def _mail_job_keys(dev_secrets: dict[str, str] | None) -> list[str]:
    generated = (dev_secrets or {}).get("GATEHOUSE_MAIL_JOB_KEYS", "")
    return env_list("GATEHOUSE_MAIL_JOB_KEYS", [generated] if generated else [])


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
    development = environment == "development"
    amqp_url = os.environ.get("AMQP_URL") or (DEV_AMQP_URL if development else None)
    redis_url = os.environ.get("REDIS_URL") or (DEV_REDIS_URL if development else None)
    signing_keys = _signing_keys(dev_secrets)

    return Settings(
        environment=environment,
        data_dir=data_dir,
        configured_redis_url=redis_url,
        redis_prefix=env_str("GATEHOUSE_REDIS_PREFIX", "gatehouse:"),
        configured_amqp_url=amqp_url,
        amqp_prefix=env_str("GATEHOUSE_AMQP_PREFIX", "gatehouse"),
        identity_url=env_str("IDENTITY_URL", f"http://127.0.0.1:{identity_port}"),
        otp_urls=env_list("OTP_URLS", default_otp_urls),
        secret_key=_secret("GATEHOUSE_SECRET_KEY", dev_secrets),
        otp_keys=_secret("GATEHOUSE_OTP_KEYS", dev_secrets).split(","),
        log_hash_key=_secret("GATEHOUSE_LOG_HASH_KEY", dev_secrets),
        log_format=log_format,
        mail_job_keys=_mail_job_keys(dev_secrets),
        secret_key_fallbacks=env_list("GATEHOUSE_SECRET_KEY_FALLBACKS", []),
        signing_keys=signing_keys,
        public_keys=_public_keys(signing_keys, development),
    )
