"""Operator actions on the OTP data, used by ``agentctl`` without the HTTP API."""

from __future__ import annotations

from gatehouse.common.config import load_settings
from gatehouse.common.mail import MailPublisher
from gatehouse.common.ratelimit import FailureThrottle
from gatehouse.common.redis_store import connect

from .app import build_service
from .config import load_otp_config
from .migrations import upgrade_database
from .models import make_engine


def reset_factor(agent_id: int) -> bool:
    """Delete the agent's factor, recovery codes, pending tokens and enrollments,
    and remembered devices; return False if the agent had no factor."""
    settings = load_settings()
    config = load_otp_config(settings.data_dir)
    # Idempotent, as for identity in agentctl: an operator may run this before
    # the otp service has ever started on a new database.
    upgrade_database(config.database_url)
    engine = make_engine(config.database_url)
    redis_client = connect(settings.redis_url)
    # No mail is sent here, so the publisher never opens a connection.
    publisher = MailPublisher(
        settings.amqp_url, settings.amqp_prefix, settings.mail_job_keys
    )
    try:
        service = build_service(settings, config, redis_client, engine, publisher)
        return service.delete_factor(agent_id)
    finally:
        engine.dispose()
        redis_client.close()


def clear_throttle(agent_id: int) -> int:
    """Forget the agent's recorded verification failures; return the number of
    throttle windows removed. Per-address and global windows stay."""
    settings = load_settings()
    redis_client = connect(settings.redis_url)
    try:
        throttle = FailureThrottle(
            redis_client, key_prefix=f"{settings.redis_prefix}otp:throttle:"
        )
        return throttle.clear([f"agent:{agent_id}"])
    finally:
        redis_client.close()
