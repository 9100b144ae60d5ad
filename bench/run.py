"""Run every benchmark scenario once and write docs/benchmarks.{json,md}.

Usage: .venv/bin/python -m bench.run [--quick]

All servers run on loopback ports picked at start, with their own data folder,
Redis key prefix and RabbitMQ names, which are removed again at the end. Partial
figures are written to the JSON file after every scenario, so an interrupted run
still leaves what it measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from gatehouse.common.servicekeys import sign_request

from .httpload import Connection
from .login_bench import LoginBench
from .mail_bench import MailBench
from .otp_bench import (
    VerificationBench,
    enroll_app_factors,
    gatehouse_target,
    median_of,
    privacyidea_target,
)
from .procstat import QUIET_GATE, RoundMeter
from .report import write_markdown
from .servers import (
    CHECKOUT,
    PI_VERSION,
    VENV_PYTHON,
    GatehouseStack,
    PrivacyIdeaServer,
    free_port_block,
)
from .smtp_sink import SmtpSink
from .totp_codes import StepLedger

log = logging.getLogger("bench")

DOCS_DIR = CHECKOUT / "docs"

# Agent id ranges: identity numbers its agents from 1; the other factors exist
# only in the OTP service, which keys them by any integer id.
POOL_FIRST_ID = 1_000_001
MAIL_FIRST_ID = 3_000_001
GATEWAY_MAIL_AGENTS = 3

# Verification rounds are short (about a second), so there are more of them: the
# median then shrugs off the rounds that other programs on the machine disturbed.
FULL = {
    "rounds": 3,
    "verify_rounds": 5,
    "login_agents": 200,
    "logins_per_round": 120,
    "login_concurrency": 8,
    "pool_factors": 1200,
    "accepted_per_round": 600,
    "rejected_per_round": 1500,
    "scaling_per_round": 1500,
    "verify_concurrency": 16,
    "paced_seconds": 3.0,
    "pi_users": 300,
    "pi_accepted_per_round": 60,
    "pi_rejected_per_round": 80,
    "mail_agents": {"plain": 10, "pgp": 5, "smime": 5},
    "mails_per_round": 20,
    "mail_burst": 300,
    "service_workers": 2,
    "service_threads": 4,
    "otp_replicas": 3,
}
QUICK = {
    **FULL,
    "rounds": 2,
    "verify_rounds": 3,
    "login_agents": 60,
    "logins_per_round": 30,
    "pool_factors": 300,
    "accepted_per_round": 150,
    "rejected_per_round": 600,
    "scaling_per_round": 500,
    "paced_seconds": 1.5,
    "pi_users": 60,
    "pi_accepted_per_round": 40,
    "pi_rejected_per_round": 60,
    "mail_agents": {"plain": 4, "pgp": 2, "smime": 2},
    "mails_per_round": 6,
    "mail_burst": 60,
}


class Results:
    """The JSON document, rewritten after every change."""

    def __init__(self, path: Path, settings: dict) -> None:
        self.path = path
        self.data = {
            "status": "running",
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "settings": settings,
            "machine": machine_facts(),
            "versions": {},
            "scenarios": {},
            "errors": [],
        }
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(self.data, indent=2) + "\n")
        temporary.replace(self.path)

    def put(self, name: str, value) -> None:
        self.data["scenarios"][name] = value
        self.save()


def machine_facts() -> dict:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def tool_version(argv: list[str]) -> str:
    try:
        completed = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (completed.stdout or completed.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def versions() -> dict:
    from importlib.metadata import version

    revision = tool_version(
        ["git", "-C", str(CHECKOUT), "rev-parse", "--short", "HEAD"]
    )
    return {
        "gatehouse": version("gatehouse"),
        "gatehouse_commit": revision if "fatal" not in revision else "none yet",
        "privacyidea": PI_VERSION,
        "flask": version("flask"),
        "gunicorn": version("gunicorn"),
        "argon2_cffi": version("argon2-cffi"),
        "redis_server": tool_version(["redis-server", "--version"]),
        "rabbitmq": tool_version(["rabbitmqctl", "-q", "version"]),
        "gpg": tool_version(["gpg", "--version"]),
    }


def argon2_ceiling(samples: int = 40) -> dict:
    """Time one argon2id verification in-process at the identity defaults."""
    from argon2 import PasswordHasher
    from gatehouse.identity.config import (
        DEFAULT_ARGON2_MEMORY_KIB,
        DEFAULT_ARGON2_PARALLELISM,
        DEFAULT_ARGON2_TIME_COST,
    )

    hasher = PasswordHasher(
        time_cost=DEFAULT_ARGON2_TIME_COST,
        memory_cost=DEFAULT_ARGON2_MEMORY_KIB,
        parallelism=DEFAULT_ARGON2_PARALLELISM,
    )
    password = secrets.token_urlsafe(16)
    encoded = hasher.hash(password)
    wall, cpu = [], []
    for _ in range(samples):
        started, cpu_started = time.perf_counter(), time.process_time()
        hasher.verify(encoded, password)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    median_ms = statistics.median(wall) * 1000
    return {
        "memory_kib": DEFAULT_ARGON2_MEMORY_KIB,
        "time_cost": DEFAULT_ARGON2_TIME_COST,
        "parallelism": DEFAULT_ARGON2_PARALLELISM,
        "samples": samples,
        "median_ms": round(median_ms, 3),
        "median_cpu_ms": round(statistics.median(cpu) * 1000, 3),
        "verifications_per_second_per_core": round(1000 / median_ms, 1),
    }


def group_matchers(stack: GatehouseStack) -> dict:
    """Name each server process group by its command line."""
    groups = {
        "gateway": lambda command: "gatehouse.gateway.app" in command,
        "identity": lambda command: "gatehouse.identity.app" in command,
        "otp": lambda command: "gatehouse.otp.app" in command,
        "mailer": lambda command: "gatehouse.mailer" in command,
    }
    for index, port in enumerate(stack.otp_ports):
        groups[f"otp-{index + 1}"] = lambda command, port=port: (
            "gatehouse.otp.app" in command and f"127.0.0.1:{port}" in command
        )
    return groups


def run_agentctl_batch(
    stack: GatehouseStack, commands: list[list[str]], processes: int = 2
) -> None:
    """Run agentctl commands split over ``processes`` interpreters at once."""
    chunks = [commands[index::processes] for index in range(processes)]
    running = []
    for chunk in chunks:
        if not chunk:
            continue
        process = subprocess.Popen(
            [str(VENV_PYTHON), "-m", "bench.agentctl_batch"],
            env=stack.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=CHECKOUT,
        )
        running.append(process)
        process.stdin.write(json.dumps(chunk))
        process.stdin.close()
    for process in running:
        stdout = process.stdout.read()
        stderr = process.stderr.read()
        if process.wait(600) != 0:
            raise RuntimeError(
                f"agentctl batch failed: {stderr.strip()[-1500:]} "
                f"{stdout.strip()[-200:]}"
            )


async def map_agent_ids(
    stack: GatehouseStack, count: int, password: str
) -> dict[int, tuple[str, str]]:
    """Return {agent id: (login, password)} for the agents identity numbered 1..count.

    The agents were created by two processes at once, so ids and logins are not
    in the same order.
    """
    connection = Connection("127.0.0.1", stack.identity_port)
    agents = {}
    for agent_id in range(1, count + 1):
        path = f"/v1/agents/{agent_id}"
        headers = {
            "Authorization": sign_request(stack.signing_key, "identity", "GET", path)
        }
        response = await connection.request("GET", path, headers)
        body = json.loads(response.body or b"{}")
        if response.status != 200:
            raise RuntimeError(f"agent {agent_id}: {response.status} {body}")
        agents[agent_id] = (body.get("agent", body)["login"], password)
    connection.close()
    return agents


def clean_redis(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(
        os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    batch = []
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            client.delete(*batch)
            batch = []
    if batch:
        client.delete(*batch)


RECORDED_VARIABLE_PREFIXES = (
    "OTP_RESEND",
    "GATEHOUSE_CHANGE",
    "GUNICORN",
    "OTP_WORKERS",
    "GATEWAY_WORKERS",
    "IDENTITY_WORKERS",
    "OTP_REPLICAS",
    "GATEHOUSE_LOG_FORMAT",
    "GATEHOUSE_ENV",
)


def plan_agent_ids(config: dict) -> tuple[list[int], list[int], dict]:
    """Return the identity agent ids, the TOTP pool ids and the mail agents.

    Identity numbers agents from 1: the TOTP login agents and a few email-factor
    agents for the gateway's slow-SMTP check, in whatever order they were made.
    """
    identity_ids = list(range(1, config["login_agents"] + GATEWAY_MAIL_AGENTS + 1))
    pool_ids = list(range(POOL_FIRST_ID, POOL_FIRST_ID + config["pool_factors"]))
    mail_agents: dict[str, list[tuple[int, str]]] = {}
    next_mail_id = MAIL_FIRST_ID
    for variant, count in config["mail_agents"].items():
        mail_agents[variant] = []
        for index in range(count):
            address = f"bench-{variant}-{index}@example.com"
            mail_agents[variant].append((next_mail_id, address))
            next_mail_id += 1
    return identity_ids, pool_ids, mail_agents


def build_stack(
    config: dict, work_dir: Path, smtp_port: int, exempt: list[int]
) -> GatehouseStack:
    threads = str(config["service_threads"])
    workers = str(config["service_workers"])
    return GatehouseStack(
        work_dir,
        config["otp_replicas"],
        {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp_port),
            "GATEHOUSE_CHANGE_INITIAL_PASSWORD": "off",
            "OTP_THROTTLE_EXEMPT_AGENTS": ",".join(str(agent) for agent in exempt),
            "OTP_RESEND_COOLDOWN": "0",
            "OTP_RESEND_HOURLY_CAP": "1000",
            "GUNICORN_THREADS": threads,
            "GATEWAY_WORKERS": workers,
            "IDENTITY_WORKERS": workers,
            "OTP_WORKERS": workers,
            "GATEHOUSE_LOG_FORMAT": "json",
        },
    )


def agent_add_commands(config: dict, password: str) -> list[list[str]]:
    """Return the agentctl commands for the login agents and the mail agents."""
    commands = [
        [
            "agent",
            "add",
            f"bench{number:05d}",
            "--email",
            f"bench{number:05d}@example.com",
            "--first-name",
            "Bench",
            "--last-name",
            f"Agent{number}",
            "--password",
            password,
        ]
        for number in range(1, config["login_agents"] + 1)
    ]
    commands += [
        [
            "agent",
            "add",
            f"mailgw{number}",
            "--email",
            f"bench-gateway-{number}@example.com",
            "--first-name",
            "Bench",
            "--last-name",
            "Mail",
            "--password",
            password,
        ]
        for number in range(GATEWAY_MAIL_AGENTS)
    ]
    return commands


async def run_all(config: dict, results: Results, work_dir: Path) -> None:
    phase_started = time.perf_counter()
    timings = results.data.setdefault("phase_seconds", {})

    def phase(name: str) -> None:
        nonlocal phase_started
        now = time.perf_counter()
        timings[name] = round(now - phase_started, 1)
        phase_started = now
        results.save()
        print(f"bench: {name} done in {timings[name]} s", flush=True)

    results.data["versions"] = versions()

    # privacyIDEA first: its install and set-up run while gatehouse is prepared.
    pi = PrivacyIdeaServer(
        work_dir,
        config["pi_users"],
        config["service_workers"],
        config["service_threads"],
    )
    pi.install()
    pi.begin_setup()
    phase("privacyidea_install")

    sink = SmtpSink()
    sink.start(free_port_block(1))
    try:
        await run_gatehouse(config, results, work_dir, sink, pi, phase)
        phase("gatehouse_stopped")
        await run_privacyidea(config, results, pi)
        phase("privacyidea")
    finally:
        sink.stop()
        if pi.setup_process is not None and pi.setup_process.poll() is None:
            pi.setup_process.kill()
            pi.setup_process.wait()


async def run_gatehouse(
    config: dict,
    results: Results,
    work_dir: Path,
    sink: SmtpSink,
    pi: PrivacyIdeaServer,
    phase,
) -> None:
    """Start the gatehouse stack, run its scenarios, stop it and clean up."""
    identity_ids, pool_ids, mail_agents = plan_agent_ids(config)
    exempt = (
        identity_ids
        + pool_ids
        + [agent for agents in mail_agents.values() for agent, _ in agents]
    )
    stack = build_stack(config, work_dir, sink.port, exempt)
    results.data["settings"]["environment"] = {
        key: value
        for key, value in stack.env.items()
        if key.startswith(RECORDED_VARIABLE_PREFIXES)
    }
    results.data["settings"]["throttle_exempt_agents"] = len(exempt)

    try:
        stack.migrate()
        password = f"Bench-{secrets.token_urlsafe(12)}"
        run_agentctl_batch(stack, agent_add_commands(config, password))
        phase("agents_created")

        stack.start()
        phase("stack_started")
        meter = RoundMeter([stack.process.pid], group_matchers(stack))
        signing_key = stack.signing_key
        identity_agents = await map_agent_ids(stack, len(identity_ids), password)
        agents = {
            agent_id: credentials
            for agent_id, credentials in identity_agents.items()
            if credentials[0].startswith("bench")
        }
        login_ids = list(agents)
        mail_agents["gateway"] = [
            (agent_id, f"bench-gateway-{login.removeprefix('mailgw')}@example.com")
            for agent_id, (login, _) in identity_agents.items()
            if login.startswith("mailgw")
        ]

        # Nothing else of ours may use the CPU while gatehouse is measured.
        pi.finish_setup()
        phase("privacyidea_setup")
        results.put("argon2id", argon2_ceiling())
        phase("argon2")

        login_secrets, login_step, _ = await enroll_app_factors(
            stack.otp_port, signing_key, login_ids
        )
        pool_secrets, pool_step, pool_seconds = await enroll_app_factors(
            stack.otp_port, signing_key, pool_ids
        )
        results.data["settings"]["pool_enrollment_per_second"] = round(
            len(pool_ids) / pool_seconds, 1
        )
        phase("totp_enrolled")

        login_bench = LoginBench(
            stack.gateway_port,
            agents,
            StepLedger(login_secrets, login_step),
            meter,
            config["login_concurrency"],
        )
        results.put(
            "login", await login_bench.run(config["rounds"], config["logins_per_round"])
        )
        phase("login")

        pool_ledger = StepLedger(pool_secrets, pool_step)
        # Scaling uses rejected codes only, and gives the accepted rounds below time
        # for every factor to have three unspent steps again.
        scaling = {}
        for replicas in range(1, len(stack.otp_ports) + 1):
            bench = VerificationBench(
                gatehouse_target(stack.otp_ports[:replicas], signing_key),
                pool_ledger,
                meter,
                "otp",
                config["verify_concurrency"],
            )
            await bench.peak_round(bench.rejected_plan(300), False)
            rounds = [
                await bench.peak_round(
                    bench.rejected_plan(config["scaling_per_round"]), False
                )
                for _ in range(config["verify_rounds"])
            ]
            scaling[str(replicas)] = {
                "rounds": rounds,
                "median_rate_per_second": median_of(rounds, "rate_per_second"),
                "median_server_cpu_ms_per_op": median_of(
                    rounds, "server_cpu_ms_per_op"
                ),
                "median_client_cpu_share": median_of(rounds, "client_cpu_share"),
                "median_machine_busy_share": median_of(rounds, "machine_busy_share"),
                "median_other_cpu_share": median_of(rounds, "other_cpu_share"),
            }
            results.put("otp_scaling", scaling)
        phase("otp_scaling")

        otp_bench = VerificationBench(
            gatehouse_target(stack.otp_ports[:1], signing_key),
            pool_ledger,
            meter,
            "otp-1",
            config["verify_concurrency"],
        )
        results.put(
            "otp",
            await otp_bench.run(
                config["verify_rounds"],
                config["accepted_per_round"],
                config["rejected_per_round"],
                config["paced_seconds"],
            ),
        )
        phase("otp")

        mail = MailBench(stack.otp_port, signing_key, sink, meter, work_dir)
        commands = mail.prepare_keys(mail_agents)
        run_agentctl_batch(stack, commands, processes=1)
        await mail.enroll()
        phase("mail_setup")
        mail_figures = await mail.run(
            config["rounds"], config["mails_per_round"], config["mail_burst"]
        )
        mail_figures["gateway_slow_smtp"] = await mail.gateway_slow_smtp_round(
            stack.gateway_port, identity_agents, 1.0
        )
        results.put("mail", mail_figures)
        phase("mail")
    finally:
        stack.stop()
        try:
            stack.delete_amqp_names()
            clean_redis(stack.env["GATEHOUSE_REDIS_PREFIX"])
        except Exception as error:  # noqa: BLE001 - clean-up is best effort
            results.data["errors"].append(f"clean-up: {error}")


async def run_privacyidea(
    config: dict, results: Results, pi: PrivacyIdeaServer
) -> None:
    """Serve privacyIDEA and run the same verification rounds against it."""
    try:
        pi.finish_setup()
        pi.start()
        pi_meter = RoundMeter([pi.process.pid], {"privacyidea": lambda command: True})
        pi_tokens = pi.tokens
        # Set-up spent no step; the ledger starts before the current window.
        pi_ledger = StepLedger(pi_tokens, -1)
        pi_bench = VerificationBench(
            privacyidea_target(pi.port, "bench"),
            pi_ledger,
            pi_meter,
            "privacyidea",
            config["verify_concurrency"],
        )
        results.put(
            "privacyidea",
            await pi_bench.run(
                config["verify_rounds"],
                config["pi_accepted_per_round"],
                config["pi_rejected_per_round"],
                config["paced_seconds"],
            ),
        )
    finally:
        pi.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller counts, for trying the harness (about 2 min)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary data folder for inspection",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="gunicorn workers per service and OTP replica (default 2)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="threads per gunicorn worker; 1 means sync workers (default 4)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DOCS_DIR,
        help="folder for benchmarks.json and benchmarks.md (default docs/)",
    )
    arguments = parser.parse_args(argv)
    json_path = arguments.output / "benchmarks.json"
    markdown_path = arguments.output / "benchmarks.md"
    config = dict(QUICK if arguments.quick else FULL)
    if arguments.workers:
        config["service_workers"] = arguments.workers
    if arguments.threads:
        config["service_threads"] = arguments.threads

    started = time.perf_counter()
    results = Results(
        json_path, {"mode": "quick" if arguments.quick else "full", **config}
    )
    work_dir = Path(tempfile.mkdtemp(prefix="gatehouse-bench-"))
    status = 0
    try:
        asyncio.run(run_all(config, results, work_dir))
        results.data["status"] = "complete"
    except Exception as error:  # noqa: BLE001 - record it, keep the partial figures
        results.data["status"] = "failed"
        results.data["errors"].append(
            "".join(traceback.format_exception(error)).strip()[-3000:]
        )
        print(f"bench: failed: {error}", file=sys.stderr)
        status = 1
    finally:
        results.data["total_seconds"] = round(time.perf_counter() - started, 1)
        results.data["quiet_wait_seconds"] = round(QUIET_GATE.waited, 1)
        results.save()
        write_markdown(results.data, markdown_path)
        if not arguments.keep:
            shutil.rmtree(work_dir, ignore_errors=True)
        else:
            print(f"bench: data kept in {work_dir}")
    print(
        f"bench: {results.data['status']} in {results.data['total_seconds']} s; "
        f"wrote {json_path} and {markdown_path}"
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
