import json
import subprocess
import sys

import pytest
from gatehouse.common.config import ConfigError, env_bool, env_int, load_settings
from gatehouse.common.mail import MailJobCipher


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in (
        "GATEHOUSE_ENV",
        "GATEHOUSE_SECRET_KEY",
        "GATEHOUSE_GATEWAY_SIGNING_KEY",
        "GATEHOUSE_IDENTITY_SIGNING_KEY",
        "GATEHOUSE_SERVICE_PUBLIC_KEYS",
        "GATEHOUSE_OTP_KEYS",
        "GATEHOUSE_LOG_HASH_KEY",
        "GATEHOUSE_MAIL_JOB_KEYS",
        "GATEHOUSE_SECRET_KEY_FALLBACKS",
        "AMQP_URL",
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
    assert first.secret_key == second.secret_key
    assert (
        first.secret_key == json.loads(secrets_file.read_text())["GATEHOUSE_SECRET_KEY"]
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
        "GATEHOUSE_LOG_HASH_KEY",
    ):
        monkeypatch.setenv(name, f"value-of-{name}-padded-to-32-characters")
    monkeypatch.setenv("GATEHOUSE_OTP_KEYS", "new-key,old-key")
    monkeypatch.setenv("GATEHOUSE_MAIL_JOB_KEYS", "new-mail-key,old-mail-key")

    settings = load_settings()

    assert settings.secret_key == (
        "value-of-GATEHOUSE_SECRET_KEY-padded-to-32-characters"
    )
    assert settings.otp_keys == ["new-key", "old-key"]
    assert settings.mail_job_keys == ["new-mail-key", "old-mail-key"]
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
    monkeypatch.setenv("GATEHOUSE_SECRET_KEY", "short")

    with pytest.raises(ConfigError, match="GATEHOUSE_SECRET_KEY is too short"):
        load_settings()


def test_production_mail_job_keys_needed_to_seal(clean_env, monkeypatch):
    monkeypatch.setenv("GATEHOUSE_ENV", "production")
    for name in ("GATEHOUSE_SECRET_KEY", "GATEHOUSE_LOG_HASH_KEY"):
        monkeypatch.setenv(name, f"value-of-{name}-padded-to-32-characters")
    monkeypatch.setenv("GATEHOUSE_OTP_KEYS", "otp-key")

    settings = load_settings()

    assert settings.mail_job_keys == []
    with pytest.raises(ConfigError, match="GATEHOUSE_MAIL_JOB_KEYS is not set"):
        MailJobCipher(settings.mail_job_keys)


def test_old_dev_secrets_file_gains_missing_secret(clean_env):
    first = load_settings()
    secrets_file = clean_env / "dev-secrets.json"
    values = json.loads(secrets_file.read_text())
    del values["GATEHOUSE_MAIL_JOB_KEYS"]
    secrets_file.write_text(json.dumps(values))

    upgraded = load_settings()
    again = load_settings()

    assert upgraded.secret_key == first.secret_key
    assert len(upgraded.mail_job_keys) == 1
    assert upgraded.mail_job_keys != first.mail_job_keys
    assert again.mail_job_keys == upgraded.mail_job_keys
    assert secrets_file.stat().st_mode & 0o777 == 0o600


def test_secret_key_fallbacks_listed(clean_env, monkeypatch):
    monkeypatch.setenv("GATEHOUSE_SECRET_KEY_FALLBACKS", "older-secret, oldest-secret")

    settings = load_settings()

    assert settings.secret_key_fallbacks == ["older-secret", "oldest-secret"]
    assert "older-secret" not in repr(settings)


def test_parallel_starts_share_generated_secrets(clean_env):
    """Processes that start at once on a fresh data folder all read the same
    generated keys, as ``make run`` needs."""
    script = (
        "from gatehouse.common.config import load_settings; "
        "print(load_settings().mail_job_keys[0])"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
        )
        for _ in range(8)
    ]
    outputs = [process.communicate(timeout=60)[0].strip() for process in processes]

    assert all(process.returncode == 0 for process in processes)
    assert len(set(outputs)) == 1
    assert outputs[0]
