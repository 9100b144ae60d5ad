"""Time recovery-code verification: the HMAC comparisons alone and one consume().

Usage: .venv/bin/python -m bench.recovery_code_timing

It measures the worst case, a wrong code, which is compared with every unused row.
The cases are 10 salted rows (one HMAC each) and 10 rows in the old unsalted format
under three configured keys (three HMACs each). The third case is
``SqlRecoveryCodeStore.consume`` on a fresh SQLite file, which adds the SELECT and
the transaction.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import UTC, datetime
from types import SimpleNamespace

from gatehouse.otp.interfaces import InvalidToken
from gatehouse.otp.migrations import upgrade_database
from gatehouse.otp.models import FactorRow, RecoveryCodeRow, make_engine
from gatehouse.otp.recovery import (
    SqlRecoveryCodeStore,
    _legacy_hash,
    generate_code,
    normalize_recovery_code,
    recovery_keys,
)
from sqlalchemy import insert

AGENT = 1
WRONG_CODE = "zzzz-zzzz-zzzz"


def median_and_max_us(function, repeats: int) -> tuple[float, float]:
    durations = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        durations.append(time.perf_counter() - start)
    return statistics.median(durations) * 1e6, max(durations) * 1e6


def build_store() -> tuple[SqlRecoveryCodeStore, list[dict]]:
    url = f"sqlite:///{tempfile.mkdtemp(prefix='recovery-timing-')}/otp.sqlite3"
    upgrade_database(url)
    engine = make_engine(url)
    keys = recovery_keys(
        "current-" + "a" * 32, ["old-" + "b" * 32, "older-" + "c" * 32]
    )
    store = SqlRecoveryCodeStore(engine, keys)
    _codes, rows = store.new_set(AGENT)
    factor = {
        "agent_id": AGENT,
        "method": "email",
        "email_security": False,
        "created_at": datetime.now(UTC),
    }
    with engine.begin() as connection:
        connection.execute(insert(FactorRow), [factor])
        connection.execute(
            insert(RecoveryCodeRow), [{"agent_id": AGENT, **row} for row in rows]
        )
    return store, rows


def main() -> None:
    store, rows = build_store()
    wrong = normalize_recovery_code(WRONG_CODE)
    salted = [SimpleNamespace(id=i, **row) for i, row in enumerate(rows)]
    old_key = recovery_keys("older-" + "c" * 32, [])[0].key
    old_format = [
        SimpleNamespace(
            id=i,
            salt=None,
            key_id=None,
            code_hash=_legacy_hash(
                old_key, AGENT, normalize_recovery_code(generate_code())
            ),
        )
        for i in range(10)
    ]

    def consume_wrong() -> None:
        try:
            store.consume(AGENT, WRONG_CODE)
        except InvalidToken:
            pass

    cases = [
        ("10 salted rows", lambda: store._find(salted, AGENT, wrong), 2000),
        (
            "10 old-format rows, 3 keys",
            lambda: store._find(old_format, AGENT, wrong),
            2000,
        ),
        ("consume() on SQLite, 10 rows", consume_wrong, 500),
    ]
    for label, function, repeats in cases:
        median, worst = median_and_max_us(function, repeats)
        print(f"{label}: median {median:.0f} us, max {worst:.0f} us ({repeats} runs)")


if __name__ == "__main__":
    main()
