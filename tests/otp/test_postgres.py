"""The OTP schema and stores on PostgreSQL (a private database per run)."""

from __future__ import annotations

import uuid

import pytest
from gatehouse.otp.migrations import upgrade_database
from support.webauthn import SoftAuthenticator

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


def test_security_keys_on_postgresql(make_api, postgres_url):
    upgrade_database(postgres_url)
    api = make_api(OTP_DATABASE_URL=postgres_url)
    site = {"rp_id": "localhost", "origin": "http://localhost:8443"}
    keys = []
    for name in ("First", "Second"):
        options = api.post(
            "/v1/webauthn/registrations", {"agent_id": 41, "user_name": "ada", **site}
        ).json["options"]
        # A counter above 2**31 checks the BIGINT column.
        authenticator = SoftAuthenticator(sign_count=2**31 + 5)
        answer = api.post(
            "/v1/webauthn/registrations/verify",
            {
                "agent_id": 41,
                "credential": authenticator.register(options, site["origin"]),
                "name": name,
            },
        )
        assert answer.status_code == 200, answer.json
        keys.append(authenticator)

    options = api.post("/v1/webauthn/authentications", {"agent_id": 41, **site}).json[
        "options"
    ]
    assertion = keys[1].assert_(options, site["origin"])
    verified = api.post(
        "/v1/webauthn/authentications/verify",
        {"agent_id": 41, "credential": assertion},
    )
    assert verified.status_code == 200, verified.json

    listed = api.get("/v1/webauthn/credentials/41").json["credentials"]
    assert [key["name"] for key in listed] == ["First", "Second"]
    assert (
        api.delete(f"/v1/webauthn/credentials/41/{listed[0]['id']}").status_code == 204
    )
    last = api.delete(f"/v1/webauthn/credentials/41/{listed[1]['id']}")
    assert last.status_code == 409
    assert api.delete("/v1/factors/41").status_code == 204
    assert api.get("/v1/webauthn/credentials/41").json["credentials"] == []
