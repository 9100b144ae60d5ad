"""The OTP schema and stores on PostgreSQL (a private database per run)."""

from __future__ import annotations

import uuid

import pytest
from gatehouse.otp.migrations import upgrade_database

psycopg = pytest.importorskip("psycopg")

ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


@pytest.fixture
def postgres_url():
    name = f"gatehouse_otp_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 is unreachable: {error}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_flows_on_postgresql(make_api, flows, postgres_url):
    upgrade_database(postgres_url)
    # A second upgrade finds the schema current and changes nothing.
    upgrade_database(postgres_url)
    api = make_api(OTP_DATABASE_URL=postgres_url)
    assert api.app.test_client().get("/readyz").status_code == 200

    codes = flows.enroll_email(api)
    used = flows.verify(api, codes[0])
    assert used.json["recovery_codes_left"] == 9
    assert flows.verify(api, codes[0]).status_code == 400

    secret, _codes = flows.enroll_app(api)
    assert api.get("/v1/factors/41").json["method"] == "app"
    assert len(secret) == 32
    assert api.delete("/v1/factors/41").status_code == 204
    assert api.get("/v1/factors/41").json["method"] is None
