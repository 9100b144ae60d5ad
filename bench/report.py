"""Render docs/benchmarks.md from the figures of one run (docs/benchmarks.json)."""

from __future__ import annotations

from pathlib import Path

PROFILE_NOTES = Path(__file__).resolve().parent / "profile_notes.md"

METHOD = """\
## How to reproduce

```
make bench                              # .venv/bin/python -m bench.run, 3 to 5 min
.venv/bin/python -m bench.run --quick   # smaller counts, to try the harness
.venv/bin/python -m bench.profile otp   # py-spy profile under load (or: login)
.venv/bin/pytest bench/tests -q         # unit tests of the harness itself
```

`bench.run --output DIR` writes the two files elsewhere, and `--workers` and
`--threads` change the gunicorn workers and threads of every service for an
experiment.

The first run installs privacyIDEA {pi_version} from PyPI into
`bench/.privacyidea-venv` (`bench/install_privacyidea.sh`, skipped when that venv
already contains the version). Every run then starts its own servers on free loopback
ports with a temporary data folder, its own Redis key prefix and its own RabbitMQ
names, and removes the Redis keys and RabbitMQ queues and exchanges at the end.
Traffic goes only to 127.0.0.1.

## Method

- **Load generator** (`bench/httpload.py`): one asyncio process writing
  pre-encoded HTTP/1.1 requests on keep-alive connections and parsing only the
  status, headers and body length. Closed-loop rounds (N workers, each sending its
  next request when the previous one returns) give the peak rate; open-loop rounds
  send at a fixed rate (half the median peak) and time each request from its
  scheduled start, so queueing shows in the latency. Its CPU is
  `resource.getrusage` user + system time, given as a share of the two cores.
- **Server CPU** (`bench/procstat.py`): `/proc/PID/stat` utime + stime (+ cutime +
  cstime for reaped children) of the stack launcher and every process under it
  (gunicorn masters and workers, the mailer), read before and after each round.
  The client side of Redis, RabbitMQ and SQLite inside our processes is
  included. The Redis and RabbitMQ servers' own CPU is shown apart (Redis per
  operation) and never added, because other programs on the machine use them too.
  "Machine busy" is the whole machine from `/proc/stat`, other users included.
- **Rounds**: every figure is the median over rounds of fixed size that stop by
  themselves (a deadline bounds each round as well), after one warm-up round that
  is not counted: {rounds} rounds for logins and mails, {verify_rounds} for the
  shorter verification rounds. Before each round the bench waits until the
  machine was under 25 % busy for 0.3 s, at most 3 s a round and 90 s a run
  (`QuietGate` in `bench/procstat.py`), so fewer rounds overlap other programs.
- **Accepted TOTP codes**: replay protection accepts a factor's code only for a
  time step later than the last one it accepted, and the drift window is one step
  either way. A fresh factor therefore yields three accepted codes (steps c-1, c,
  c+1, in that order; c-1 only while at least 10 s of the current step remain) and
  then one more per 30 s. The bench enrolls many factors through
  `POST /v1/enrollments/app` (ids from {pool_first} up; the OTP service keys
  factors by id and needs no identity agent), keeps the last step it spent per
  factor (`bench/totp_codes.py`), and plans each accepted round as one code per
  factor that still has a step, in shuffled order. When too few factors have a
  step left, it waits for the next step. Codes are computed by the bench's own
  RFC 6238 code, not the server's.
- **Rejected codes**: six-digit codes that match no step in the window, sent for
  the same factors. The server does the factor lookup, the decryption and the
  window's HMACs for them, but not the work after a match (the replay write and
  the recovery-code count), so they cost less than accepted codes.
- **Throttling**: the benchmark agents and factors are listed in
  `OTP_THROTTLE_EXEMPT_AGENTS`, which turns off the OTP service's failure limits
  for them (and only them); `OTP_RESEND_COOLDOWN=0` and `OTP_RESEND_HOURLY_CAP=1000`
  let the mail scenario send many token mails to a few agents. The "changed
  settings" row lists every variable the bench sets.
- **Logins**: {login_agents} agents made with `agentctl agent add` (with
  `GATEHOUSE_CHANGE_INITIAL_PASSWORD=off`), each with an app factor. One login is
  the login page, the password POST, the second-step page, the TOTP POST, the
  dashboard and the logout POST, each page checked by its `data-page` marker, with
  the CSRF token read from each form. Latency is the whole login. Three more
  agents with an email factor serve the gateway's slow-SMTP check below.
- **argon2id ceiling**: one `PasswordHasher.verify` at the identity defaults
  (m=19 MiB, t=2, p=1), in the bench process, median of many; the ceiling is one
  verification per core, two cores.
- **privacyIDEA**: {pi_users} users in a passwd-file resolver and realm, each with a
  TOTP token made by `bench/privacyidea_setup.py` (own SQLite, own `pi.cfg`, own
  encryption and audit keys, a local admin), served by gunicorn with the same
  workers and threads as one OTP replica, checked with `POST /validate/check`
  (user, realm, pass = code; no PIN). Its default SQL audit log stays on.
- **Token mail**: an aiosmtpd server in the bench process; latency runs from
  sending `POST /v1/challenges` to the server's accept of the mail's DATA. Each
  latency round sends its challenges one after another, each after the previous
  mail arrived. PGP keys (gpg, ed25519/cv25519) and S/MIME certificates (RSA-2048,
  self-signed) are made by the bench and imported with `agentctl pgp import` and
  `agentctl smime import`; the enrollment tokens are read from the decrypted
  mails. Throughput is a burst of plain token mails queued at once, counted until
  the last accept. The slow-SMTP checks delay every accept by 1 s and time the
  challenge request, and the gateway's password step of the email-factor agents
  (which queues their token mail), to show that neither waits for SMTP.
- **Scaling**: the stack runs {replicas} OTP replicas; the load generator spreads
  its connections round robin over the first 1, 2 or 3 of them (as the internal
  client does), with rejected codes so no time steps run out.
"""


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _ratio(numerator, denominator) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _capacity(cpu_ms_per_operation) -> float | None:
    """Return operations/s two cores could serve at that CPU cost, an estimate
    that ignores the Redis and RabbitMQ servers' CPU and all waiting."""
    return _ratio(2000.0, cpu_ms_per_operation)


