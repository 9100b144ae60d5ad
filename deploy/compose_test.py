"""Run the functional suite against the docker compose stack: ``make test-compose``.

The script checks that a Docker engine responds. It then builds and starts
docker-compose.yml under a throw-away project name, with fresh secrets and two otp
replicas, and waits until every container is healthy and the gateway's /readyz
returns 200. Next it runs ``tests/functional`` against the published gateway, and
finally removes the containers and volumes again.

When no engine responds (at ``DOCKER_HOST`` or the default socket), the script prints a
line starting with ``SKIP:`` and exits 0, so ``make test-compose`` passes on
machines without Docker. Arguments after ``--`` go to pytest.

Environment the functional suite receives:

| variable | value |
| --- | --- |
| ``GATEHOUSE_TARGET_URL`` | the gateway, ``http://127.0.0.1:PORT`` |
| ``GATEHOUSE_MAILPIT_URL`` | the Mailpit web UI and API, ``http://127.0.0.1:PORT`` |
| ``GATEHOUSE_AGENTCTL`` | a command line that runs agentctl inside the stack |

``deploy/compose.test.yml`` raises the login throttles for the test stack, because
the suite signs in many times from one address.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from gatehouse.common.servicekeys import (
    CALLERS,
    PUBLIC_KEYS_VARIABLE,
    format_public_key,
    format_signing_key,
    generate_signing_key,
    signing_key_variable,
)

CHECKOUT_DIR = Path(__file__).resolve().parent.parent
COMPOSE_FILES = (
    "docker-compose.yml",
    "deploy/compose.mailpit-ui.yml",
    "deploy/compose.test.yml",
)
OTP_REPLICAS = 2
START_TIMEOUT_SECONDS = 900
READY_TIMEOUT_SECONDS = 120
SKIP_MESSAGE = "SKIP: no Docker engine responds"


def engine_available(timeout: float = 5.0) -> tuple[bool, str]:
    """Return whether a Docker engine responds to a ping, and the reason if not."""
    try:
        import docker
        import requests
    except ImportError as error:
        return False, f"the docker package is not installed ({error})"

    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except (docker.errors.DockerException, requests.RequestException, OSError) as error:
        return False, str(error).splitlines()[0][:200]
    client.close()
    return True, ""


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def generate_env(gateway_port: int, mailpit_port: int) -> dict[str, str]:
    """Return a complete .env for one test stack, with fresh secrets."""
    fernet_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    mail_job_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    env = {
        "GATEHOUSE_SECRET_KEY": secrets.token_hex(32),
        "GATEHOUSE_OTP_KEYS": fernet_key,
        "GATEHOUSE_MAIL_JOB_KEYS": mail_job_key,
        "GATEHOUSE_LOG_HASH_KEY": secrets.token_hex(32),
        "POSTGRES_PASSWORD": secrets.token_hex(24),
        "IDENTITY_DB_PASSWORD": secrets.token_hex(24),
        "OTP_DB_PASSWORD": secrets.token_hex(24),
        "REDIS_PASSWORD": secrets.token_hex(24),
        "RABBITMQ_PASSWORD": secrets.token_hex(24),
        "GATEWAY_PUBLISH": f"127.0.0.1:{gateway_port}",
        "GATEHOUSE_PUBLIC_URL": f"http://127.0.0.1:{gateway_port}",
        "MAILPIT_PUBLISH": f"127.0.0.1:{mailpit_port}",
        "SMTP_HOST": "mailpit",
        "SMTP_PORT": "1025",
    }
    env.update(service_key_env())
    return env


def service_key_env() -> dict[str, str]:
    """Return fresh signing keys for every caller and the list of their public keys."""
    keys = [generate_signing_key(caller) for caller in CALLERS]
    env = {signing_key_variable(key.caller): format_signing_key(key) for key in keys}
    env[PUBLIC_KEYS_VARIABLE] = ",".join(format_public_key(key) for key in keys)
    return env


def write_env_file(directory: Path, env: dict[str, str]) -> Path:
    path = directory / "compose-test.env"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        for name, value in env.items():
            handle.write(f"{name}={value}\n")
    return path


def compose_command(project: str, env_file: Path) -> list[str]:
    command = ["docker", "compose", "--project-name", project]
    command += ["--project-directory", str(CHECKOUT_DIR), "--env-file", str(env_file)]
    for name in COMPOSE_FILES:
        command += ["--file", str(CHECKOUT_DIR / name)]
    return command


def agentctl_command(compose: list[str]) -> list[str]:
    """Return the command line that runs agentctl in the running stack.

    The stack is up, so ``--no-deps`` skips re-running migrate. The host's temporary
    folder is mounted read-only at the same path, so key and certificate files that
    the tests write there can be imported by path.
    """
    temp_dir = tempfile.gettempdir()
    command = compose + ["run", "--rm", "--no-deps", "--no-TTY"]
    command += ["--volume", f"{temp_dir}:{temp_dir}:ro", "agentctl"]
    return command


def wait_ready(url: str, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(2)
    return False


def print_container_states(project: str) -> None:
    """Print name, state and health of every container of ``project``."""
    import docker

    client = docker.from_env(timeout=10)
    label = f"com.docker.compose.project={project}"
    for container in client.containers.list(all=True, filters={"label": label}):
        health = container.attrs.get("State", {}).get("Health", {}).get("Status", "-")
        print(f"  {container.name}: {container.status}, health {health}")
    client.close()


def run_stack_tests(pytest_args: list[str]) -> int:
    project = f"gatehouse-test-{secrets.token_hex(4)}"
    gateway_port = free_loopback_port()
    mailpit_port = free_loopback_port()
    target_url = f"http://127.0.0.1:{gateway_port}"

    with tempfile.TemporaryDirectory(prefix="gatehouse-compose-") as tmp:
        env_file = write_env_file(Path(tmp), generate_env(gateway_port, mailpit_port))
        compose = compose_command(project, env_file)
        up = compose + ["up", "--build", "--detach", "--wait"]
        up += ["--wait-timeout", str(START_TIMEOUT_SECONDS)]
        up += ["--scale", f"otp={OTP_REPLICAS}"]
        try:
            print(f"compose_test: starting project {project}", flush=True)
            if subprocess.run(up, cwd=CHECKOUT_DIR, check=False).returncode != 0:
                print("compose_test: the stack did not become healthy", file=sys.stderr)
                print_container_states(project)
                subprocess.run(
                    compose + ["logs", "--no-color", "--tail", "100"], check=False
                )
                return 1

            deadline = time.monotonic() + READY_TIMEOUT_SECONDS
            if not wait_ready(f"{target_url}/readyz", deadline):
                print(
                    f"compose_test: {target_url}/readyz did not return 200 within "
                    f"{READY_TIMEOUT_SECONDS} s",
                    file=sys.stderr,
                )
                print_container_states(project)
                return 1

            suite_env = dict(os.environ)
            suite_env["GATEHOUSE_TARGET_URL"] = target_url
            suite_env["GATEHOUSE_MAILPIT_URL"] = f"http://127.0.0.1:{mailpit_port}"
            suite_env["GATEHOUSE_AGENTCTL"] = shlex.join(agentctl_command(compose))
            pytest = [sys.executable, "-m", "pytest", "tests/functional", "-q"]
            result = subprocess.run(
                pytest + pytest_args, cwd=CHECKOUT_DIR, env=suite_env, check=False
            )
            return result.returncode
        finally:
            print(f"compose_test: removing project {project}", flush=True)
            subprocess.run(
                compose + ["down", "--volumes", "--remove-orphans"],
                cwd=CHECKOUT_DIR,
                check=False,
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "pytest_args", nargs="*", help="extra pytest arguments, after --"
    )
    args = parser.parse_args(argv)

    available, reason = engine_available()
    if not available:
        print(f"{SKIP_MESSAGE} ({reason}); the compose stack test did not run.")
        return 0

    version = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, text=True, check=False
    )
    if version.returncode != 0:
        print(
            "compose_test: a Docker engine responds but `docker compose` is "
            "missing; install the Docker Compose v2 plugin",
            file=sys.stderr,
        )
        return 2

    return run_stack_tests(args.pytest_args)


if __name__ == "__main__":
    sys.exit(main())
