"""Full browser logins through the gateway, the way a person signs in.

One login is six requests on one keep-alive connection with its own cookie jar:
the login page, the password step, the second-step page, the TOTP step, the
dashboard and the logout. Each page is checked by its ``data-page`` marker and
each form's CSRF token is read from the page before it is posted.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time

from .httpload import Connection, closed_loop, form_body, percentile
from .otp_bench import _ms, summarize
from .procstat import RoundMeter
from .totp_codes import StepLedger, seconds_left_in_step

HOST = "127.0.0.1"
CSRF_INPUT = re.compile(rb'<input[^>]*name="csrf_token"[^>]*>')
VALUE = re.compile(rb'value="([^"]*)"')
DATA_PAGE = re.compile(rb'data-page="([^"]+)"')


class LoginFailed(Exception):
    """A page or redirect was not the expected one; the message names both."""


def csrf_token(body: bytes) -> str:
    tag = CSRF_INPUT.search(body)
    value = VALUE.search(tag.group(0)) if tag else None
    if value is None:
        raise LoginFailed("no csrf_token on the page")
    return value.group(1).decode()


def page_name(body: bytes) -> str | None:
    match = DATA_PAGE.search(body)
    return match.group(1).decode() if match else None


class Browser:
    """A cookie jar and one connection; enough HTTP for the login pages."""

    def __init__(self, port: int) -> None:
        self.connection = Connection(HOST, port)
        self.cookies: dict[str, str] = {}

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"User-Agent": "gatehouse-bench"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        headers.update(extra or {})
        return headers

    def _store_cookies(self, response) -> None:
        for header in response.cookies:
            pair, _, attributes = header.partition(";")
            name, _, value = pair.strip().partition("=")
            lowered = attributes.lower()
            if "max-age=0" in lowered or "expires=thu, 01 jan 1970" in lowered:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value

    async def get(self, path: str):
        response = await self.connection.request("GET", path, self._headers())
        self._store_cookies(response)
        return response

    async def post(self, path: str, fields: dict[str, str]):
        response = await self.connection.request(
            "POST",
            path,
            self._headers({"Content-Type": "application/x-www-form-urlencoded"}),
            form_body(fields),
        )
        self._store_cookies(response)
        return response


def expect_page(response, name: str) -> bytes:
    if response.status != 200 or page_name(response.body) != name:
        raise LoginFailed(
            f"expected page {name}, got {response.status} {page_name(response.body)}"
        )
    return response.body


def expect_redirect(response, path_end: str) -> None:
    location = response.headers.get("location", "")
    path = location.split("?")[0].rstrip("/")
    if response.status not in (302, 303) or not path.endswith(path_end):
        raise LoginFailed(
            f"expected a redirect to …{path_end}, got {response.status} "
            f"{location!r} {page_name(response.body)}"
        )


class LoginBench:
    """Closed-loop rounds of full logins by many agents at once."""

    def __init__(
        self,
        port: int,
        agents: dict[int, tuple[str, str]],
        ledger: StepLedger,
        meter: RoundMeter,
        concurrency: int,
    ) -> None:
        self.port = port
        self.agents = agents  # agent id -> (login, password)
        self.ledger = ledger
        self.meter = meter
        self.concurrency = concurrency
        self.queue: list[int] = list(agents)
        self.password_step_seconds: list[float] = []

    async def _pick_agent(self) -> int:
        """Take the next agent that has an unspent time step, waiting if none has."""
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            for _ in range(len(self.queue)):
                agent_id = self.queue.pop(0)
                self.queue.append(agent_id)
                if self.ledger.next_step(agent_id) is not None:
                    # Reserve the step now so no other browser takes it.
                    return agent_id
            await asyncio.sleep(min(1.0, seconds_left_in_step()))
        raise LoginFailed("no agent with an unspent time step")

    async def login_once(self, browser: Browser) -> bool | str:
        agent_id = await self._pick_agent()
        code = self.ledger.take(agent_id)
        login, password = self.agents[agent_id]
        browser.cookies.clear()

        body = expect_page(await browser.get("/agent"), "login")
        started = time.perf_counter()
        response = await browser.post(
            "/agent",
            {"csrf_token": csrf_token(body), "login": login, "password": password},
        )
        self.password_step_seconds.append(time.perf_counter() - started)
        expect_redirect(response, "/agent/2fa")
        body = expect_page(await browser.get("/agent/2fa"), "2fa-verify")
        response = await browser.post(
            "/agent/2fa", {"csrf_token": csrf_token(body), "token": code}
        )
        expect_redirect(response, "/agent/dashboard")
        body = expect_page(await browser.get("/agent/dashboard"), "dashboard")
        response = await browser.post("/agent/logout", {"csrf_token": csrf_token(body)})
        expect_redirect(response, "/agent")
        return True

    def _jobs(self):
        def job_for_worker(number: int):
            browser = Browser(self.port)

            async def job(index: int):
                try:
                    return await self.login_once(browser)
                except LoginFailed as error:
                    return str(error)[:120]

            return job

        return job_for_worker

    async def round(self, logins: int, deadline: float = 120) -> dict:
        self.password_step_seconds = []
        self.meter.start()
        result = await closed_loop(self._jobs(), logins, self.concurrency, deadline)
        figures = summarize(result, self.meter.stop(), None)
        figures["password_step_p50_ms"] = _ms(
            percentile(self.password_step_seconds, 0.5)
        )
        for service in ("gateway", "identity", "otp"):
            figures[f"{service}_cpu_ms_per_op"] = round(
                1000 * figures["server_cpu_by_group"][service] / max(result.ok, 1), 2
            )
        return figures

    async def run(self, rounds: int, logins: int) -> dict:
        await self.round(min(logins, 2 * self.concurrency))  # warm-up
        out = {"rounds": [await self.round(logins) for _ in range(rounds)]}
        for key in (
            "rate_per_second",
            "server_cpu_ms_per_op",
            "p50_ms",
            "p99_ms",
            "password_step_p50_ms",
            "client_cpu_share",
            "machine_busy_share",
            "other_cpu_share",
            "redis_cpu_ms_per_op",
            "gateway_cpu_ms_per_op",
            "identity_cpu_ms_per_op",
            "otp_cpu_ms_per_op",
        ):
            values = [r[key] for r in out["rounds"] if r.get(key) is not None]
            out[f"median_{key}"] = (
                round(statistics.median(values), 3) if values else None
            )
        return out
