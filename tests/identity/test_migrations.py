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
    "mail_outbox",
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
            assert version.scalar_one() == "0002"

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


def test_migrations_create_no_accounts(tmp_path):
    url = f"sqlite:///{tmp_path / 'identity.sqlite3'}"
    upgrade_database(url)

    engine = create_database_engine(url)
    with engine.connect() as connection:
        agents = connection.exec_driver_sql("SELECT count(*) FROM agents").scalar_one()
    engine.dispose()
    assert agents == 0


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


def test_upgrade_from_0001_marks_initial_passwords(tmp_path):
    from alembic import command
    from gatehouse.identity.database import alembic_config

    url = f"sqlite:///{tmp_path / 'old' / 'identity.sqlite3'}"
    engine = create_database_engine(url)
    with engine.connect() as connection:
        config = alembic_config(url)
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        connection.exec_driver_sql(
            "INSERT INTO agents (login, login_key, email, first_name, last_name, "
            "password_hash, password_version, password_changed_at, "
            "must_change_password, created_at) VALUES ('old', 'old', "
            "'o@example.com', 'O', 'Ld', 'hash', 1, '2026-01-01', 1, '2026-01-01')"
        )
        connection.commit()
    engine.dispose()

    upgrade_database(url)

    engine = create_database_engine(url)
    try:
        agent = SqlAgentRepository(create_session_factory(engine)).get(1)
    finally:
        engine.dispose()
    assert agent.must_change_password is True
    assert agent.password_change_reason == "initial"
    assert agent.initial_password_expires_at is None


def _run_alembic(url: str, action: str, revision: str) -> None:
    from alembic import command
    from gatehouse.identity.database import alembic_config

    engine = create_database_engine(url)
    try:
        with engine.connect() as connection:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            getattr(command, action)(config, revision)
            connection.commit()
    finally:
        engine.dispose()


def _insert_old_agent(url: str) -> None:
    engine = create_database_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO agents (login, login_key, email, first_name, "
                    "last_name, password_hash, password_version, "
                    "password_changed_at, must_change_password, created_at) VALUES "
                    "('old', 'old', 'o@example.com', 'O', 'Ld', 'hash', 1, "
                    ":moment, :must_change, :moment)"
                ),
                {"moment": "2026-01-01 00:00:00", "must_change": True},
            )
    finally:
        engine.dispose()


def _upgrade_downgrade_round_trip(url: str) -> None:
    _run_alembic(url, "upgrade", "0001")
    _insert_old_agent(url)

    upgrade_database(url)
    engine = create_database_engine(url)
    try:
        agent = SqlAgentRepository(create_session_factory(engine)).find_by_login("old")
    finally:
        engine.dispose()
    assert agent.must_change_password is True
    assert agent.password_change_reason == "initial"

    _run_alembic(url, "downgrade", "0001")
    engine = create_database_engine(url)
    try:
        assert "mail_outbox" not in inspect(engine).get_table_names()
        columns = {column["name"] for column in inspect(engine).get_columns("agents")}
        with engine.connect() as connection:
            logins = connection.execute(text("SELECT login FROM agents")).scalars()
            assert list(logins) == ["old"]
    finally:
        engine.dispose()
    assert "password_change_reason" not in columns

    upgrade_database(url)
    _check_schema_and_use(url)


def test_round_trip_with_data_sqlite(tmp_path):
    _upgrade_downgrade_round_trip(f"sqlite:///{tmp_path / 'rt' / 'identity.sqlite3'}")


def test_round_trip_with_data_postgresql():
    name = f"gatehouse_identity_test_{uuid.uuid4().hex[:12]}"
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        _upgrade_downgrade_round_trip(
            f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        )
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
