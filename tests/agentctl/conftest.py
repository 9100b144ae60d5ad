"""Fixtures for agentctl: the installed command run with a private environment."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
import redis

CHECKOUT = Path(__file__).resolve().parents[2]
AGENTCTL = CHECKOUT / ".venv" / "bin" / "agentctl"
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def cli_env(tmp_path):
    """Environment for agentctl: temporary data folder, unique Redis prefix."""
    prefix = f"test-agentctl-{uuid.uuid4().hex[:12]}:"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GATEHOUSE_", "IDENTITY_", "OTP_", "AMQP_"))
    }
    env.update(
        {
            "GATEHOUSE_DATA_DIR": str(tmp_path / "data"),
            "GATEHOUSE_REDIS_PREFIX": prefix,
            "GATEHOUSE_AMQP_PREFIX": prefix.rstrip(":"),
            "REDIS_URL": REDIS_URL,
            # Cheap hashing keeps each run fast; the default cost is tested elsewhere.
            "IDENTITY_ARGON2_MEMORY_KIB": "64",
            "IDENTITY_ARGON2_TIME_COST": "1",
        }
    )
    yield env

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=prefix + "*", count=500):
        client.delete(key)
    client.close()


@pytest.fixture
def agentctl(cli_env):
    """Return a function running agentctl with ``args``; returns CompletedProcess."""

    def run(*args, stdin=None):
        return subprocess.run(
            [str(AGENTCTL), *args],
            env=cli_env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return run
