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

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "gunicorn.conf.py"
GATEWAY_APP = "gatehouse.gateway.app:create_app()"


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
        "GATEHOUSE_SERVICE_TOKEN": uuid.uuid4().hex,
        "GATEHOUSE_OTP_KEYS": Fernet.generate_key().decode(),
        "GATEHOUSE_LOG_HASH_KEY": uuid.uuid4().hex,
        "GATEHOUSE_REDIS_PREFIX": f"gatehouse-deploy-test-{uuid.uuid4().hex}:",
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "IDENTITY_URL": f"http://127.0.0.1:{_free_port()}",
        "OTP_URLS": f"http://127.0.0.1:{_free_port()}",
        "GUNICORN_WORKERS": "1",
    }


def _run(environment: dict[str, str], tmp_path: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "gunicorn", "--config", str(CONFIG), GATEWAY_APP]
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


@pytest.mark.parametrize("variable", ["GATEHOUSE_SECRET_KEY", "GATEHOUSE_OTP_KEYS"])
def test_gateway_requires_secret(tmp_path, variable):
    environment = _production_environment(tmp_path, _free_port())
    del environment[variable]
    process = _run(environment, tmp_path)
    assert process.wait(timeout=30) != 0
    assert f"{variable} is not set" in (tmp_path / "gateway.log").read_text()


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
    environment["REDIS_URL"] = "redis://127.0.0.1:6379/0"
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