def _met(value, goal: float, at_most: bool) -> str:
    if value is None:
        return "n/a"
    return "yes" if (value <= goal if at_most else value >= goal) else "**no**"


def headline_rows(data: dict) -> list[tuple[str, str, str, str]]:
    """Return (figure, median, goal, met) rows for the main table."""
    scenarios = data.get("scenarios", {})
    return (
        login_rows(scenarios)
        + verification_rows(scenarios)
        + mail_rows(scenarios)
        + scaling_rows(scenarios)
    )


def login_rows(scenarios: dict) -> list[tuple[str, str, str, str]]:
    rows = []
    argon2 = scenarios.get("argon2id", {})
    # CPU time, not wall time: other programs on the machine stretch the wall time.
    argon2_ms = argon2.get("median_cpu_ms") or argon2.get("median_ms")
    login = scenarios.get("login", {})
    if argon2_ms:
        rows.append(
            (
                "argon2id verification (m=19 MiB, t=2, p=1), in-process, CPU / wall",
                f"{_fmt(argon2_ms, 2)} / {_fmt(argon2.get('median_ms'), 2)} ms",
                "",
                "",
            )
        )
        rows.append(
            ("argon2id ceiling, 2 cores", f"{_fmt(2000 / argon2_ms)} logins/s", "", "")
        )
    if login:
        cpu = login.get("median_server_cpu_ms_per_op")
        ratio = _ratio(cpu, argon2_ms)
        rate = login.get("median_rate_per_second")
        rows += [
            ("Full logins through the gateway", f"{_fmt(rate)} /s", "", ""),
            ("Server CPU per login (all services)", f"{_fmt(cpu, 2)} ms", "", ""),
            (
                "Server CPU per login ÷ one argon2id verification",
                f"{_fmt(ratio, 2)}×",
                "≤ 1.4×",
                _met(ratio, 1.4, True),
            ),
            (
                "Logins/s ÷ argon2id ceiling",
                _fmt(_ratio(rate, 2000 / argon2_ms) if argon2_ms else None, 2),
                "",
                "",
            ),
            (
                "Login latency p50 / p99 (6 requests)",
                f"{_fmt(login.get('median_p50_ms'))} / "
                f"{_fmt(login.get('median_p99_ms'))} ms",
                "",
                "",
            ),
            (
                "Server CPU per login by service: gateway / identity / otp",
                f"{_fmt(login.get('median_gateway_cpu_ms_per_op'), 2)} / "
                f"{_fmt(login.get('median_identity_cpu_ms_per_op'), 2)} / "
                f"{_fmt(login.get('median_otp_cpu_ms_per_op'), 2)} ms",
                "",
                "",
            ),
            (
                "Redis server CPU per login (shared server, not in the figures above)",
                f"{_fmt(login.get('median_redis_cpu_ms_per_op'), 2)} ms",
                "",
                "",
            ),
            (
                "Estimate: logins/s if the servers had both cores "
                "(2,000 ms ÷ CPU per login)",
                f"{_fmt(_capacity(cpu))} /s",
                "≈ 80 /s",
                _met(_capacity(cpu), 80, False),
            ),
            (
                "Password step p50",
                f"{_fmt(login.get('median_password_step_p50_ms'))} ms",
                "",
                "",
            ),
        ]
    return rows


