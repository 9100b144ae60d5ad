"""Unit tests of the benchmark harness: codes, step ledger, statistics, /proc sums,
the HTTP client and the SMTP sink. Run with ``.venv/bin/pytest bench/tests -q``."""

from __future__ import annotations

import asyncio
import os
import smtplib
import time
from email.message import EmailMessage

import pytest

from bench.httpload import Connection, closed_loop, percentile, require_loopback
from bench.procstat import ProcessTimes, QuietGate, cpu_seconds, snapshot
from bench.servers import free_port_block
from bench.smtp_sink import SmtpSink
from bench.totp_codes import (
    TIME_STEP,
    StepLedger,
    current_step,
    decode_secret,
    hotp,
    wrong_code,
)

# RFC 4226 appendix D: HOTP values for the ASCII secret "12345678901234567890".
RFC4226_SECRET = b"12345678901234567890"
RFC4226_VALUES = [
    "755224",
    "287082",
    "359152",
    "969429",
    "338314",
    "254676",
    "287922",
    "162583",
    "399871",
    "520489",
]


def test_hotp_matches_rfc4226_vectors():
    for counter, expected in enumerate(RFC4226_VALUES):
        assert hotp(RFC4226_SECRET, counter) == expected


def test_decode_secret_accepts_unpadded_base32():
    assert decode_secret("GEZDGNBVGY3TQOJQ") == b"1234567890"


def test_wrong_code_misses_drift_window():
    step = 1000
    code = wrong_code(RFC4226_SECRET, step)
    window = {hotp(RFC4226_SECRET, step + offset) for offset in (-1, 0, 1)}
    assert code not in window
    assert len(code) == 6


def test_ledger_hands_out_increasing_steps():
    ledger = StepLedger({"a": "GEZDGNBVGY3TQOJQ"}, last_used_step=-1)
    # Early in a step: c-1, c and c+1 are usable, in that order, then none.
    now = (current_step() * TIME_STEP) + 1.0
    steps = [ledger.next_step("a", now)]
    ledger.last["a"] = steps[-1]
    steps.append(ledger.next_step("a", now))
    ledger.last["a"] = steps[-1]
    steps.append(ledger.next_step("a", now))
    ledger.last["a"] = steps[-1]
    step = current_step(now)
    assert steps == [step - 1, step, step + 1]
    assert ledger.next_step("a", now) is None


def test_ledger_skips_previous_step_late_in_step():
    ledger = StepLedger({"a": "GEZDGNBVGY3TQOJQ"}, last_used_step=-1)
    now = (current_step() * TIME_STEP) + TIME_STEP - 2.0
    assert ledger.next_step("a", now) == current_step(now)


def test_plan_round_uses_each_factor_once():
    ledger = StepLedger({n: "GEZDGNBVGY3TQOJQ" for n in range(5)}, last_used_step=-1)
    plan = ledger.plan_round()
    assert sorted(factor for factor, _ in plan) == list(range(5))


def test_percentile_nearest_rank():
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([], 0.5) is None


def test_cpu_seconds_counts_new_and_reaped_processes():
    before = {1: ProcessTimes(1, 0, 100, "master"), 2: ProcessTimes(2, 1, 50, "w")}
    # Worker 2 exited and was reaped (its 60 ticks moved into the master's child
    # times); worker 3 started during the round.
    after = {1: ProcessTimes(1, 0, 100 + 60, "master"), 3: ProcessTimes(3, 1, 30, "w")}
    ticks = cpu_seconds(before, after) * os.sysconf("SC_CLK_TCK")
    assert round(ticks) == 60 + 30


def test_snapshot_includes_own_process():
    found = snapshot([os.getpid()])
    assert os.getpid() in found


def test_require_loopback_rejects_other_hosts():
    require_loopback("127.0.0.1")
    with pytest.raises(ValueError):
        require_loopback("10.0.0.1")


async def _serve(responses: list[bytes]):
    """Start a loopback server that returns ``responses`` in turn on each request."""
    queue = list(responses)

    async def handle(reader, writer):
        while queue:
            data = await reader.readuntil(b"\r\n\r\n")
            if not data:
                break
            writer.write(queue.pop(0))
            await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_connection_parses_length_and_chunked_bodies():
    async def scenario():
        server = await _serve(
            [
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                b"Set-Cookie: s=1; Path=/\r\n\r\nhello",
                b"HTTP/1.1 302 Found\r\nTransfer-Encoding: chunked\r\n"
                b"Location: /x\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            ]
        )
        port = server.sockets[0].getsockname()[1]
        connection = Connection("127.0.0.1", port)
        first = await connection.request("GET", "/")
        second = await connection.request("GET", "/")
        connection.close()
        server.close()
        return first, second

    first, second = asyncio.run(scenario())
    assert first.status == 200
    assert first.body == b"hello"
    assert first.cookies == ["s=1; Path=/"]
    assert second.status == 302
    assert second.body == b"abcde"
    assert second.headers["location"] == "/x"


def test_closed_loop_stops_at_total():
    async def scenario():
        calls = []

        def job_for_worker(number):
            async def job(index):
                calls.append(index)
                return True if index % 2 == 0 else "odd"

            return job

        return await closed_loop(job_for_worker, 10, 3, 5.0), calls

    result, calls = asyncio.run(scenario())
    assert sorted(calls) == list(range(10))
    assert result.ok == 5
    assert result.failed == 5
    assert result.errors == {"odd": 5}


def test_smtp_sink_records_token_mail():
    sink = SmtpSink()
    port = free_port_block(1)
    sink.start(port)
    try:
        message = EmailMessage()
        message["From"] = "gatehouse@example.com"
        message["To"] = "agent@example.com"
        message["Subject"] = "Your sign-in code"
        message.set_content("Hello,\n\n  482913\n\nThe code expires in 10 minutes.\n")
        started = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.send_message(message)
        mails = sink.wait_for_count("agent@example.com", 1, 10)
    finally:
        sink.stop()
    assert mails[0].plain_token() == "482913"
    assert mails[0].accepted_at >= started
    assert mails[0].content_type == "text/plain"


def test_quiet_gate_respects_round_and_run_limits():
    # A threshold of 0 is never met, so only the limits end each wait.
    gate = QuietGate(threshold=0.0, step=0.1, max_wait=0.3, budget=0.5)
    first, _ = gate.wait()
    second, _ = gate.wait()
    assert first == pytest.approx(0.3)
    assert second == pytest.approx(0.2)
    assert gate.waited == pytest.approx(0.5)


def test_quiet_gate_returns_at_once_when_quiet():
    gate = QuietGate(threshold=1.01, step=0.1, max_wait=3.0, budget=10.0)
    waited, share = gate.wait()
    assert waited == pytest.approx(0.1)
    assert 0.0 <= share <= 1.0
