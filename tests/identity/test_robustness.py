"""Concurrent SQLite writers from several identity workers."""

from __future__ import annotations

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
