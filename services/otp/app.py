"""The OTP service's Flask app: ``gunicorn 'gatehouse.otp.app:create_app()'``.

Replicas keep no state in memory: tokens, replay state, throttles and devices live in
Redis, factors and recovery codes in the database.
"""

from __future__ import annotations

import logging

from flask import Flask
from gatehouse.common.config import load_settings
from gatehouse.common.internal import (
    NONCE_KEY_PREFIX,
    RedisNonceStore,
    RoutePolicy,
    install_service_auth,
)
from gatehouse.common.logs import configure_logging
from gatehouse.common.mail import MailPublisher
from gatehouse.common.ratelimit import FailureThrottle
from gatehouse.common.redis_store import connect
from gatehouse.common.web import install_health, install_json_errors
from sqlalchemy import text

from .config import load_otp_config
from .devices import RedisDeviceStore
from .email_tokens import RedisEmailTokenStore
from .enrollments import RedisPendingEnrollments
from .factors import SqlFactorRepository
from .keys import derive_key, secret_cipher
from .models import make_engine
from .recovery import SqlRecoveryCodeStore, recovery_keys
from .replay import RedisReplayGuard
from .service import OtpService, OtpStores
from .views import blueprint
from .webauthn_store import RedisChallengeStore, SqlWebAuthnCredentialStore
from .webauthn_views import blueprint as webauthn_blueprint

log = logging.getLogger(__name__)

# Routes not listed accept only the gateway. Identity reads an agent's factor to
# decide whether a notice mail goes out encrypted.
ROUTE_POLICY = RoutePolicy(callers={"otp.get_factor": {"gateway", "identity"}})


def build_service(
    settings, config, redis_client, engine, publisher: MailPublisher
) -> OtpService:
    """Wire the stores to Redis and the database; shared by the app and admin."""
    prefix = f"{settings.redis_prefix}otp:"
    cipher = secret_cipher(settings.otp_keys)
    stores = OtpStores(
        factors=SqlFactorRepository(engine, cipher),
        recovery=SqlRecoveryCodeStore(
            engine, recovery_keys(settings.secret_key, settings.secret_key_fallbacks)
        ),
        tokens=RedisEmailTokenStore(
            redis_client,
            prefix,
            derive_key(settings.secret_key, "gatehouse.otp.email-token"),
            config.resend_cooldown,
            config.resend_hourly_cap,
            config.max_token_attempts,
        ),
        enrollments=RedisPendingEnrollments(redis_client, prefix, cipher),
        replay=RedisReplayGuard(redis_client, prefix),
        devices=RedisDeviceStore(
            redis_client, prefix, settings.secret_key, config.device_ttl
        ),
        throttle=FailureThrottle(redis_client, key_prefix=f"{prefix}throttle:"),
        challenges=RedisChallengeStore(
            redis_client, prefix, config.webauthn_challenge_ttl
        ),
        credentials=SqlWebAuthnCredentialStore(
            engine, derive_key(settings.secret_key, "gatehouse.otp.webauthn-user")
        ),
    )
    return OtpService(config, stores, publisher, cipher, settings.log_hash_key)


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: defaults, then the environment, then ``test_config``.

    ``test_config`` may hold any OTP_* variable and ``TESTING``; a ``SETTINGS``
    entry replaces the shared settings read from the environment.
    """
    test_config = dict(test_config or {})
    settings = test_config.pop("SETTINGS", None) or load_settings()
    config = load_otp_config(settings.data_dir, test_config)

    app = Flask(__name__)
    # The largest request is a WebAuthn registration of at most 32 KiB; the limit
    # matches identity's and the gateway's.
    app.config.from_mapping(
        TESTING=False, JSON_SORT_KEYS=False, MAX_CONTENT_LENGTH=64 * 1024
    )
    app.config.update({k: v for k, v in test_config.items() if k.isupper()})
    if not app.testing:
        configure_logging("otp", settings.log_format)

    redis_client = connect(settings.redis_url)
    engine = make_engine(config.database_url)
    publisher = MailPublisher(
        settings.amqp_url, settings.amqp_prefix, settings.mail_job_keys
    )
    app.extensions["otp"] = build_service(
        settings, config, redis_client, engine, publisher
    )

    install_service_auth(
        app,
        "otp",
        settings.service_public_keys(),
        ROUTE_POLICY,
        RedisNonceStore(redis_client, settings.redis_prefix + NONCE_KEY_PREFIX),
    )
    install_json_errors(app)
    app.register_blueprint(blueprint)
    app.register_blueprint(webauthn_blueprint)

    def check_database() -> None:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1 FROM otp_factors WHERE 1 = 0"))

    install_health(
        app,
        {
            "redis": redis_client.ping,
            "rabbitmq": publisher.check,
            "database": check_database,
        },
    )

    if config.throttle_exempt_agents:
        log.warning(
            "otp.throttle_exempt_agents",
            extra={
                "agents": sorted(config.throttle_exempt_agents),
                "note": "verification throttling is off for these agents; "
                "use only for benchmarks",
            },
        )
    log.info(
        "otp.started",
        extra={"digits": config.token_digits, "token_ttl": config.token_ttl},
    )
    return app