def verification_rows(scenarios: dict) -> list[tuple[str, str, str, str]]:
    rows = []
    otp = scenarios.get("otp", {})
    pi = scenarios.get("privacyidea", {})
    for kind in ("accepted", "rejected"):
        section = otp.get(kind, {})
        if not section:
            continue
        rate = section.get("median_rate_per_second")
        half = section.get("half_peak", {})
        rows += [
            (
                f"OTP verifications, {kind} codes, one replica",
                f"{_fmt(rate)} /s",
                "≥ 2,000 /s",
                _met(rate, 2000, False),
            ),
            (
                f"OTP server CPU per {kind} verification",
                f"{_fmt(section.get('median_server_cpu_ms_per_op'), 3)} ms",
                "",
                "",
            ),
            (
                f"OTP {kind} rounds where one gunicorn worker did ≥ 90 % of the "
                "work; rate and CPU per verification over the other rounds",
                f"{_fmt(section.get('lopsided_rounds'))} of "
                f"{len(section.get('rounds', []))}; "
                f"{_fmt(section.get('balanced_median_rate_per_second'))} /s, "
                f"{_fmt(section.get('balanced_median_server_cpu_ms_per_op'), 3)} ms",
                "",
                "",
            ),
            (
                f"Redis server CPU per {kind} verification (shared server, not "
                "in the figure above)",
                f"{_fmt(section.get('median_redis_cpu_ms_per_op'), 3)} ms",
                "",
                "",
            ),
            (
                f"Estimate: {kind} verifications/s if the OTP service had both "
                "cores (2,000 ms ÷ CPU per verification)",
                f"{_fmt(_capacity(section.get('median_server_cpu_ms_per_op')))} /s",
                "≥ 2,000 /s",
                _met(
                    _capacity(section.get("median_server_cpu_ms_per_op")), 2000, False
                ),
            ),
            (
                f"OTP {kind} latency p50 / p99 at half of peak "
                f"({_fmt(half.get('offered_rate'))} /s offered)",
                f"{_fmt(half.get('p50_ms'), 2)} / {_fmt(half.get('p99_ms'), 2)} ms",
                "",
                "",
            ),
        ]
        pi_section = pi.get(kind, {})
        if pi_section:
            pi_rate = pi_section.get("median_rate_per_second")
            pi_half = pi_section.get("half_peak", {})
            speedup = _ratio(rate, pi_rate)
            cpu_ratio = _ratio(
                pi_section.get("median_server_cpu_ms_per_op"),
                section.get("median_server_cpu_ms_per_op"),
            )
            rows += [
                (f"privacyIDEA {kind} /validate/check", f"{_fmt(pi_rate)} /s", "", ""),
                (
                    f"privacyIDEA server CPU per {kind} check",
                    f"{_fmt(pi_section.get('median_server_cpu_ms_per_op'), 2)} ms",
                    "",
                    "",
                ),
                (
                    f"privacyIDEA {kind} p50 / p99 at half of peak",
                    f"{_fmt(pi_half.get('p50_ms'), 2)} / "
                    f"{_fmt(pi_half.get('p99_ms'), 2)} ms",
                    "",
                    "",
                ),
                (
                    f"gatehouse ÷ privacyIDEA throughput, {kind}",
                    f"{_fmt(speedup)}×",
                    "≥ 40×",
                    _met(speedup, 40, False),
                ),
                (
                    f"privacyIDEA ÷ gatehouse server CPU per {kind} verification "
                    "(less sensitive to other programs than the throughput ratio)",
                    f"{_fmt(cpu_ratio)}×",
                    "≥ 40×",
                    _met(cpu_ratio, 40, False),
                ),
            ]
    return rows


