"""Engine set-up and schema migrations for the identity database."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
SQLITE_BUSY_TIMEOUT_MS = 10000


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Several gunicorn workers and agentctl write the same file: WAL lets
        # readers run beside one writer, the busy timeout makes writers queue.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # BEGIN IMMEDIATE takes the write lock up front, so the busy timeout
        # applies. A deferred transaction that later starts writing fails at
        # once with "database is locked" when another writer got there first.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_database_engine(url: str) -> Engine:
    """Return an engine for ``url``; SQLite files get WAL and a busy timeout.

    Exception messages leave out bound values (``hide_parameters``), because the
    services log them and the values include password hashes and reset links.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            hide_parameters=True,
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, hide_parameters=True)


def create_session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    config = Config(str(PACKAGE_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(PACKAGE_DIR / "migrations"))
    # Passed as an attribute, not an ini option, because ConfigParser would
    # interpolate a "%" in the URL (as in %2F or an escaped password).
    config.attributes["database_url"] = url
    return config


def upgrade_database(url: str | None = None) -> None:
    """Upgrade the identity database at ``url`` (default: from the settings) to
    the newest revision, creating it when it is new."""
    if url is None:
        from gatehouse.common.config import load_settings

        from .config import load_identity_config

        url = load_identity_config(load_settings().data_dir).database_url
    engine = create_database_engine(url)
    try:
        with engine.connect() as connection:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            connection.commit()
    finally:
        engine.dispose()
    log.info(
        "identity.database_upgraded",
        extra={"backend": make_url(url).get_backend_name()},
    )
