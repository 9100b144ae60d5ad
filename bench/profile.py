"""Profile the servers under benchmark load with py-spy, and list the hot spots.

Usage: .venv/bin/python -m bench.profile {otp,login} [--seconds N]

Starts a stack with one OTP replica, enrolls factors (and agents for ``login``),
then samples the serving processes with ``py-spy record --subprocesses`` while the
load generator keeps them busy. Only samples where a thread held the GIL count
(``--gil``, so Python running on a CPU). It prints the functions with the largest
share of those samples, inclusive (the function or anything it calls) and
exclusive (the function itself), and keeps the raw collapsed stacks in the data folder.
py-spy (in the ``bench`` extra) needs permission to read other processes, which
root has.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from .httpload import closed_loop
from .login_bench import LoginBench
from .otp_bench import VerificationBench, _jobs, enroll_app_factors, gatehouse_target
from .procstat import RoundMeter
from .run import POOL_FIRST_ID, group_matchers, map_agent_ids, run_agentctl_batch
from .servers import CHECKOUT, GatehouseStack, free_port_block
from .smtp_sink import SmtpSink
from .totp_codes import StepLedger

PY_SPY = CHECKOUT / ".venv" / "bin" / "py-spy"


def summarize_collapsed(path: Path, top: int = 25) -> str:
    """Return a table of the top functions by inclusive and exclusive samples."""
    inclusive: Counter = Counter()
    exclusive: Counter = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        exclusive[frames[-1]] += count
    lines = [f"{total} samples", "", "inclusive share:"]
    lines += [
        f"  {100 * n / total:5.1f} %  {frame}"
        for frame, n in inclusive.most_common(top)
    ]
    lines += ["", "exclusive share:"]
    lines += [
        f"  {100 * n / total:5.1f} %  {frame}"
        for frame, n in exclusive.most_common(top)
    ]
    return "\n".join(lines)


def group_pid(stack: GatehouseStack, module: str) -> int:
    """Return the pid of the gunicorn master whose command line names ``module``."""
    from .procstat import snapshot

    for pid, times in snapshot([stack.process.pid]).items():
        if module in times.command and times.ppid == stack.process.pid:
            return pid
    raise RuntimeError(f"no process runs {module}")


async def load_otp(stack: GatehouseStack, seconds: float, ledger) -> None:
    signing_key = stack.signing_key
    meter = RoundMeter([stack.process.pid], group_matchers(stack))
    bench = VerificationBench(
        gatehouse_target(stack.otp_ports[:1], signing_key), ledger, meter, "otp", 16
    )
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        accepted = await bench.accepted_plan(1000)
        await closed_loop(_jobs(bench.target, accepted, True), len(accepted), 16, 30)
        rejected = bench.rejected_plan(1000)
        await closed_loop(_jobs(bench.target, rejected, False), len(rejected), 16, 30)


async def load_login(stack: GatehouseStack, seconds: float, agents, ledger) -> None:
    meter = RoundMeter([stack.process.pid], group_matchers(stack))
    bench = LoginBench(stack.gateway_port, agents, ledger, meter, 8)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await bench.round(40)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.profile", description=__doc__.splitlines()[0]
    )
    parser.add_argument("target", choices=["otp", "login"])
    parser.add_argument(
        "--seconds",
        type=float,
        default=15.0,
        help="how long to sample, in seconds (default 15)",
    )
    arguments = parser.parse_args(argv)

    work_dir = Path(tempfile.mkdtemp(prefix="gatehouse-profile-"))
    sink = SmtpSink()
    smtp_port = free_port_block(1)
    sink.start(smtp_port)
    count = 120 if arguments.target == "login" else 0
    exempt = list(range(1, count + 1)) + list(
        range(POOL_FIRST_ID, POOL_FIRST_ID + 1500)
    )
    stack = GatehouseStack(
        work_dir,
        1,
        {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp_port),
            "GATEHOUSE_CHANGE_INITIAL_PASSWORD": "off",
            "OTP_THROTTLE_EXEMPT_AGENTS": ",".join(map(str, exempt)),
            "GATEHOUSE_LOG_FORMAT": "json",
        },
    )
    recorders = []
    try:
        stack.migrate()
        password = f"Bench-{secrets.token_urlsafe(12)}"
        if count:
            run_agentctl_batch(
                stack,
                [
                    [
                        "agent",
                        "add",
                        f"bench{n:05d}",
                        "--email",
                        f"bench{n:05d}@example.com",
                        "--first-name",
                        "Bench",
                        "--last-name",
                        "Agent",
                        "--password",
                        password,
                    ]
                    for n in range(1, count + 1)
                ],
            )
        stack.start()
        modules = (
            ["gatehouse.otp.app"]
            if arguments.target == "otp"
            else [
                "gatehouse.gateway.app",
                "gatehouse.identity.app",
                "gatehouse.otp.app",
            ]
        )

        async def drive() -> None:
            agents = ledger = None
            if not count:
                ids = list(range(POOL_FIRST_ID, POOL_FIRST_ID + 1500))
                pool, step, _ = await enroll_app_factors(
                    stack.otp_port, stack.signing_key, ids
                )
                ledger = StepLedger(pool, step)
            if count:
                agents = await map_agent_ids(stack, count, password)
                login_secrets, step, _ = await enroll_app_factors(
                    stack.otp_port, stack.signing_key, list(agents)
                )
                ledger = StepLedger(login_secrets, step)
            for module in modules:
                output = work_dir / f"{module}.collapsed"
                recorders.append(
                    (
                        module,
                        output,
                        subprocess.Popen(
                            [
                                str(PY_SPY),
                                "record",
                                "--subprocesses",
                                "--format",
                                "raw",
                                "--rate",
                                "200",
                                "--gil",
                                "--duration",
                                str(int(arguments.seconds)),
                                "--output",
                                str(output),
                                "--pid",
                                str(group_pid(stack, module)),
                            ],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        ),
                    )
                )
            if arguments.target == "otp":
                await load_otp(stack, arguments.seconds + 2, ledger)
            else:
                await load_login(stack, arguments.seconds + 2, agents, ledger)

        asyncio.run(drive())
        for module, output, recorder in recorders:
            recorder.wait(60)
            print(f"== {module}")
            print(summarize_collapsed(output))
    finally:
        stack.stop()
        stack.delete_amqp_names()
        from .run import clean_redis

        clean_redis(stack.env["GATEHOUSE_REDIS_PREFIX"])
        sink.stop()
        print(f"raw stacks kept in {work_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
