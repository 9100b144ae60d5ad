"""deploy/compose_test.py: the skip without an engine, and the stack's .env."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tempfile

import pytest
import yaml


@pytest.fixture(scope="module")
def compose_test(checkout_dir):
    path = checkout_dir / "deploy" / "compose_test.py"
    spec = importlib.util.spec_from_file_location("compose_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_skips_without_engine(checkout_dir, tmp_path):
    environment = dict(os.environ)
    # No process listens on this socket path, so the engine check fails at once.
    environment["DOCKER_HOST"] = f"unix://{tmp_path}/docker.sock"
    result = subprocess.run(
        [sys.executable, str(checkout_dir / "deploy" / "compose_test.py")],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("SKIP: no Docker engine responds")
    assert "did not run" in result.stdout
    assert "Traceback" not in result.stderr


def test_engine_check_reports_reason(compose_test, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    available, reason = compose_test.engine_available(timeout=2)
    assert available is False
    assert reason


def test_generated_env_sets_required_variables(compose_test, checkout_dir):
    compose_text = (checkout_dir / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", compose_text))
    env = compose_test.generate_env(18080, 18025)
    assert required <= set(env)
    for name in required:
        assert env[name], f"{name} is empty"


def test_generated_env_is_fresh_and_url_safe(compose_test):
    first = compose_test.generate_env(18080, 18025)
    second = compose_test.generate_env(18080, 18025)
    assert first["GATEHOUSE_SECRET_KEY"] != second["GATEHOUSE_SECRET_KEY"]
    for name in ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "RABBITMQ_PASSWORD"):
        assert re.fullmatch(r"[0-9a-f]+", first[name])
    assert first["GATEWAY_PUBLISH"] == "127.0.0.1:18080"
    assert first["GATEHOUSE_PUBLIC_URL"] == "http://127.0.0.1:18080"


def test_generated_otp_key_is_fernet(compose_test):
    from cryptography.fernet import Fernet

    env = compose_test.generate_env(18080, 18025)
    token = Fernet(env["GATEHOUSE_OTP_KEYS"]).encrypt(b"secret")
    assert Fernet(env["GATEHOUSE_OTP_KEYS"]).decrypt(token) == b"secret"


def test_env_file_is_private(compose_test, tmp_path):
    path = compose_test.write_env_file(tmp_path, {"A": "1"})
    assert path.read_text() == "A=1\n"
    assert path.stat().st_mode & 0o777 == 0o600


def test_compose_command_names_project(compose_test, tmp_path, checkout_dir):
    command = compose_test.compose_command("gatehouse-test-x", tmp_path / "e.env")
    assert command[:4] == ["docker", "compose", "--project-name", "gatehouse-test-x"]
    assert str(checkout_dir / "docker-compose.yml") in command
    assert str(checkout_dir / "deploy" / "compose.mailpit-ui.yml") in command
    assert str(checkout_dir / "deploy" / "compose.test.yml") in command


def test_agentctl_command_mounts_temp(compose_test, tmp_path):
    compose = compose_test.compose_command("gatehouse-test-x", tmp_path / "e.env")
    command = compose_test.agentctl_command(compose)
    temp_dir = tempfile.gettempdir()
    assert command[-1] == "agentctl"
    assert f"{temp_dir}:{temp_dir}:ro" in command
    assert "--no-deps" in command


def test_test_overlay_only_relaxes_throttles(checkout_dir):
    overlay = yaml.safe_load((checkout_dir / "deploy" / "compose.test.yml").read_text())
    assert sorted(overlay["services"]) == ["identity", "otp"]
    for service in overlay["services"].values():
        assert list(service) == ["environment"]
        for variable in service["environment"]:
            assert variable.endswith(("_MAX", "_MAX_FAILURES")), variable
