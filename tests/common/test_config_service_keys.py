"""Service keys and the Redis and broker URLs in the shared settings."""

import json
import os

import pytest
from cryptography.fernet import Fernet
from gatehouse.common import config
from gatehouse.common.config import ConfigError, load_settings
from gatehouse.common.servicekeys import (
    format_public_key,
    format_signing_key,
    generate_signing_key,
    sign_request,
    verify_request,
)

KEY_VARIABLES = (
    "GATEHOUSE_GATEWAY_SIGNING_KEY",
    "GATEHOUSE_IDENTITY_SIGNING_KEY",
    "GATEHOUSE_SERVICE_PUBLIC_KEYS",
)


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in (*config.SECRET_VARIABLES, *KEY_VARIABLES, "AMQP_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GATEHOUSE_ENV", "development")
    monkeypatch.setenv("GATEHOUSE_DATA_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def production(clean_env, monkeypatch):
    """Production with every shared secret set, but no service keys."""
    monkeypatch.setenv("GATEHOUSE_ENV", "production")
    for name in config.SECRET_VARIABLES:
        if name in config.FERNET_KEY_VARIABLES:
            monkeypatch.setenv(name, Fernet.generate_key().decode())
        else:
            monkeypatch.setenv(name, os.urandom(24).hex())
    return monkeypatch


def test_development_generates_keys_once(clean_env):
    first = load_settings()
    second = load_settings()

    stored = json.loads((clean_env / "dev-secrets.json").read_text())
    gateway = first.signing_key("gateway")
    assert (clean_env / "dev-secrets.json").stat().st_mode & 0o777 == 0o600
    assert format_signing_key(gateway) == stored["GATEHOUSE_GATEWAY_SIGNING_KEY"]
    assert (
        format_signing_key(second.signing_key("gateway"))
        == (stored["GATEHOUSE_GATEWAY_SIGNING_KEY"])
    )
    assert set(first.service_public_keys()) == {("gateway", "dev"), ("identity", "dev")}


def test_development_keys_verify_each_other(clean_env):
    settings = load_settings()

    header = sign_request(settings.signing_key("identity"), "otp", "GET", "/v1/x")

    ring = settings.service_public_keys()
    assert verify_request(ring, "otp", header, "GET", "/v1/x").caller == "identity"


def test_older_dev_secrets_file_gets_keys(clean_env):
    path = clean_env / "dev-secrets.json"
    path.write_text(json.dumps({"GATEHOUSE_SECRET_KEY": "kept-" + "x" * 40}))
    path.chmod(0o600)

    settings = load_settings()

    stored = json.loads(path.read_text())
    assert settings.secret_key == "kept-" + "x" * 40
    assert "GATEHOUSE_IDENTITY_SIGNING_KEY" in stored
    assert settings.signing_key("identity").key_id == "dev"


def test_development_public_keys_follow_env_key(clean_env, monkeypatch):
    key = generate_signing_key("gateway", "from-env")
    monkeypatch.setenv("GATEHOUSE_GATEWAY_SIGNING_KEY", format_signing_key(key))

    settings = load_settings()

    assert settings.signing_key("gateway").key_id == "from-env"
    assert ("gateway", "from-env") in settings.service_public_keys()
    assert ("gateway", "dev") not in settings.service_public_keys()


def test_production_names_missing_signing_key(production):
    settings = load_settings()

    with pytest.raises(ConfigError, match="GATEHOUSE_GATEWAY_SIGNING_KEY is not set"):
        settings.signing_key("gateway")


def test_production_names_missing_public_keys(production):
    settings = load_settings()

    with pytest.raises(ConfigError, match="GATEHOUSE_SERVICE_PUBLIC_KEYS is not set"):
        settings.service_public_keys()


def test_production_rejects_malformed_signing_key(production):
    production.setenv("GATEHOUSE_IDENTITY_SIGNING_KEY", "k1:c2hvcnQ")

    with pytest.raises(
        ConfigError, match="GATEHOUSE_IDENTITY_SIGNING_KEY is invalid: private key"
    ):
        load_settings()


def test_production_rejects_malformed_public_keys(production):
    production.setenv("GATEHOUSE_SERVICE_PUBLIC_KEYS", "gateway:k1")

    with pytest.raises(ConfigError, match="GATEHOUSE_SERVICE_PUBLIC_KEYS is invalid"):
        load_settings()


def test_production_reads_keys_from_env(production):
    gateway = generate_signing_key("gateway", "gw-2")
    identity = generate_signing_key("identity", "id-2")
    production.setenv("GATEHOUSE_GATEWAY_SIGNING_KEY", format_signing_key(gateway))
    production.setenv(
        "GATEHOUSE_SERVICE_PUBLIC_KEYS",
        f"{format_public_key(gateway)},{format_public_key(identity)}",
    )

    settings = load_settings()

    assert settings.signing_key("gateway").key_id == "gw-2"
    assert set(settings.service_public_keys()) == {
        ("gateway", "gw-2"),
        ("identity", "id-2"),
    }
    assert not (settings.data_dir / "dev-secrets.json").exists()


def test_production_requires_amqp_url(production):
    settings = load_settings()

    with pytest.raises(ConfigError, match="AMQP_URL is not set"):
        _ = settings.amqp_url


def test_production_reads_amqp_url(production):
    production.setenv("AMQP_URL", "amqp://gatehouse:secret@127.0.0.1:5672/%2F")

    assert load_settings().amqp_url == "amqp://gatehouse:secret@127.0.0.1:5672/%2F"


def test_development_keeps_guest_broker_default(clean_env):
    assert load_settings().amqp_url == "amqp://guest:guest@127.0.0.1:5672/%2F"


def test_production_requires_redis_url(production):
    settings = load_settings()

    with pytest.raises(ConfigError, match="REDIS_URL is not set"):
        _ = settings.redis_url


def test_development_keeps_local_redis_default(clean_env):
    assert load_settings().redis_url == "redis://127.0.0.1:6379/0"
