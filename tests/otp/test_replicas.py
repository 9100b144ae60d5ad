"""Three OTP replicas as real gunicorn processes sharing Redis and one database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pyotp
import pytest
import requests
from gatehouse.common.config import load_settings
from gatehouse.common.servicekeys import SigningKey
from gatehouse.otp.migrations import upgrade_database
from support.signing import ServiceAuth

REPLICAS = 3


@pytest.fixture(scope="module")
def replicas(module_otp_env, free_port, tmp_path_factory):
    """Start three replicas on loopback; return their base URLs."""
    upgrade_database()
    log_dir = tmp_path_factory.mktemp("replica-logs")
    environment = {
        **os.environ,
        "GATEHOUSE_LOG_FORMAT": "json",
        "OTP_THROTTLE_AGENT_SHORT_MAX": "1000",
        "OTP_THROTTLE_IP_MAX": "1000",
        "OTP_RESEND_COOLDOWN": "0",
    }
    processes, urls = [], []
    try:
        for index in range(REPLICAS):
            port = free_port()
            log_file = open(log_dir / f"replica-{index}.log", "wb")  # noqa: SIM115
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "gatehouse.otp.app:create_app()",
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--workers",
                    "1",
                    "--threads",
                    "8",
                    "--worker-class",
                    "gthread",
                    "--log-level",
                    "warning",
                ],
                env=environment,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
            processes.append((process, log_file))
            urls.append(f"http://127.0.0.1:{port}")

        deadline = time.monotonic() + 30
        pending = list(urls)
        while pending and time.monotonic() < deadline:
            for url in list(pending):
                try:
                    if requests.get(f"{url}/readyz", timeout=5).status_code == 200:
                        pending.remove(url)
                except requests.RequestException:
                    pass
            time.sleep(0.1)
        assert not pending, f"replicas not ready: {pending}"
        yield urls
    finally:
        for process, _log_file in processes:
            # SIGINT is gunicorn's quick shutdown; nothing is left to drain here.
            process.send_signal(signal.SIGINT)
        for process, log_file in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log_file.close()


class Replica:
    def __init__(self, url: str, key: SigningKey) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.auth = ServiceAuth(key, "otp")

    def post(self, path: str, body: dict) -> requests.Response:
        return self.session.post(self.url + path, json=body, timeout=10)


@pytest.fixture(scope="module")
def nodes(replicas, module_otp_env) -> list[Replica]:
    key = load_settings().signing_key("gateway")
    return [Replica(url, key) for url in replicas]


@pytest.fixture
def mail_queue(module_otp_env, mail_queue_class):
    queue = mail_queue_class(module_otp_env["GATEHOUSE_AMQP_PREFIX"])
    yield queue
    queue.close()


def _verify(node: Replica, token: str, agent_id: int) -> requests.Response:
    return node.post(
        "/v1/verifications",
        {"agent_id": agent_id, "token": token, "client_ip": "127.0.0.1"},
    )


def test_email_token_across_replicas(nodes, mail_queue):
    agent_id = 1
    first, second, third = nodes
    started = first.post(
        "/v1/enrollments/email",
        {"agent_id": agent_id, "email": "ada@example.test", "first_name": "Ada"},
    )
    assert started.status_code == 202
    code = mail_queue.wait_for(agent_id).params["token"]
    confirmed = second.post(
        "/v1/enrollments/email/confirm",
        {"agent_id": agent_id, "token": code, "client_ip": "127.0.0.1"},
    )
    assert confirmed.status_code == 200

    assert (
        first.post(
            "/v1/challenges",
            {"agent_id": agent_id, "email": "ada@example.test", "first_name": "Ada"},
        ).status_code
        == 202
    )
    login_code = mail_queue.wait_for(agent_id, count=2).params["token"]
    assert _verify(second, login_code, agent_id).status_code == 200
    replay = _verify(third, login_code, agent_id)
    assert replay.status_code == 400
    assert replay.json()["error"] == "replayed_token"


def test_parallel_email_submissions_across_replicas(nodes, mail_queue):
    agent_id = 2
    first = nodes[0]
    first.post(
        "/v1/enrollments/email",
        {"agent_id": agent_id, "email": "ada@example.test", "first_name": "Ada"},
    )
    code = mail_queue.wait_for(agent_id).params["token"]
    first.post("/v1/enrollments/email/confirm", {"agent_id": agent_id, "token": code})
    first.post(
        "/v1/challenges",
        {"agent_id": agent_id, "email": "ada@example.test", "first_name": "Ada"},
    )
    login_code = mail_queue.wait_for(agent_id, count=2).params["token"]

    barrier = threading.Barrier(20)
    statuses: list[int] = []

    def submit(node: Replica):
        barrier.wait()
        statuses.append(_verify(node, login_code, agent_id).status_code)

    threads = [
        threading.Thread(target=submit, args=(nodes[i % REPLICAS],)) for i in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(statuses) == 20
    assert statuses.count(200) == 1
    assert statuses.count(400) == 19


def test_totp_replay_across_replicas(nodes):
    agent_id = 3
    first, second, third = nodes
    started = first.post(
        "/v1/enrollments/app", {"agent_id": agent_id, "account_name": "ada"}
    )
    secret = started.json()["secret"]
    generator = pyotp.TOTP(secret)
    confirmed = second.post(
        "/v1/enrollments/app/confirm",
        {"agent_id": agent_id, "token": generator.at(time.time() - 30)},
    )
    assert confirmed.status_code == 200

    if 30 - time.time() % 30 < 3:
        time.sleep(3.1)
    code = generator.now()
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def submit(node: Replica):
        barrier.wait()
        statuses.append(_verify(node, code, agent_id).status_code)

    threads = [
        threading.Thread(target=submit, args=(node,)) for node in (second, third)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [200, 400]
    assert _verify(first, code, agent_id).status_code == 400
