"""Mailer settings: the shared ones plus SMTP, encryption and retry variables."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.utils import parseaddr
from pathlib import Path

from gatehouse.common.config import (
    ConfigError,
    Settings,
    env_bool,
    env_int,
    env_list,
    env_str,
    load_settings,
)
from gatehouse.common.mail import MailJobCipher

ENCRYPTION_METHODS = ("pgp", "smime")
FALLBACK_POLICIES = ("plain", "dead-letter")
DEFAULT_RETRY_DELAYS = [10, 30, 120, 600, 1800]
# SMTP_TLS values: STARTTLS on the submission port, TLS from the first byte
# ("Implicit TLS" on port 465, RFC 8314 section 3.3), or plain text for a
# trusted local relay.
SMTP_TLS_MODES = ("starttls", "implicit", "off")


@dataclass(frozen=True)
class MailerSettings:
    """Everything the mailer reads from the environment."""

    common: Settings
    mail_from: str = "gatehouse <gatehouse@localhost>"
    product_name: str = "gatehouse"
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_tls: str = "off"
    smtp_ca_file: Path | None = None
    smtp_timeout: float = 20.0
    pgp_enabled: bool = True
    smime_enabled: bool = True
    encryption_order: tuple[str, ...] = ENCRYPTION_METHODS
    encryption_fallback: str = "plain"
    retry_delays: tuple[int, ...] = tuple(DEFAULT_RETRY_DELAYS)
    prefetch: int = 4
    heartbeat: int = 60
    connection_name: str = ""
    sent_ttl_seconds: int = 7 * 24 * 3600
    shutdown_grace_seconds: float = 25.0

    @property
    def data_dir(self) -> Path:
        return self.common.data_dir

    @property
    def gnupg_home(self) -> Path:
        return self.common.data_dir / "gnupg"

    @property
    def smime_dir(self) -> Path:
        return self.common.data_dir / "smime"

    @property
    def mailbox_dir(self) -> Path:
        return self.common.data_dir / "mailbox"

    @property
    def from_address(self) -> Address:
        name, addr = parseaddr(self.mail_from)
        username, _, domain = addr.partition("@")
        return Address(display_name=name, username=username, domain=domain)


def _encryption_order() -> tuple[str, ...]:
    order = env_list("GATEHOUSE_ENCRYPTION_ORDER", list(ENCRYPTION_METHODS))
    for method in order:
        if method not in ENCRYPTION_METHODS:
            raise ConfigError(
                f"GATEHOUSE_ENCRYPTION_ORDER contains {method!r}; use pgp and smime"
            )
    return tuple(dict.fromkeys(order))


def _retry_delays() -> tuple[int, ...]:
    raw = env_list(
        "GATEHOUSE_MAIL_RETRY_DELAYS", [str(d) for d in DEFAULT_RETRY_DELAYS]
    )
    try:
        delays = tuple(int(item) for item in raw)
    except ValueError:
        raise ConfigError(
            f"GATEHOUSE_MAIL_RETRY_DELAYS={','.join(raw)!r} is invalid; "
            "use comma-separated whole seconds"
        ) from None
    if not delays or min(delays) < 1:
        raise ConfigError(
            "GATEHOUSE_MAIL_RETRY_DELAYS needs at least one delay of 1 s or more"
        )
    return delays


def _mail_from() -> str:
    value = env_str("MAIL_FROM", "gatehouse <gatehouse@localhost>")
    _, addr = parseaddr(value)
    if "@" not in addr or any(char in value for char in "\r\n"):
        raise ConfigError(f"MAIL_FROM={value!r} is not a valid address")
    return value


def _smtp_tls(common: Settings) -> str:
    if os.environ.get("SMTP_STARTTLS"):
        raise ConfigError(
            "SMTP_STARTTLS is no longer read; set SMTP_TLS to starttls, implicit "
            "or off instead"
        )
    default = "off" if common.development else "starttls"
    mode = env_str("SMTP_TLS", default).strip().lower()
    if mode not in SMTP_TLS_MODES:
        raise ConfigError(
            f"SMTP_TLS={mode!r} is invalid; use {', '.join(SMTP_TLS_MODES)}"
        )
    return mode


def _smtp_ca_file() -> Path | None:
    raw = os.environ.get("SMTP_CA_FILE") or None
    if raw is None:
        return None
    path = Path(raw)
    if not path.is_file() or not os.access(path, os.R_OK):
        raise ConfigError(
            f"SMTP_CA_FILE={raw!r} is not a readable file; set it to the PEM file of "
            "the CA that signed the SMTP server's certificate"
        )
    return path


def load_mailer_settings(common: Settings | None = None) -> MailerSettings:
    """Read the mailer's settings; raise ConfigError naming an invalid variable."""
    common = common or load_settings()
    # The property raises ConfigError in production without AMQP_URL, so the
    # mailer stops at start instead of retrying a broker it may never reach.
    _ = common.amqp_url
    fallback = env_str("GATEHOUSE_ENCRYPTION_FALLBACK", "plain")
    if fallback not in FALLBACK_POLICIES:
        raise ConfigError(
            f"GATEHOUSE_ENCRYPTION_FALLBACK={fallback!r} is invalid; "
            "use plain or dead-letter"
        )
    # Check the keys now, so a bad value stops the mailer at start and not at
    # the first job.
    MailJobCipher(common.mail_job_keys)
    smtp_tls = _smtp_tls(common)
    default_port = 465 if smtp_tls == "implicit" else 25
    default_name = f"gatehouse-mailer {socket.gethostname()} pid {os.getpid()}"
    return MailerSettings(
        common=common,
        mail_from=_mail_from(),
        product_name=env_str("MAIL_PRODUCT_NAME", "gatehouse"),
        smtp_host=os.environ.get("SMTP_HOST") or None,
        smtp_port=env_int("SMTP_PORT", default_port, 1, 65535),
        smtp_username=os.environ.get("SMTP_USERNAME") or None,
        smtp_password=os.environ.get("SMTP_PASSWORD") or None,
        smtp_tls=smtp_tls,
        smtp_ca_file=_smtp_ca_file(),
        smtp_timeout=float(env_int("SMTP_TIMEOUT", 20, 1, 600)),
        pgp_enabled=env_bool("GATEHOUSE_PGP_ENABLED", True),
        smime_enabled=env_bool("GATEHOUSE_SMIME_ENABLED", True),
        encryption_order=_encryption_order(),
        encryption_fallback=fallback,
        retry_delays=_retry_delays(),
        prefetch=env_int("MAILER_PREFETCH", 4, 1, 100),
        heartbeat=env_int("MAILER_HEARTBEAT", 60, 1, 600),
        connection_name=env_str("MAILER_CONNECTION_NAME", default_name),
        sent_ttl_seconds=env_int("MAILER_SENT_TTL", 7 * 24 * 3600, 60),
        shutdown_grace_seconds=float(env_int("MAILER_SHUTDOWN_GRACE", 25, 0, 600)),
    )