def mail_rows(scenarios: dict) -> list[tuple[str, str, str, str]]:
    rows = []
    mail = scenarios.get("mail", {})
    for variant, goal in (("plain", 300), ("pgp", 500), ("smime", 500)):
        section = mail.get(variant)
        if not section:
            continue
        p95 = section.get("median_p95_ms")
        types = sorted(
            {kind for r in section.get("rounds", []) for kind in r["content_types"]}
        )
        rows += [
            (
                f"Token mail {variant} ({', '.join(types)}): request → SMTP accept "
                "p50 / p95",
                f"{_fmt(section.get('median_p50_ms'))} / {_fmt(p95)} ms",
                f"p95 < {goal} ms",
                _met(p95, goal, True),
            ),
            (
                f"Mailer CPU per {variant} mail",
                f"{_fmt(section.get('median_mailer_cpu_ms_per_mail'), 2)} ms",
                "",
                "",
            ),
        ]
    if mail.get("throughput"):
        burst = mail["throughput"]
        rows.append(
            (
                f"Mails/s one mailer sustains (plain burst of {burst.get('mails')})",
                f"{_fmt(burst.get('mails_per_second'))} /s",
                "",
                "",
            )
        )
    if mail.get("slow_smtp"):
        slow = mail["slow_smtp"]
        delay = slow.get("smtp_accept_delay_ms", 0)
        rows.append(
            (
                f"OTP challenge request while SMTP delays each accept "
                f"{_fmt(delay, 0)} ms (p50 / max)",
                f"{_fmt(slow.get('request_p50_ms'))} / "
                f"{_fmt(slow.get('request_max_ms'))} ms",
                "never waits for SMTP",
                "yes" if (slow.get("request_max_ms") or 0) < delay else "**no**",
            )
        )
    if mail.get("gateway_slow_smtp"):
        slow = mail["gateway_slow_smtp"]
        delay = slow.get("smtp_accept_delay_ms", 0)
        longest = slow.get("password_step_max_ms") or 0
        rows.append(
            (
                f"Gateway password step of an email-factor agent while SMTP delays "
                f"each accept {_fmt(delay, 0)} ms (p50 / max of "
                f"{slow.get('logins')})",
                f"{_fmt(slow.get('password_step_p50_ms'))} / {_fmt(longest)} ms",
                "never waits for SMTP",
                "yes" if longest < delay else "**no**",
            )
        )
    return rows


def scaling_rows(scenarios: dict) -> list[tuple[str, str, str, str]]:
    rows = []
    scaling = scenarios.get("otp_scaling", {})
    base = scaling.get("1", {}).get("median_rate_per_second")
    for replicas, section in sorted(scaling.items()):
        rate = section.get("median_rate_per_second")
        rows.append(
            (
                f"OTP rejected verifications, {replicas} replica(s)",
                f"{_fmt(rate)} /s ({_fmt(_ratio(rate, base), 2)}× one replica)",
                "",
                "",
            )
        )
    return rows


def load_generator_rows(data: dict) -> list[tuple[str, str, str, str]]:
    """Return (scenario, load generator, machine busy, other programs) CPU shares."""
    scenarios = data.get("scenarios", {})
    rows = []

    def share(section: dict, key: str) -> str:
        value = section.get(f"median_{key}")
        return "n/a" if value is None else f"{100 * value:.0f} %"

    def add(name: str, section: dict) -> None:
        if section and section.get("median_client_cpu_share") is not None:
            rows.append(
                (
                    name,
                    share(section, "client_cpu_share"),
                    share(section, "machine_busy_share"),
                    share(section, "other_cpu_share"),
                )
            )

    add("Logins", scenarios.get("login", {}))
    for kind in ("accepted", "rejected"):
        add(f"OTP {kind}", scenarios.get("otp", {}).get(kind, {}))
        add(f"privacyIDEA {kind}", scenarios.get("privacyidea", {}).get(kind, {}))
    for replicas, section in sorted(scenarios.get("otp_scaling", {}).items()):
        add(f"OTP scaling, {replicas} replica(s)", section)
    return rows


