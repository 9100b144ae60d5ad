"""Alembic environment: runs on the connection upgrade_database hands in."""

from alembic import context
from gatehouse.otp.migrations import VERSION_TABLE
from gatehouse.otp.models import Base
from sqlalchemy import create_engine

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return

    # Reached from the alembic command line, for example `alembic revision`.
    url = config.attributes.get("database_url") or config.get_main_option(
        "sqlalchemy.url"
    )
    engine = create_engine(url)
    with engine.connect() as own_connection:
        _run(own_connection)


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported")
run_migrations_online()
