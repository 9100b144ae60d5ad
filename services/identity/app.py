"""The identity service's Flask app factory."""

from __future__ import annotations

import logging

import redis
from flask import Flask
from gatehouse.common.audit_queue import QUEUE_KEY as AUDIT_QUEUE_KEY
from gatehouse.common.config import load_settings
from gatehouse.common.internal import (
    NONCE_KEY_PREFIX,
    RedisNonceStore,
    RoutePolicy,
    ServiceClient,
    install_service_auth,
)
from gatehouse.common.logs import configure_logging
from gatehouse.common.mail import MailPublisher, mail_job_cipher
from gatehouse.common.ratelimit import FailureThrottle
from gatehouse.common.redis_store import connect
from gatehouse.common.web import error_response, install_health, install_json_errors
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from .agents import AgentService, SqlAgentRepository
from .audit import AuditQueueDrainer, SqlAuditLog
from .config import VARIABLES, load_identity_config
from .database import create_database_engine, create_session_factory
from .hibp import PwnedPasswordsClient
from .notices import RedisNoticeLimiter
from .outbox import SqlMailOutbox
from .passwords import Argon2Hasher, PasswordPolicy
from .relay import DEFAULT_LEASE_SECONDS, RETRY_DELAYS, MailRelay
from .resets import ResetService, SqlResetStore
from .throttling import LOGIN_THROTTLE_PREFIX, RESET_THROTTLE_PREFIX, ThrottleLimits
from .views import IdentityServices, blueprint

log = logging.getLogger(__name__)

OTP_TIMEOUT_SECONDS = 3.0
# Only the gateway calls identity, so every route keeps the default policy.
ROUTE_POLICY = RoutePolicy(callers={})


def build_agent_service(config, settings, redis_client=None) -> AgentService:
    """Return the AgentService agentctl and the app share (Redis is optional for
    agentctl's create path)."""
    engine = create_database_engine(config.database_url)
    sessions = create_session_factory(engine)
    hasher = Argon2Hasher.from_config(config)
    pwned = (
        PwnedPasswordsClient(config.hibp_url, config.hibp_timeout)
        if config.hibp_enabled
        else None
    )
    throttle = (
        FailureThrottle(redis_client, settings.redis_prefix + LOGIN_THROTTLE_PREFIX)
        if redis_client is not None
        else None
    )
    return AgentService(
        config,
        SqlAgentRepository(sessions),
        hasher,
        PasswordPolicy(config, hasher, pwned),
        throttle,
        ThrottleLimits(config, settings.secret_key),
    )


def create_app(test_config: dict | None = None) -> Flask:
    """Build the identity app: defaults, then the environment, then test_config."""
    settings = load_settings()
    configure_logging("identity", settings.log_format)
    config = load_identity_config(settings.data_dir, test_config)

    app = Flask(__name__)
    app.config.from_mapping(MAX_CONTENT_LENGTH=64 * 1024)
    app.config.update(
        {
            name: value
            for name, value in (test_config or {}).items()
            if name not in VARIABLES
        }
    )

    redis_client = connect(settings.redis_url)
    agents = build_agent_service(config, settings, redis_client)
    sessions = agents.repository.session_factory
    publisher = MailPublisher(
        settings.amqp_url, settings.amqp_prefix, settings.mail_job_keys
    )
    otp_client = ServiceClient(
        "otp",
        settings.otp_urls,
        settings.signing_key("identity"),
        timeout=OTP_TIMEOUT_SECONDS,
    )
    reset_store = SqlResetStore(sessions)
    audit = SqlAuditLog(sessions, settings.log_hash_key)
    outbox = MailRelay(
        SqlMailOutbox(sessions, mail_job_cipher(settings.mail_job_keys)),
        publisher,
        otp_client,
        agents,
        reset_store,
        config.reset_ttl,
        audit,
        retry_delays=app.config.get("IDENTITY_MAIL_RETRY_DELAYS", RETRY_DELAYS),
        lease_seconds=app.config.get(
            "IDENTITY_MAIL_LEASE_SECONDS", DEFAULT_LEASE_SECONDS
        ),
    )
    app.extensions["identity"] = IdentityServices(
        agents=agents,
        resets=ResetService(agents, reset_store, sessions, config.reset_ttl),
        audit=audit,
        outbox=outbox,
        limits=agents.limits,
        reset_throttle=FailureThrottle(
            redis_client, settings.redis_prefix + RESET_THROTTLE_PREFIX
        ),
        log_hash_key=settings.log_hash_key,
        notice_limiter=RedisNoticeLimiter(
            redis_client,
            settings.redis_prefix + "id:",
            config.new_browser_notice_interval,
        ),
    )
    app.extensions["identity_config"] = config

    install_service_auth(
        app,
        "identity",
        settings.service_public_keys(),
        ROUTE_POLICY,
        RedisNonceStore(redis_client, settings.redis_prefix + NONCE_KEY_PREFIX),
    )
    install_json_errors(app)
    _install_backend_errors(app)
    app.register_blueprint(blueprint)

    def check_database() -> None:
        with sessions() as session:
            session.execute(text("SELECT 1"))

    install_health(
        app,
        {
            "database": check_database,
            "redis": redis_client.ping,
            "rabbitmq": publisher.check,
        },
    )
    # Tests turn the thread off and relay rows themselves with outbox.drain().
    if config.mail_relay:
        outbox.start()
    if app.config.get("AUDIT_QUEUE_DRAINER", True):
        AuditQueueDrainer(
            redis_client, settings.redis_prefix + AUDIT_QUEUE_KEY, sessions
        ).start()
    log.info("identity.started", extra={"argon2_memory_kib": config.argon2_memory_kib})
    return app


def _install_backend_errors(app: Flask) -> None:
    @app.errorhandler(redis.RedisError)
    def _redis_down(error: redis.RedisError):
        log.error("identity.redis_unavailable", extra={"error": repr(error)})
        return error_response(503, "unavailable", "Redis is unavailable.")

    @app.errorhandler(OperationalError)
    def _database_down(error: OperationalError):
        log.error("identity.database_unavailable", extra={"error": str(error)[:200]})
        return error_response(503, "unavailable", "The database is unavailable.")