def write_markdown(data: dict, path: Path) -> None:
    settings = data.get("settings", {})
    machine = data.get("machine", {})
    versions = data.get("versions", {})
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`bench/run.py`); do not edit by hand. Raw figures,",
        "every round included, are in [benchmarks.json](benchmarks.json).",
        "",
        f"Run started {data.get('started_at')}, status **{data.get('status')}**, "
        f"total {_fmt(data.get('total_seconds'))} s (of which "
        f"{_fmt(data.get('quiet_wait_seconds'))} s waiting for a quiet machine), "
        f"mode {settings.get('mode')}.",
        "",
        "Figures are medians over the rounds of one run. The load generator shares the",
        "two cores with the servers, so server CPU per operation (from /proc) is given",
        "beside each wall-clock rate.",
        "",
        "## Results",
        "",
        "| figure | median | goal | met |",
        "| --- | --- | --- | --- |",
    ]

    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in headline_rows(data)]

    lines += [
        "",
        "## Load generator",
        "",
        "Shares of the two cores during the peak rounds: the load generator, the whole",
        "machine (100 % means both cores were saturated) and what neither our servers,",
        "the Redis and RabbitMQ servers nor the load generator used (other programs,",
        "such as other test runs on the same machine).",
        "",
        "| scenario | load generator | machine busy | other programs |",
        "| --- | --- | --- | --- |",
    ]

    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in load_generator_rows(data)]

    lines += [
        "",
        "## Machine, versions and settings",
        "",
        "| item | value |",
        "| --- | --- |",
        f"| CPU | {machine.get('cpu')}, {machine.get('cores')} cores |",
        f"| memory | {machine.get('memory_gib')} GiB |",
        f"| kernel | {machine.get('kernel')} |",
        f"| Python | {machine.get('python')} |",
    ]

    lines += [f"| {name} | {value} |" for name, value in versions.items()]

    environment = settings.get("environment", {})

    lines += [
        f"| services | gunicorn, {settings.get('service_workers')} workers × "
        f"{settings.get('service_threads')} threads (gthread) per service and per OTP "
        f"replica; {settings.get('otp_replicas')} OTP replicas |",
        f"| throttling | OTP failure limits off for the "
        f"{settings.get('throttle_exempt_agents')} benchmark agents "
        f"(`OTP_THROTTLE_EXEMPT_AGENTS`) |",
        f"| changed settings | "
        f"{', '.join(f'`{k}={v}`' for k, v in sorted(environment.items()))} |",
        f"| rounds | {settings.get('rounds')} per login and mail figure, "
        f"{settings.get('verify_rounds')} per verification figure; "
        f"{settings.get('login_agents')} login agents, "
        f"{settings.get('pool_factors')} TOTP factors, "
        f"{settings.get('pi_users')} privacyIDEA tokens |",
        f"| concurrency | logins {settings.get('login_concurrency')}, verifications "
        f"{settings.get('verify_concurrency')} connections |",
    ]

    if data.get("phase_seconds"):
        phases = ", ".join(f"{k} {v} s" for k, v in data["phase_seconds"].items())
        lines.append(f"| phases | {phases} |")
    if data.get("errors"):
        lines += ["", "## Errors", ""]
        lines += ["```", *[error for error in data["errors"]], "```"]
    if PROFILE_NOTES.exists():
        lines += ["", PROFILE_NOTES.read_text().strip()]

    lines += [
        "",
        METHOD.format(
            pi_version=versions.get("privacyidea", "3.14"),
            rounds=settings.get("rounds"),
            verify_rounds=settings.get("verify_rounds"),
            pool_first=1_000_001,
            login_agents=settings.get("login_agents"),
            pi_users=settings.get("pi_users"),
            replicas=settings.get("otp_replicas"),
        ).rstrip(),
        "",
    ]

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
