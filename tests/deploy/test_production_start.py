"""The gateway's container command in production mode, on loopback, without Docker.

Runs what the image runs (gunicorn with deploy/gunicorn.conf.py and the gateway app)
with the environment compose gives it, pointed at ports where nothing listens.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import redis
from cryptography.fernet import Fernet
from gatehouse.common.servicekeys import (
    format_public_key,
    format_signing_key,
    generate_signing_key,
)

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "gunicorn.conf.py"
GATEWAY_APP = "gatehouse.gateway.app:create_app()"
OTP_APP = "gatehouse.otp.app:create_app()"
IDENTITY_APP = "gatehouse.identity.app:create_app()"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _production_environment(tmp_path: Path, port: int) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "GATEHOUSE_COMPONENT": "gateway",
        "GATEHOUSE_ENV": "production",
        "GATEHOUSE_DATA_DIR": str(tmp_path),
        "GATEHOUSE_SECRET_KEY": uuid.uuid4().hex,
        "GATEHOUSE_GATEWAY_SIGNING_KEY": format_signing_key(
            generate_signing_key("gateway")
        ),
        "GATEHOUSE_OTP_KEYS": Fernet.generate_key().decode(),
        "GATEHOUSE_LOG_HASH_KEY": uuid.uuid4().hex,
        "GATEHOUSE_MAIL_JOB_KEYS": Fernet.generate_key().decode(),
        "GATEHOUSE_REDIS_PREFIX": f"gatehouse-deploy-test-{uuid.uuid4().hex}:",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "IDENTITY_URL": f"http://127.0.0.1:{_free_port()}",
        "OTP_URLS": f"http://127.0.0.1:{_free_port()}",
        "GUNICORN_WORKERS": "1",
    }


def _run(
    environment: dict[str, str], tmp_path: Path, app: str = GATEWAY_APP
) -> subprocess.Popen:
    command = [sys.executable, "-m", "gunicorn", "--config", str(CONFIG), app]
    with open(tmp_path / "gateway.log", "w") as log:
        return subprocess.Popen(
            command, env=environment, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path
        )


def _get(url: str, deadline: float) -> tuple[int, bytes]:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("gateway")
    port = _free_port()
    process = _run(_production_environment(tmp_path, port), tmp_path)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_gateway_healthz_in_production(gateway):
    status, _ = _get(gateway + "/healthz", time.monotonic() + 30)
    assert status == 200


def test_gateway_readyz_names_missing(gateway):
    status, body = _get(gateway + "/readyz", time.monotonic() + 30)
    assert status == 503
    failed = json.loads(body)["failed"]
    assert "identity" in failed
    assert "otp" in failed


@pytest.mark.parametrize(
    "variable",
    [
        "GATEHOUSE_SECRET_KEY",
        "GATEHOUSE_OTP_KEYS",
        "GATEHOUSE_GATEWAY_SIGNING_KEY",
        "REDIS_URL",
    ],
)
def test_gateway_requires_secret(tmp_path, variable):
    environment = _production_environment(tmp_path, _free_port())
    del environment[variable]
    process = _run(environment, tmp_path)
    assert process.wait(timeout=30) != 0
    assert f"{variable} is not set" in (tmp_path / "gateway.log").read_text()


def test_gateway_rejects_malformed_signing_key(tmp_path):
    environment = _production_environment(tmp_path, _free_port())
    environment["GATEHOUSE_GATEWAY_SIGNING_KEY"] = "k1:not-a-key"
    process = _run(environment, tmp_path)
    assert process.wait(timeout=30) != 0
    output = (tmp_path / "gateway.log").read_text()
    assert "GATEHOUSE_GATEWAY_SIGNING_KEY is invalid" in output
    assert "not-a-key" not in output


def _otp_environment(tmp_path: Path) -> dict[str, str]:
    environment = _production_environment(tmp_path, _free_port())
    del environment["GATEHOUSE_GATEWAY_SIGNING_KEY"]
    gateway_key = generate_signing_key("gateway")
    environment.update(
        {
            "GATEHOUSE_COMPONENT": "otp",
            "OTP_PORT": str(_free_port()),
            # Nothing listens there; the OTP app connects to the broker lazily.
            "AMQP_URL": f"amqp://gatehouse:unused@127.0.0.1:{_free_port()}/%2F",
            "GATEHOUSE_SERVICE_PUBLIC_KEYS": format_public_key(gateway_key),
        }
    )
    return environment


@pytest.mark.parametrize("variable", ["AMQP_URL", "GATEHOUSE_SERVICE_PUBLIC_KEYS"])
def test_otp_requires_variable(tmp_path, variable):
    environment = _otp_environment(tmp_path)
    del environment[variable]
    process = _run(environment, tmp_path, OTP_APP)
    assert process.wait(timeout=60) != 0
    assert f"{variable} is not set" in (tmp_path / "gateway.log").read_text()


@pytest.mark.parametrize(
    "variable", ["GATEHOUSE_IDENTITY_SIGNING_KEY", "GATEHOUSE_SERVICE_PUBLIC_KEYS"]
)
def test_identity_requires_key(tmp_path, variable):
    environment = _otp_environment(tmp_path)
    environment.update(
        {
            "GATEHOUSE_COMPONENT": "identity",
            "IDENTITY_PORT": str(_free_port()),
            "GATEHOUSE_IDENTITY_SIGNING_KEY": format_signing_key(
                generate_signing_key("identity")
            ),
        }
    )
    del environment[variable]
    process = _run(environment, tmp_path, IDENTITY_APP)
    assert process.wait(timeout=60) != 0
    assert f"{variable} is not set" in (tmp_path / "gateway.log").read_text()


def test_otp_starts_with_keys_and_broker_url(tmp_path):
    environment = _otp_environment(tmp_path)
    process = _run(environment, tmp_path, OTP_APP)
    try:
        status, _ = _get(
            f"http://127.0.0.1:{environment['OTP_PORT']}/healthz",
            time.monotonic() + 60,
        )
    finally:
        process.terminate()
        process.wait(timeout=15)
    assert status == 200


def _dockerfile_healthcheck() -> list[str]:
    dockerfile = (CONFIG.parent / "Dockerfile").read_text()
    line = next(line for line in dockerfile.splitlines() if 'CMD ["python"' in line)
    return json.loads(line.strip().removeprefix("CMD "))


def test_image_healthcheck_passes(gateway):
    command = _dockerfile_healthcheck()
    port = gateway.rsplit(":", 1)[1]
    environment = {
        "PATH": os.environ["PATH"],
        "GATEHOUSE_COMPONENT": "gateway",
        "GATEWAY_PORT": port,
    }
    _get(gateway + "/healthz", time.monotonic() + 30)
    command[0] = sys.executable
    result = subprocess.run(command, env=environment, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_image_healthcheck_fails_closed():
    command = _dockerfile_healthcheck()
    command[0] = sys.executable
    environment = {
        "PATH": os.environ["PATH"],
        "GATEHOUSE_COMPONENT": "otp",
        "OTP_PORT": str(_free_port()),
    }
    result = subprocess.run(command, env=environment, capture_output=True, timeout=30)
    assert result.returncode != 0


def test_compose_healthcheck_passes(gateway, compose):
    port = gateway.rsplit(":", 1)[1]
    command = list(compose["services"]["gateway"]["healthcheck"]["test"][1:])
    command[0] = sys.executable
    command[-1] = command[-1].replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    _get(gateway + "/healthz", time.monotonic() + 30)
    result = subprocess.run(command, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_mailer_healthcheck_reads_heartbeat(compose, tmp_path):
    # The heartbeat key a consuming mailer refreshes (gatehouse.mailer.worker).
    command = list(compose["services"]["mailer"]["healthcheck"]["test"][1:])
    assert command == ["gatehouse-mailer", "--check"]
    command[0] = str(Path(sys.executable).parent / "gatehouse-mailer")
    environment = _production_environment(tmp_path, _free_port())
    # compose gives the mailer its broker URL; --check itself never connects.
    environment["AMQP_URL"] = f"amqp://gatehouse:unused@127.0.0.1:{_free_port()}/%2F"
    alive_key = environment["GATEHOUSE_REDIS_PREFIX"] + "mail:alive"
    client = redis.Redis.from_url(environment["REDIS_URL"])

    try:
        silent = subprocess.run(
            command, env=environment, capture_output=True, timeout=30
        )
        client.set(alive_key, "{}", ex=30)
        alive = subprocess.run(
            command, env=environment, capture_output=True, timeout=30
        )
    finally:
        client.delete(alive_key)
        client.close()

    assert silent.returncode == 1, silent.stderr
    assert alive.returncode == 0, alive.stderr


def test_mailer_requires_amqp_url(tmp_path):
    mailer = str(Path(sys.executable).parent / "gatehouse-mailer")
    environment = _production_environment(tmp_path, _free_port())

    result = subprocess.run(
        [mailer], env=environment, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 2
    assert "AMQP_URL is not set" in result.stderr
