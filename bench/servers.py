"""Start and stop the servers under test: the gatehouse stack and privacyIDEA.

Both run as child processes of the benchmark on loopback ports picked at start,
with their own data folders, Redis key prefix and RabbitMQ names, so a benchmark
can run beside the test suite without sharing state.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from gatehouse.common.servicekeys import (
    SigningKey,
    parse_signing_key,
    signing_key_variable,
)

CHECKOUT = Path(__file__).resolve().parent.parent
VENV_PYTHON = CHECKOUT / ".venv" / "bin" / "python"
PI_VENV = CHECKOUT / "bench" / ".privacyidea-venv"
PI_VERSION = "3.14"


def free_port_block(count: int) -> int:
    """Return the first of ``count`` consecutive free loopback ports."""
    for _attempt in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        if first + count > 65535:
            continue
        sockets = []
        try:
            for offset in range(count):
                sock = socket.socket()
                sock.bind(("127.0.0.1", first + offset))
                sockets.append(sock)
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return first
    raise RuntimeError(f"found no block of {count} free loopback ports")


def wait_http_ok(
    url: str,
    timeout: float,
    process: subprocess.Popen | None = None,
    log_path: Path | None = None,
) -> None:
    """Poll ``url`` until it returns 200; raise RuntimeError at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log_path.read_text()[-2000:] if log_path else ""
            raise RuntimeError(f"server exited with {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not return 200 within {timeout:.0f} s")


def stop_process_group(process: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM the process (its own session), then SIGKILL its group if needed."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class GatehouseStack:
    """The stack launched by ``python -m gatehouse.common.stack run``."""

    def __init__(
        self, work_dir: Path, replicas: int, extra_env: dict[str, str]
    ) -> None:
        run_id = uuid.uuid4().hex[:10]
        self.data_dir = work_dir / "gatehouse"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.replicas = replicas
        self.amqp_prefix = f"bench-{run_id}"
        ports = free_port_block(2 + replicas)
        self.gateway_port = ports
        self.identity_port = ports + 1
        self.otp_port = ports + 2
        self.env = {
            **os.environ,
            "GATEHOUSE_ENV": "development",
            "GATEHOUSE_DATA_DIR": str(self.data_dir),
            "GATEHOUSE_REDIS_PREFIX": f"bench-{run_id}:",
            "GATEHOUSE_AMQP_PREFIX": self.amqp_prefix,
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(self.gateway_port),
            "IDENTITY_PORT": str(self.identity_port),
            "OTP_PORT": str(self.otp_port),
            "OTP_REPLICAS": str(replicas),
            **extra_env,
        }
        self.log_path = self.data_dir / "stack.log"
        self.process: subprocess.Popen | None = None

    @property
    def otp_ports(self) -> list[int]:
        return [self.otp_port + index for index in range(self.replicas)]

    @property
    def signing_key(self) -> SigningKey:
        """Return the gateway's signing key, because the bench calls identity and
        OTP as the gateway."""
        variable = signing_key_variable("gateway")
        text = self.env.get(variable)
        if not text:
            secrets = json.loads((self.data_dir / "dev-secrets.json").read_text())
            text = secrets[variable]
        return parse_signing_key("gateway", text)

    def run_tool(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run a command with the stack's environment; raise on a non-zero exit."""
        completed = subprocess.run(
            argv,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=CHECKOUT,
        )
        if completed.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv[:4])} failed ({completed.returncode}): "
                f"{completed.stderr.strip()[-1500:]}"
            )
        return completed

    def migrate(self) -> None:
        self.run_tool(str(VENV_PYTHON), "-m", "gatehouse.common.stack", "migrate")

    def start(self, timeout: float = 90) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(VENV_PYTHON), "-m", "gatehouse.common.stack", "run"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=CHECKOUT,
            start_new_session=True,
        )
        wait_http_ok(
            f"http://127.0.0.1:{self.gateway_port}/healthz",
            timeout,
            self.process,
            self.log_path,
        )
        for port in [self.identity_port, *self.otp_ports]:
            wait_http_ok(
                f"http://127.0.0.1:{port}/healthz", timeout, self.process, self.log_path
            )

    def stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process)

    def delete_amqp_names(self) -> None:
        """Delete this run's RabbitMQ queues and exchanges (all carry its prefix)."""
        rabbitmqctl = shutil.which("rabbitmqctl")
        if rabbitmqctl is None:
            return
        import pika

        listed = []
        for kind in ("list_queues", "list_exchanges"):
            completed = subprocess.run(
                [rabbitmqctl, "-q", kind, "name"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            names = [line.strip() for line in completed.stdout.splitlines()]
            listed.append(
                [name for name in names if name.startswith(self.amqp_prefix + ".")]
            )
        queues, exchanges = listed
        url = self.env.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
        connection = pika.BlockingConnection(pika.URLParameters(url))
        channel = connection.channel()
        for name in queues:
            channel.queue_delete(name)
        for name in exchanges:
            channel.exchange_delete(name)
        connection.close()


def privacyidea_installed() -> bool:
    python = PI_VENV / "bin" / "python"
    if not python.exists():
        return False
    completed = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m; print(m.version('privacyidea'))",
        ],
        capture_output=True,
        text=True,
    )
    return completed.stdout.strip() == PI_VERSION


class PrivacyIdeaServer:
    """privacyIDEA served by gunicorn from bench/.privacyidea-venv."""

    def __init__(self, work_dir: Path, users: int, workers: int, threads: int) -> None:
        self.data_dir = work_dir / "privacyidea"
        self.users = users
        self.workers, self.threads = workers, threads
        self.port = free_port_block(1)
        self.log_path = self.data_dir / "gunicorn.log"
        self.process: subprocess.Popen | None = None
        self.setup_process: subprocess.Popen | None = None

    def install(self) -> None:
        subprocess.run(
            ["bash", str(CHECKOUT / "bench" / "install_privacyidea.sh")],
            check=True,
            timeout=900,
        )

    def begin_setup(self) -> None:
        """Start the setup script in the background; ``finish_setup`` waits."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = (self.data_dir / "setup.log").open("ab")
        self.setup_process = subprocess.Popen(
            [
                str(PI_VENV / "bin" / "python"),
                str(CHECKOUT / "bench" / "privacyidea_setup.py"),
                str(self.data_dir),
                str(self.users),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
        )

    def finish_setup(self, timeout: float = 300) -> None:
        code = self.setup_process.wait(timeout)
        if code != 0:
            tail = (self.data_dir / "setup.log").read_text()[-2000:]
            raise RuntimeError(f"privacyIDEA setup failed ({code}):\n{tail}")

    @property
    def tokens(self) -> dict[str, str]:
        return json.loads((self.data_dir / "tokens.json").read_text())

    def start(self, timeout: float = 60) -> None:
        log = self.log_path.open("ab")
        argv = [
            str(PI_VENV / "bin" / "gunicorn"),
            "wsgi:application",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
            "--worker-class",
            "gthread" if self.threads > 1 else "sync",
            "--chdir",
            str(self.data_dir),
            "--log-level",
            "warning",
            "--timeout",
            "60",
        ]
        self.process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
            start_new_session=True,
        )
        wait_http_ok(
            f"http://127.0.0.1:{self.port}/healthz/",
            timeout,
            self.process,
            self.log_path,
        )

    def stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process)


def python_version_of(python: Path) -> str:
    completed = subprocess.run(
        [str(python), "--version"], capture_output=True, text=True
    )
    return completed.stdout.strip() or sys.version.split()[0]
