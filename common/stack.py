"""Run the whole gatehouse stack as local processes: ``make run`` and the tests.

``python -m gatehouse.common.stack migrate`` upgrades both databases.
``python -m gatehouse.common.stack run`` also starts identity, the OTP replicas, the
mailer and the gateway in the foreground, and stops them all on SIGINT or SIGTERM.
If any of them exits on its own, the rest are stopped and the exit status is 1.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from .config import ConfigError, env_int, env_str, gateway_public_url, load_settings
from .logs import configure_logging

log = logging.getLogger("gatehouse.stack")

STOP_TIMEOUT = 15.0
# The module of each service that offers upgrade_database() (Alembic, to head).
MIGRATIONS = {
    "identity": "gatehouse.identity.database",
    "otp": "gatehouse.otp.migrations",
}
READY_TIMEOUT = 60.0


@dataclass
class Child:
    name: str
    argv: list[str]
    health_url: str | None
    process: subprocess.Popen | None = None


def _gunicorn(app: str, bind: str, workers: int, threads: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        app,
        "--bind",
        bind,
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--worker-class",
        "gthread" if threads > 1 else "sync",
        "--graceful-timeout",
        "10",
        "--timeout",
        "60",
        "--log-level",
        "warning",
        # gunicorn 25+ opens one control socket per user by default, which the
        # several masters of one stack (and of parallel test stacks) would share.
        "--no-control-socket",
        # Longer than gunicorn's 2 s default, so the gateway's pooled connections
        # to the internal services are rarely closed under it.
        "--keep-alive",
        "30",
    ]


def plan_children() -> list[Child]:
    """Return the processes to start, with ports from the environment."""
    settings = load_settings()
    identity_port = env_int("IDENTITY_PORT", 8081, 1, 65535)
    otp_port = env_int("OTP_PORT", 8082, 1, 65535)
    replicas = env_int("OTP_REPLICAS", 1, 1, 16)
    gateway_host = env_str("GATEWAY_HOST", "127.0.0.1")
    gateway_port = env_int("GATEWAY_PORT", 8080, 1, 65535)
    threads = env_int("GUNICORN_THREADS", 4, 1, 64)

    children = [
        Child(
            "identity",
            _gunicorn(
                "gatehouse.identity.app:create_app()",
                f"127.0.0.1:{identity_port}",
                env_int("IDENTITY_WORKERS", 2, 1, 64),
                threads,
            ),
            f"http://127.0.0.1:{identity_port}/healthz",
        )
    ]
    for index in range(replicas):
        port = otp_port + index
        children.append(
            Child(
                f"otp-{index + 1}",
                _gunicorn(
                    "gatehouse.otp.app:create_app()",
                    f"127.0.0.1:{port}",
                    env_int("OTP_WORKERS", 2, 1, 64),
                    threads,
                ),
                f"http://127.0.0.1:{port}/healthz",
            )
        )
    children.append(
        Child("mailer", [sys.executable, "-m", "gatehouse.mailer.worker"], None)
    )
    children.append(
        Child(
            "gateway",
            _gunicorn(
                "gatehouse.gateway.app:create_app()",
                f"{gateway_host}:{gateway_port}",
                env_int("GATEWAY_WORKERS", 2, 1, 64),
                threads,
            ),
            f"http://{gateway_host}:{gateway_port}/healthz",
        )
    )
    if not os.environ.get("SMTP_HOST"):
        log.info(
            "stack.dev_mailbox", extra={"path": str(settings.data_dir / "mailbox")}
        )
    return children


def migrate() -> None:
    """Upgrade the identity and OTP databases to the newest Alembic revision."""
    for service, module_name in MIGRATIONS.items():
        importlib.import_module(module_name).upgrade_database()
        log.info("stack.migrated", extra={"database": service})


def _wait_ready(children: list[Child], deadline: float) -> bool:
    pending = [child for child in children if child.health_url]
    while pending and time.monotonic() < deadline:
        for child in list(pending):
            if child.process.poll() is not None:
                return False
            try:
                # The URL is built above from a loopback host and a port number.
                with urllib.request.urlopen(child.health_url, timeout=1) as response:  # noqa: S310
                    if response.status == 200:
                        pending.remove(child)
            except (urllib.error.URLError, OSError):
                pass
        time.sleep(0.2)
    return not pending


def _stop(children: list[Child]) -> None:
    for child in children:
        if child.process and child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for child in children:
        if child.process is None:
            continue
        try:
            child.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("stack.kill", extra={"child": child.name})
            child.process.kill()
            child.process.wait()
        log.info(
            "stack.stopped",
            extra={"child": child.name, "returncode": child.process.returncode},
        )


def run() -> int:
    """Start every service and supervise them until a signal or a failure."""
    migrate()
    children = plan_children()
    stopping = False

    def _on_signal(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    for child in children:
        # Each child gets its own process group, so the terminal's Ctrl-C reaches
        # only this supervisor, which then stops them in order.
        child.process = subprocess.Popen(child.argv, start_new_session=True)
        log.info("stack.started", extra={"child": child.name, "pid": child.process.pid})

    if not _wait_ready(children, time.monotonic() + READY_TIMEOUT):
        log.error("stack.not_ready")
        _stop(children)
        return 1
    gateway = gateway_public_url().rstrip("/")
    log.info("stack.ready", extra={"url": f"{gateway}/agent"})
    print(f"gatehouse is ready: {gateway}/agent", flush=True)

    status = 0
    while not stopping:
        for child in children:
            if child.process.poll() is not None:
                log.error(
                    "stack.child_exited",
                    extra={"child": child.name, "returncode": child.process.returncode},
                )
                stopping, status = True, 1
                break
        time.sleep(0.2)
    _stop(children)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gatehouse-stack", description=__doc__)
    parser.add_argument("command", choices=["run", "migrate"])
    arguments = parser.parse_args(argv)
    # Logging first, so the line naming a newly created dev-secrets.json shows
    # its path.
    configure_logging("stack", env_str("GATEHOUSE_LOG_FORMAT", "text"))
    try:
        load_settings()
    except ConfigError as error:
        print(f"gatehouse-stack: error: {error}", file=sys.stderr)
        return 2
    if arguments.command == "migrate":
        migrate()
        return 0
    return run()


if __name__ == "__main__":
    sys.exit(main())
