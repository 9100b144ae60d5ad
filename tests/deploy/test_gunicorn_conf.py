"""deploy/gunicorn.conf.py under a real gunicorn on a free loopback port."""

from __future__ import annotations

import json
import os
import runpy
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

PROBE_APP = """
def app(environ, start_response):
    headers = [("Content-Type", "text/plain"), ("X-Request-ID", "req-0123456789")]
    start_response("200 OK", headers)
    return [b"ok"]
"""
RESET_TOKEN = "Zq3xN8vLr2TtYp5WcK7mHd9s"
CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "gunicorn.conf.py"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment(tmp_path: Path, **variables: str) -> dict[str, str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GUNICORN_", "GATEHOUSE_", "GATEWAY_"))
        and not key.endswith("_PORT")
    }
    environment["HOME"] = str(tmp_path)
    environment.update(variables)
    return environment


def _start(tmp_path: Path, environment: dict[str, str]) -> subprocess.Popen:
    (tmp_path / "probe_app.py").write_text(PROBE_APP)
    command = [sys.executable, "-m", "gunicorn", "--config", str(CONFIG)]
    command += ["--chdir", str(tmp_path), "probe_app:app"]
    # The child keeps its own copy of the file descriptor.
    with open(tmp_path / "gunicorn.log", "w") as log:
        return subprocess.Popen(
            command, env=environment, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path
        )


def _get(url: str, deadline: float) -> bytes:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                return response.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def gateway_server(tmp_path):
    port = _free_port()
    environment = _environment(
        tmp_path,
        GATEHOUSE_COMPONENT="gateway",
        GATEWAY_HOST="127.0.0.1",
        GATEWAY_PORT=str(port),
        GUNICORN_WORKERS="1",
        GUNICORN_THREADS="2",
        GATEHOUSE_LOG_HASH_KEY="test-hash-key-of-at-least-32-characters",
    )
    process = _start(tmp_path, environment)
    yield f"http://127.0.0.1:{port}", tmp_path / "gunicorn.log"
    _stop(process)


def test_gunicorn_serves_on_gateway_port(gateway_server):
    url, _ = gateway_server
    assert _get(url + "/healthz", time.monotonic() + 20) == b"ok"


def test_gunicorn_access_log_redacts(gateway_server):
    url, log_path = gateway_server
    deadline = time.monotonic() + 20
    _get(f"{url}/agent/password/reset/{RESET_TOKEN}?next=hidden-query", deadline)
    _get(f"{url}/v1/encryption/alice%40example.com", deadline)

    lines = []
    while time.monotonic() < deadline and len(lines) < 2:
        lines = [
            json.loads(line)
            for line in log_path.read_text().splitlines()
            if line.startswith("{") and '"http.access"' in line
        ]
        time.sleep(0.1)
    text = log_path.read_text()

    # A worker thread may write its access line after the client received the response,
    # so the two lines can come in either order.
    lines.sort(key=lambda line: line["path"])
    assert len(lines) == 2
    assert lines[0]["path"] == "/agent/password/reset/[redacted]"
    assert lines[1]["path"] == "/v1/encryption/[redacted]"
    assert lines[0]["status"] == 200
    assert lines[0]["request_id"] == "req-0123456789"
    assert lines[0]["service"] == "gateway"
    assert lines[0]["event"] == "http.access"
    assert lines[0]["ts"].endswith("Z")
    assert len(lines[0]["ip_hash"]) == 16
    assert RESET_TOKEN not in text
    assert "hidden-query" not in text
    assert "alice" not in text
    for line in lines:
        assert "127.0.0.1" not in json.dumps(line)


@pytest.mark.parametrize(
    ("component", "variable", "default"),
    [
        ("gateway", "GATEWAY_PORT", 8080),
        ("identity", "IDENTITY_PORT", 8081),
        ("otp", "OTP_PORT", 8082),
    ],
)
def test_gunicorn_bind_follows_port_variable(
    monkeypatch, tmp_path, component, variable, default
):
    for name in ("GATEWAY_HOST", "GATEWAY_PORT", "IDENTITY_PORT", "OTP_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GATEHOUSE_COMPONENT", component)
    assert _settings()["bind"] == [f"0.0.0.0:{default}"]

    monkeypatch.setenv(variable, "9123")
    settings = _settings()
    assert settings["bind"] == ["0.0.0.0:9123"]
    assert settings["accesslog"] == "-"
    assert settings["proc_name"] == f"gatehouse-{component}"


def test_gunicorn_worker_settings(monkeypatch):
    monkeypatch.setenv("GATEHOUSE_COMPONENT", "identity")
    monkeypatch.setenv("GUNICORN_WORKERS", "5")
    monkeypatch.setenv("GUNICORN_THREADS", "3")
    monkeypatch.setenv("GUNICORN_TIMEOUT", "45")
    settings = _settings()
    assert settings["workers"] == 5
    assert settings["threads"] == 3
    assert settings["timeout"] == 45
    assert settings["control_socket_disable"] is True


def _settings() -> dict:
    return runpy.run_path(str(CONFIG))


def test_gunicorn_rejects_missing_component(tmp_path):
    process = _start(tmp_path, _environment(tmp_path))
    assert process.wait(timeout=20) != 0
    output = (tmp_path / "gunicorn.log").read_text()
    assert "GATEHOUSE_COMPONENT" in output


def test_gunicorn_rejects_invalid_workers(tmp_path):
    environment = _environment(
        tmp_path, GATEHOUSE_COMPONENT="gateway", GUNICORN_WORKERS="many"
    )
    process = _start(tmp_path, environment)
    assert process.wait(timeout=20) != 0
    assert (
        "GUNICORN_WORKERS='many' is not an integer"
        in (tmp_path / "gunicorn.log").read_text()
    )
