"""Concurrent SQLite writers and mail publishing while the broker is down."""

from __future__ import annotations

import logging
import threading

from gatehouse.common.config import load_settings
from gatehouse.identity.audit import SqlAuditLog
from gatehouse.identity.database import create_database_engine, create_session_factory


def test_sqlite_concurrent_writers(api):
    # Two engines stand for two gunicorn workers writing one SQLite file.
    settings = load_settings()
    url = f"sqlite:///{settings.data_dir / 'identity.sqlite3'}"
    engines = [create_database_engine(url) for _ in range(2)]
    logs = [SqlAuditLog(create_session_factory(engine), "key") for engine in engines]
    errors = []

    def write(audit_log, worker):
        try:
            for number in range(25):
                audit_log.record(f"load_{worker}_{number}", 1, None, None)
        except Exception as error:  # noqa: BLE001 - collected for the assert
            errors.append(error)

    threads = [threading.Thread(target=write, args=(logs[i % 2], i)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for engine in engines:
        engine.dispose()

    assert errors == []
    events = api.get("/v1/agents/1/audit?limit=500").json["events"]
    assert len(events) == 8 * 25


def test_publish_failure_retried_and_logged(make_api, monkeypatch, closed_port, caplog):
    monkeypatch.setenv("AMQP_URL", f"amqp://guest:guest@127.0.0.1:{closed_port}/%2F")
    api = make_api(IDENTITY_MAIL_RETRY_DELAYS=(0.05, 0.05))
    agent = api.make_agent()
    # create_app replaced the root handlers, caplog's included; put it back.
    logging.getLogger().addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="gatehouse.identity.outbox")

    response = api.post(
        "/v1/password-resets",
        {
            "login": "alice",
            "reset_url_base": "http://127.0.0.1/agent/password/reset/",
        },
    )
    assert response.status_code == 202
    api.drain()

    retries = [
        r for r in caplog.records if r.getMessage() == "identity.mail_publish_retry"
    ]
    failures = [
        r for r in caplog.records if r.getMessage() == "identity.mail_publish_failed"
    ]
    assert len(retries) == 3
    assert len(failures) == 1
    assert failures[0].agent_id == agent.id
    assert failures[0].levelno == logging.ERROR
