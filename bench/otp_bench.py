"""OTP verification throughput and latency: gatehouse's internal API and privacyIDEA.

Both servers get the same load generator, the same rounds and the same TOTP step
bookkeeping (see ``totp_codes``). Accepted codes are planned before a round from
factors that still have an unspent step. Rejected codes are six-digit codes outside
the drift window, so the server does the same lookups and HMACs for them.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from gatehouse.common.servicekeys import SigningKey, sign_request

from .httpload import (
    Connection,
    RoundResult,
    closed_loop,
    encode_request,
    form_body,
    open_loop,
    percentile,
)
from .procstat import RoundMeter
from .totp_codes import (
    StepLedger,
    current_step,
    decode_secret,
    hotp,
    seconds_left_in_step,
    wrong_code,
)

HOST = "127.0.0.1"
CLIENT_IP = "127.0.0.1"


async def post_json(
    connection: Connection, path: str, signing_key: SigningKey, payload: dict
) -> tuple[int, dict]:
    body = json.dumps(payload).encode()
    response = await connection.request(
        "POST",
        path,
        {
            "Authorization": sign_request(signing_key, "otp", "POST", path, body),
            "Content-Type": "application/json",
        },
        body,
    )
    try:
        data = json.loads(response.body or b"{}")
    except ValueError:
        data = {}
    return response.status, data


@dataclass
class Target:
    """A verification endpoint: request encoder and accepted/rejected checks."""

    name: str
    ports: list[int]
    encode: Callable[[object, str], bytes]  # (factor, code) -> request bytes
    accepted: Callable[[int, bytes], bool]
    rejected: Callable[[int, bytes], bool]


def gatehouse_target(ports: list[int], signing_key: SigningKey) -> Target:
    host_header = f"{HOST}:{ports[0]}"

    def encode(agent_id, code):
        body = json.dumps(
            {"agent_id": agent_id, "token": code, "client_ip": CLIENT_IP}
        ).encode()
        # NOTE: the plans encode a round's requests before sending them, so a
        # round must finish within the 30 s clock-skew window of the credential.
        headers = {
            "Authorization": sign_request(
                signing_key, "otp", "POST", "/v1/verifications", body
            ),
            "Content-Type": "application/json",
        }
        return encode_request("POST", "/v1/verifications", host_header, headers, body)

    return Target(
        "gatehouse",
        ports,
        encode,
        accepted=lambda status, body: status == 200,
        rejected=lambda status, body: status == 400 and b"invalid_token" in body,
    )


def privacyidea_target(port: int, realm: str) -> Target:
    host_header = f"{HOST}:{port}"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}

    def encode(login, code):
        body = form_body({"user": login, "realm": realm, "pass": code})
        return encode_request("POST", "/validate/check", host_header, headers, body)

    return Target(
        "privacyidea",
        [port],
        encode,
        accepted=lambda status, body: status == 200 and b'"value": true' in body,
        rejected=lambda status, body: status == 200 and b'"value": false' in body,
    )


def _jobs(target: Target, requests: list[bytes], expect_accept: bool):
    judge = target.accepted if expect_accept else target.rejected

    def job_for_worker(number: int):
        # Worker n talks to replica n mod k: the same round robin the gateway uses.
        connection = Connection(HOST, target.ports[number % len(target.ports)])

        async def job(index: int):
            response = await connection.send(requests[index])
            if judge(response.status, response.body):
                return True
            return f"status {response.status}: {response.body[:80]!r}"

        return job

    return job_for_worker


def busiest_worker_share(meter_figures: dict, cpu_group: str | None) -> float | None:
    """Return the largest share of the group's CPU that one process used.

    gunicorn's gthread worker keeps accepting keep-alive connections up to
    ``--worker-connections``, so one worker can end up with all of a round's
    connections while the other idles. A share near 1.0 shows such a round.
    """
    if not cpu_group:
        return None
    shares = [
        seconds
        for name, seconds in meter_figures["server_cpu_by_process"].items()
        if name.split(" ", 1)[1] == cpu_group
    ]
    total = sum(shares)
    return round(max(shares) / total, 3) if total > 0 else None


def summarize(result: RoundResult, meter_figures: dict, cpu_group: str | None) -> dict:
    """Turn one round's raw result into the figures the report quotes."""
    operations = max(result.ok, 1)
    server_cpu = (
        meter_figures["server_cpu_by_group"][cpu_group]
        if cpu_group
        else meter_figures["server_cpu_seconds"]
    )
    latencies = result.latencies
    return {
        "busiest_worker_share": busiest_worker_share(meter_figures, cpu_group),
        "operations": result.requests,
        "ok": result.ok,
        "failed": result.failed,
        "errors": dict(list(result.errors.items())[:5]),
        "wall_seconds": round(result.wall_seconds, 4),
        "rate_per_second": round(result.ok / result.wall_seconds, 2)
        if result.wall_seconds
        else None,
        "server_cpu_seconds": round(server_cpu, 3),
        "server_cpu_all_seconds": round(meter_figures["server_cpu_seconds"], 3),
        "server_cpu_by_process": meter_figures["server_cpu_by_process"],
        "server_cpu_by_group": {
            k: round(v, 3) for k, v in meter_figures["server_cpu_by_group"].items()
        },
        "server_cpu_ms_per_op": round(1000 * server_cpu / operations, 3),
        "client_cpu_seconds": round(result.client_cpu_seconds, 3),
        # Share of the machine's two cores the load generator used during the round.
        "client_cpu_share": round(
            result.client_cpu_seconds / result.wall_seconds / 2, 3
        )
        if result.wall_seconds
        else None,
        "machine_busy_share": round(meter_figures["machine_busy_share"] or 0, 3),
        "quiet_wait_seconds": round(meter_figures["quiet_wait_seconds"], 1),
        "busy_share_before_round": meter_figures["busy_share_before_round"],
        "redis_cpu_ms_per_op": round(
            1000
            * meter_figures["shared_server_cpu_seconds"].get("redis-server", 0.0)
            / operations,
            3,
        ),
        # Busy CPU that neither our servers, the shared Redis and RabbitMQ servers
        # nor the load generator used: other programs on the machine.
        "other_cpu_share": round(
            max(
                0.0,
                meter_figures["machine_busy_seconds"]
                - meter_figures["server_cpu_seconds"]
                - sum(meter_figures["shared_server_cpu_seconds"].values())
                - result.client_cpu_seconds,
            )
            / result.wall_seconds
            / 2,
            3,
        )
        if result.wall_seconds
        else None,
        "p50_ms": _ms(percentile(latencies, 0.50)),
        "p95_ms": _ms(percentile(latencies, 0.95)),
        "p99_ms": _ms(percentile(latencies, 0.99)),
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


def median_of(rounds: list[dict], key: str) -> float | None:
    values = [r[key] for r in rounds if r.get(key) is not None]
    return round(statistics.median(values), 3) if values else None


# A round counts as lopsided when one worker did at least this share of the work.
LOPSIDED_SHARE = 0.9


def add_balance_figures(section: dict) -> None:
    """Count lopsided rounds and give the medians over the balanced ones."""
    rounds = section["rounds"]
    shares = [r.get("busiest_worker_share") for r in rounds]
    if any(share is None for share in shares):
        return
    balanced = [r for r in rounds if r["busiest_worker_share"] < LOPSIDED_SHARE]
    section["lopsided_rounds"] = len(rounds) - len(balanced)
    section["balanced_median_rate_per_second"] = median_of(balanced, "rate_per_second")
    section["balanced_median_server_cpu_ms_per_op"] = median_of(
        balanced, "server_cpu_ms_per_op"
    )


class VerificationBench:
    """Rounds of accepted and rejected verifications against one target."""

    def __init__(
        self,
        target: Target,
        ledger: StepLedger,
        meter: RoundMeter,
        cpu_group: str | None,
        concurrency: int,
    ) -> None:
        self.target = target
        self.ledger = ledger
        self.meter = meter
        self.cpu_group = cpu_group
        self.concurrency = concurrency

    async def _wait_for_steps(self, wanted: int) -> None:
        """Sleep into the next time step when too few factors have a step left."""
        if self.ledger.usable_now() >= wanted:
            return
        await asyncio.sleep(seconds_left_in_step() + 0.2)

    async def accepted_plan(self, count: int) -> list[bytes]:
        await self._wait_for_steps(count)
        plan = self.ledger.plan_round(limit=count)
        random.shuffle(plan)
        return [self.target.encode(factor, code) for factor, code in plan]

    def rejected_plan(self, count: int) -> list[bytes]:
        factors = list(self.ledger.keys)
        step = current_step()
        wrong = {
            factor: wrong_code(self.ledger.keys[factor], step) for factor in factors
        }
        return [
            self.target.encode(
                factors[i % len(factors)], wrong[factors[i % len(factors)]]
            )
            for i in range(count)
        ]

    async def peak_round(
        self, requests: list[bytes], accepted: bool, deadline: float = 60
    ) -> dict:
        self.meter.start()
        result = await closed_loop(
            _jobs(self.target, requests, accepted),
            len(requests),
            self.concurrency,
            deadline,
        )
        return summarize(result, self.meter.stop(), self.cpu_group)

    async def paced_round(
        self, requests: list[bytes], accepted: bool, rate: float, deadline: float = 60
    ) -> dict:
        self.meter.start()
        result = await open_loop(
            _jobs(self.target, requests, accepted), len(requests), rate, 64, deadline
        )
        figures = summarize(result, self.meter.stop(), self.cpu_group)
        figures["offered_rate"] = round(rate, 1)
        return figures

    async def run(
        self,
        rounds: int,
        accepted_count: int,
        rejected_count: int,
        paced_seconds: float,
    ) -> dict:
        """Peak rounds of each kind, then one paced round of each at half the peak."""
        out: dict = {"accepted": {"rounds": []}, "rejected": {"rounds": []}}
        # One short warm-up round so lazily opened connections and caches settle.
        await self.peak_round(self.rejected_plan(max(20, rejected_count // 10)), False)
        for _ in range(rounds):
            out["rejected"]["rounds"].append(
                await self.peak_round(self.rejected_plan(rejected_count), False)
            )
            out["accepted"]["rounds"].append(
                await self.peak_round(await self.accepted_plan(accepted_count), True)
            )
        for kind in ("accepted", "rejected"):
            section = out[kind]
            for key in (
                "rate_per_second",
                "server_cpu_ms_per_op",
                "p50_ms",
                "p99_ms",
                "client_cpu_share",
                "machine_busy_share",
                "other_cpu_share",
                "redis_cpu_ms_per_op",
            ):
                section[f"median_{key}"] = median_of(section["rounds"], key)
            add_balance_figures(section)
            rate = section["median_rate_per_second"] or 1.0
            count = max(20, int(rate / 2 * paced_seconds))
            if kind == "accepted":
                requests = await self.accepted_plan(count)
            else:
                requests = self.rejected_plan(count)
            section["half_peak"] = await self.paced_round(
                requests, kind == "accepted", rate / 2
            )
        return out


async def enroll_app_factors(
    port: int, signing_key: SigningKey, agent_ids: list[int], concurrency: int = 16
) -> tuple[dict[int, str], int, float]:
    """Enroll an app factor per agent id.

    Return the secrets, the latest time step spent on a confirmation and the
    seconds the enrollments took.
    """
    secrets: dict[int, str] = {}
    steps: list[int] = []
    failures: list[str] = []

    def job_for_worker(number: int):
        connection = Connection(HOST, port)

        async def job(index: int):
            agent_id = agent_ids[index]
            status, body = await post_json(
                connection,
                "/v1/enrollments/app",
                signing_key,
                {"agent_id": agent_id, "account_name": f"bench{agent_id}"},
            )
            if status != 200:
                failures.append(f"enroll {agent_id}: {status} {body}")
                return f"enroll {status}"
            secret = body["secret"]
            step = current_step()
            code = hotp(decode_secret(secret), step)
            status, body = await post_json(
                connection,
                "/v1/enrollments/app/confirm",
                signing_key,
                {"agent_id": agent_id, "token": code, "client_ip": CLIENT_IP},
            )
            if status != 200:
                failures.append(f"confirm {agent_id}: {status} {body}")
                return f"confirm {status}"
            secrets[agent_id] = secret
            steps.append(step)
            return True

        return job

    started = time.perf_counter()
    result = await closed_loop(job_for_worker, len(agent_ids), concurrency, 300)
    if result.failed:
        raise RuntimeError(f"{result.failed} enrollments failed, e.g. {failures[:3]}")
    elapsed = time.perf_counter() - started
    return secrets, max(steps), elapsed
