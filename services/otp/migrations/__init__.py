"""Alembic migrations of the OTP database."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from gatehouse.common.config import env_str, load_settings

from ..config import default_database_url
from ..models import make_engine

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"
# A table name of its own, so the identity and OTP schemas can share one
# PostgreSQL database without overwriting each other's revision.
VERSION_TABLE = "otp_alembic_version"


def upgrade_database(url: str | None = None) -> None:
    """Run ``alembic upgrade head`` on ``url`` (default: OTP_DATABASE_URL)."""
    if url is None:
        url = env_str(
            "OTP_DATABASE_URL", default_database_url(load_settings().data_dir)
        )
    config = Config(str(ALEMBIC_INI))
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()
