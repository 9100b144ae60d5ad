"""Start a complete gatehouse stack as local processes for the functional tests.

Every stack gets its own data folder, Redis key prefix, RabbitMQ names and loopback
ports, so several can run at once on the shared servers, and each removes what it
created when it stops.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pika
import redis

CHECKOUT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_range(count: int) -> int:
    """Return the first of ``count`` consecutive free loopback ports."""
    for _ in range(200):
        base = random.randint(20000, 60000 - count)
        if all(_port_free(base + offset) for offset in range(count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports found")


class LocalStack:
    """gateway, identity, N OTP replicas and the mailer, on loopback."""

    def __init__(
        self,
        smtp_port: int | None,
        otp_replicas: int = 1,
        extra_env: dict[str, str] | None = None,
        public_host: str = "127.0.0.1",
    ) -> None:
        """``public_host`` names the gateway in its public URL; WebAuthn tests use
        "localhost", because an IP address is not a valid WebAuthn RP ID."""
        self.run_id = uuid.uuid4().hex[:12]
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"gatehouse-{self.run_id}-"))
        self.redis_prefix = f"test-{self.run_id}:"
        self.amqp_prefix = f"test-{self.run_id}"
        base = free_port_range(2 + otp_replicas)
        self.gateway_port = base
        self.identity_port = base + 1
        self.otp_port = base + 2
        self.otp_replicas = otp_replicas
        self.url = f"http://{public_host}:{self.gateway_port}"
        self.env = {
            **os.environ,
            "GATEHOUSE_ENV": "development",
            "GATEHOUSE_DATA_DIR": str(self.data_dir),
            "GATEHOUSE_REDIS_PREFIX": self.redis_prefix,
            "GATEHOUSE_AMQP_PREFIX": self.amqp_prefix,
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(self.gateway_port),
            "GATEHOUSE_PUBLIC_URL": self.url,
            "IDENTITY_PORT": str(self.identity_port),
            "OTP_PORT": str(self.otp_port),
            "OTP_REPLICAS": str(otp_replicas),
            "GATEHOUSE_LOG_FORMAT": "json",
            "IDENTITY_WORKERS": "2",
            "OTP_WORKERS": "1",
            "GATEWAY_WORKERS": "1",
        }
        self.env.pop("SMTP_HOST", None)
        if smtp_port is not None:
            self.env.update({"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp_port)})
        self.env.update(extra_env or {})
        self.process: subprocess.Popen | None = None
        self.log_path = self.data_dir / "stack.log"

    @property
    def otp_urls(self) -> list[str]:
        return [
            f"http://127.0.0.1:{self.otp_port + k}" for k in range(self.otp_replicas)
        ]

    @property
    def identity_url(self) -> str:
        return f"http://127.0.0.1:{self.identity_port}"

    def start(self, timeout: float = 90.0) -> LocalStack:
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self._log_file = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gatehouse.common.stack", "run"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=CHECKOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"stack exited early:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"stack not ready after {timeout} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(
                self.log_path.read_text(errors="replace").splitlines()[-lines:]
            )
        except OSError:
            return "(no log)"

    def signing_key(self, caller: str = "gateway"):
        """Return ``caller``'s development signing key from the stack's data folder."""
        import json

        from gatehouse.common.servicekeys import parse_signing_key, signing_key_variable

        secrets_file = self.data_dir / "dev-secrets.json"
        stored = json.loads(secrets_file.read_text())
        return parse_signing_key(caller, stored[signing_key_variable(caller)])

    def agentctl(
        self, *arguments: str, check: bool = False, extra_env: dict | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(VENV_BIN / "agentctl"), *arguments],
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
        )

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "_log_file", None):
            self._log_file.close()
        self.cleanup_servers()
        # The mailer's gpg calls start a gpg-agent for the stack's GnuPG home, which
        # would outlive the test run.
        gnupg_home = self.data_dir / "gnupg"
        if gnupg_home.exists():
            subprocess.run(
                ["gpgconf", "--homedir", str(gnupg_home), "--kill", "all"],
                capture_output=True,
                timeout=30,
                check=False,
            )

    def cleanup_servers(self) -> None:
        """Delete this stack's Redis keys, RabbitMQ queues and exchanges."""
        client = redis.Redis.from_url(
            self.env.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        )
        for key in client.scan_iter(match=f"{self.redis_prefix}*", count=500):
            client.delete(key)
        delete_amqp_names(
            self.env.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"),
            self.amqp_prefix,
        )


def _list_names(kind: str) -> list[str]:
    result = subprocess.run(
        ["rabbitmqctl", "-q", f"list_{kind}", "name"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def delete_amqp_names(amqp_url: str, prefix: str) -> None:
    """Delete every queue and exchange whose name starts with ``prefix``."""
    queues = [name for name in _list_names("queues") if name.startswith(prefix + ".")]
    exchanges = [
        name for name in _list_names("exchanges") if name.startswith(prefix + ".")
    ]
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        for name in queues:
            channel.queue_delete(name)
        for name in exchanges:
            channel.exchange_delete(name)
    finally:
        connection.close()
