"""Alembic migrations from an empty database, on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from gatehouse.identity.agents import SqlAgentRepository
from gatehouse.identity.database import (
    create_database_engine,
    create_session_factory,
    upgrade_database,
)
from gatehouse.identity.interfaces import DuplicateLogin
from sqlalchemy import inspect, text

TABLES = {
    "agents",
    "password_history",
    "password_reset_tokens",
    "audit_events",
    "alembic_version",
}


def _check_schema_and_use(url: str) -> None:
    engine = create_database_engine(url)
    try:
        assert TABLES <= set(inspect(engine).get_table_names())
        with engine.connect() as connection:
            version = connection.execute(
                text("SELECT version_num FROM alembic_version")
            )
            assert version.scalar_one() == "0001"

        repository = SqlAgentRepository(create_session_factory(engine))
        agent = repository.create("Mixed", "m@example.com", "Mi", "Xed", "hash", True)
        assert repository.find_by_login("mIXED").id == agent.id
        with pytest.raises(DuplicateLogin):
            repository.create("MIXED", "n@example.com", "Mi", "Xed", "hash", True)
        repository.replace_password(agent.id, "hash-2", history_size=5)
        assert repository.previous_password_hashes(agent.id, 5) == ["hash"]
        assert repository.get(agent.id).password_version == 2
    finally:
        engine.dispose()


def test_migrations_from_empty_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'new' / 'identity.sqlite3'}"
    upgrade_database(url)
    upgrade_database(url)  # a second run is a no-op
    _check_schema_and_use(url)

    engine = create_database_engine(url)
    with engine.connect() as connection:
        mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar_one()
    engine.dispose()
    assert mode == "wal"


def test_migrations_from_empty_postgresql():
    name = f"gatehouse_identity_test_{uuid.uuid4().hex[:12]}"
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        upgrade_database(url)
        _check_schema_and_use(url)
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
