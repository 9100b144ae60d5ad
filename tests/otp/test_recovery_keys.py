"""Recovery codes at rest: per-code salts, key ids, key rotation and old rows."""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from gatehouse.common.config import load_settings
from gatehouse.otp.app import create_app
from gatehouse.otp.migrations import ALEMBIC_INI, upgrade_database
from gatehouse.otp.recovery import normalize_recovery_code

from .conftest import Api

AGENT = 41
HEX = set("0123456789abcdef")


def _database_url() -> str:
    return f"sqlite:///{load_settings().data_dir / 'otp.sqlite3'}"


def _rows(agent_id: int = AGENT) -> list:
    engine = sa.create_engine(_database_url())
    try:
        with engine.connect() as connection:
            return connection.execute(
                sa.text(
                    "SELECT code_hash, salt, key_id, used_at FROM otp_recovery_codes "
                    "WHERE agent_id = :agent ORDER BY id"
                ),
                {"agent": agent_id},
            ).all()
    finally:
        engine.dispose()


def _old_format_hash(secret_key: str, agent_id: int, code: str) -> str:
    # The format before per-code salts: HMAC-SHA256 under a key derived from
    # GATEHOUSE_SECRET_KEY, over "agent_id:code".
    key = hmac.new(
        secret_key.encode(), b"gatehouse.otp.recovery-code", hashlib.sha256
    ).digest()
    message = f"{agent_id}:{normalize_recovery_code(code)}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _rotate(monkeypatch, new_secret: str, fallbacks: str = "") -> None:
    monkeypatch.setenv("GATEHOUSE_SECRET_KEY", new_secret)
    monkeypatch.setenv("GATEHOUSE_SECRET_KEY_FALLBACKS", fallbacks)


def test_codes_stored_salted_with_key_id(api, flows):
    codes = flows.enroll_email(api)

    rows = _rows()
    assert len(rows) == 10
    salts = {row.salt for row in rows}
    assert len(salts) == 10
    for row in rows:
        assert len(row.salt) == 32
        assert set(row.salt) <= HEX
        assert len(row.key_id) == 16
        assert set(row.key_id) <= HEX
    assert len({row.key_id for row in rows}) == 1
    stored = " ".join(f"{row.code_hash} {row.salt} {row.key_id}" for row in rows)
    for code in codes:
        assert normalize_recovery_code(code) not in stored
    # Without the salt, the old formula does not give the stored value.
    secret_key = load_settings().secret_key
    old_hashes = {_old_format_hash(secret_key, AGENT, code) for code in codes}
    assert not old_hashes & {row.code_hash for row in rows}


def test_rotation_keeps_codes_with_fallback(make_api, flows, monkeypatch, caplog):
    codes = flows.enroll_email(make_api())
    old_key_id = _rows()[0].key_id
    _rotate(monkeypatch, "rotated-secret-" + "x" * 32, load_settings().secret_key)
    caplog.set_level(logging.INFO, logger="gatehouse.otp.recovery")

    rotated = make_api()
    used = flows.verify(rotated, codes[0])

    assert used.status_code == 200
    assert used.json["recovery_codes_left"] == 9
    records = [r for r in caplog.records if r.msg == "otp.recovery_code_old_key"]
    assert len(records) == 1
    assert records[0].key_id == old_key_id
    renewed = rotated.post(f"/v1/factors/{AGENT}/recovery-codes").json
    new_key_ids = {row.key_id for row in _rows()}
    assert len(new_key_ids) == 1
    assert old_key_id not in new_key_ids
    assert flows.verify(rotated, renewed["recovery_codes"][0]).status_code == 200


def test_rotation_without_fallback_rejects(make_api, flows, monkeypatch, caplog):
    codes = flows.enroll_email(make_api())
    old_key_id = _rows()[0].key_id
    _rotate(monkeypatch, "rotated-secret-" + "y" * 32)
    caplog.set_level(logging.WARNING, logger="gatehouse.otp.recovery")

    rejected = flows.verify(make_api(), codes[0])

    assert rejected.status_code == 400
    assert rejected.json["error"] == "invalid_token"
    records = [r for r in caplog.records if r.msg == "otp.recovery_code_key_unknown"]
    assert len(records) == 1
    assert records[0].key_ids == [old_key_id]
    assert normalize_recovery_code(codes[0]) not in caplog.text


def test_old_format_rows_verify_until_used(flows, otp_env, monkeypatch):
    """Rows written before the salt columns existed keep working after the
    migration, also under a fallback key, and still work only once."""
    url = _database_url()
    config = Config(str(ALEMBIC_INI))
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    secret_key = load_settings().secret_key
    code = "abcd-efgh-2345"
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO otp_factors (agent_id, method, email_security, "
                "created_at) VALUES (:agent, 'email', false, :now)"
            ),
            {"agent": AGENT, "now": datetime.now(UTC)},
        )
        connection.execute(
            sa.text(
                "INSERT INTO otp_recovery_codes (agent_id, code_hash) "
                "VALUES (:agent, :hash)"
            ),
            {"agent": AGENT, "hash": _old_format_hash(secret_key, AGENT, code)},
        )
    engine.dispose()

    upgrade_database(url)
    row = _rows()[0]
    assert row.salt is None
    assert row.key_id is None
    _rotate(monkeypatch, "rotated-secret-" + "z" * 32, secret_key)
    api = Api(create_app({"TESTING": True}))

    used = flows.verify(api, code.upper())
    again = flows.verify(api, code)

    assert used.status_code == 200
    assert used.json["recovery_codes_left"] == 0
    assert again.status_code == 400
    assert _rows()[0].used_at is not None


def test_migration_downgrade_drops_salted_rows(api, flows):
    flows.enroll_email(api)
    url = _database_url()
    config = Config(str(ALEMBIC_INI))
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0002")
        columns = {
            c["name"] for c in sa.inspect(connection).get_columns("otp_recovery_codes")
        }
        count = connection.execute(
            sa.text("SELECT count(*) FROM otp_recovery_codes")
        ).scalar_one()
    engine.dispose()

    assert "salt" not in columns
    assert "key_id" not in columns
    assert count == 0
    upgrade_database(url)
