"""deploy/postgres/init-databases.sh and the migrate command on the local PostgreSQL.

Uses role and database names unique to the run and drops them afterwards. The local
server trusts every loopback connection, so passwords are not checked here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest
from cryptography.fernet import Fernet

PG_HOST = "127.0.0.1"

pytestmark = pytest.mark.skipif(shutil.which("psql") is None, reason="psql is missing")


def _psql(sql: str, user: str = "postgres", database: str = "postgres"):
    return subprocess.run(
        ["psql", "--no-psqlrc", "-h", PG_HOST, "-U", user, "-d", database, "-Atc", sql],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture(scope="module")
def names(checkout_dir):
    suffix = uuid.uuid4().hex[:10]
    identity, otp = f"gh_test_identity_{suffix}", f"gh_test_otp_{suffix}"
    environment = dict(os.environ)
    environment.update(
        PGHOST=PG_HOST,
        IDENTITY_DB_NAME=identity,
        OTP_DB_NAME=otp,
        IDENTITY_DB_PASSWORD="pw-with-'quote\"-and-;",
        OTP_DB_PASSWORD=uuid.uuid4().hex,
    )
    environment.pop("POSTGRES_USER", None)
    result = subprocess.run(
        ["sh", str(checkout_dir / "deploy" / "postgres" / "init-databases.sh")],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )
    yield identity, otp, result
    for name in (identity, otp):
        _psql(f'DROP DATABASE IF EXISTS "{name}"')
        _psql(f'DROP ROLE IF EXISTS "{name}"')


def test_init_creates_databases(names):
    identity, otp, result = names
    assert result.returncode == 0, result.stderr
    for name in (identity, otp):
        owner = _psql(
            "SELECT pg_get_userbyid(datdba) FROM pg_database "
            "WHERE datname = current_database()",
            database=name,
        )
        assert owner.stdout.strip() == name


def test_init_roles_can_log_in(names):
    identity, otp, _ = names
    for name in (identity, otp):
        result = _psql("SELECT current_user", user=name, database=name)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == name


def test_init_separates_services(names):
    identity, otp, _ = names
    result = _psql("SELECT 1", user=otp, database=identity)
    assert result.returncode != 0
    assert "permission denied" in result.stderr


def test_init_requires_passwords(checkout_dir):
    environment = {"PATH": os.environ["PATH"], "PGHOST": "127.0.0.1"}
    result = subprocess.run(
        ["sh", str(checkout_dir / "deploy" / "postgres" / "init-databases.sh")],
        capture_output=True,
        text=True,
        env=environment,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert "IDENTITY_DB_PASSWORD is not set" in result.stderr


def test_migrate_runs_as_service_roles(names, tmp_path):
    # The migrate container's command, with database URLs shaped like compose's.
    identity, otp, _ = names
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "GATEHOUSE_ENV": "production",
        "GATEHOUSE_DATA_DIR": str(tmp_path),
        "GATEHOUSE_SECRET_KEY": uuid.uuid4().hex,
        "GATEHOUSE_OTP_KEYS": Fernet.generate_key().decode(),
        "GATEHOUSE_LOG_HASH_KEY": uuid.uuid4().hex,
        "IDENTITY_DATABASE_URL": (
            f"postgresql+psycopg://{identity}:unused@{PG_HOST}:5432/{identity}"
        ),
        "OTP_DATABASE_URL": f"postgresql+psycopg://{otp}:unused@{PG_HOST}:5432/{otp}",
    }
    result = subprocess.run(
        [sys.executable, "-m", "gatehouse.common.stack", "migrate"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr

    for name in (identity, otp):
        owners = _psql(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'",
            database=name,
        )
        assert owners.stdout.split() == [name]
