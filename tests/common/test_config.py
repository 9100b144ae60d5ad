import json

import pytest
from gatehouse.common.config import ConfigError, env_bool, env_int, load_settings


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in (
        "GATEHOUSE_ENV",
        "GATEHOUSE_SECRET_KEY",
        "GATEHOUSE_SERVICE_TOKEN",
        "GATEHOUSE_OTP_KEYS",
        "GATEHOUSE_LOG_HASH_KEY",
        "OTP_URLS",
        "OTP_REPLICAS",
        "OTP_PORT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GATEHOUSE_DATA_DIR", str(tmp_path))
    return tmp_path


def test_development_creates_secrets_once(clean_env):
    first = load_settings()
    second = load_settings()

    secrets_file = clean_env / "dev-secrets.json"
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    assert first.service_token == second.service_token
    assert (
        first.service_token
        == json.loads(secrets_file.read_text())["GATEHOUSE_SERVICE_TOKEN"]
    )


def test_production_names_missing_secret(clean_env, monkeypatch):
    monkeypatch.setenv("GATEHOUSE_ENV", "production")

    with pytest.raises(ConfigError, match="GATEHOUSE_SECRET_KEY is not set"):
        load_settings()
    assert not (clean_env / "dev-secrets.json").exists()


def test_production_reads_secrets_from_env(clean_env, monkeypatch):
    monkeypatch.setenv("GATEHOUSE_ENV", "production")
    for name in (
        "GATEHOUSE_SECRET_KEY",
        "GATEHOUSE_SERVICE_TOKEN",
        "GATEHOUSE_LOG_HASH_KEY",
    ):
        monkeypatch.setenv(name, f"value-of-{name}-padded-to-32-characters")
    monkeypatch.setenv("GATEHOUSE_OTP_KEYS", "new-key,old-key")

    settings = load_settings()

    assert settings.service_token == (
        "value-of-GATEHOUSE_SERVICE_TOKEN-padded-to-32-characters"
    )
    assert settings.otp_keys == ["new-key", "old-key"]
    assert settings.log_format == "json"


def test_otp_urls_follow_replica_count(clean_env, monkeypatch):
    monkeypatch.setenv("OTP_PORT", "9100")
    monkeypatch.setenv("OTP_REPLICAS", "3")

    settings = load_settings()

    assert settings.otp_urls == [
        "http://127.0.0.1:9100",
        "http://127.0.0.1:9101",
        "http://127.0.0.1:9102",
    ]


def test_invalid_environment_rejected(clean_env, monkeypatch):
    monkeypatch.setenv("GATEHOUSE_ENV", "staging")

    with pytest.raises(ConfigError, match="GATEHOUSE_ENV='staging' is invalid"):
        load_settings()


@pytest.mark.parametrize(
    "raw, expected", [("on", True), ("1", True), ("off", False), ("No", False)]
)
def test_env_bool_values(monkeypatch, raw, expected):
    monkeypatch.setenv("SOME_FLAG", raw)

    assert env_bool("SOME_FLAG", not expected) is expected


def test_env_bool_rejects_other_words(monkeypatch):
    monkeypatch.setenv("SOME_FLAG", "maybe")

    with pytest.raises(ConfigError, match="SOME_FLAG='maybe' is not a boolean"):
        env_bool("SOME_FLAG", True)


def test_env_int_range_checked(monkeypatch):
    monkeypatch.setenv("OTP_TOKEN_DIGITS", "11")

    with pytest.raises(ConfigError, match="above the maximum 10"):
        env_int("OTP_TOKEN_DIGITS", 6, 6, 10)


def test_short_secret_rejected(clean_env, monkeypatch):
    monkeypatch.setenv("GATEHOUSE_ENV", "development")
    monkeypatch.setenv("GATEHOUSE_SERVICE_TOKEN", "short")

    with pytest.raises(ConfigError, match="GATEHOUSE_SERVICE_TOKEN is too short"):
        load_settings()
