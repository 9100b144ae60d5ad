"""A small asyncio HTTP/1.1 load generator that costs little CPU per request.

The benchmark machine has two cores that the load generator shares with the
servers, so every microsecond spent here is taken from the servers. Requests are
pre-encoded bytes written on keep-alive connections. Responses are parsed only far
enough to find the status, the headers the scenarios need and the body. Only
loopback addresses are accepted as targets.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode


class HttpError(RuntimeError):
    """The connection failed or the response could not be parsed."""


def require_loopback(host: str) -> None:
    """Raise ValueError unless ``host`` is a loopback address: load stays local."""
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(
            f"{host} is not a loopback address; the benchmark only "
            "sends traffic to 127.0.0.0/8"
        )


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    cookies: list[str]
    body: bytes


def encode_request(
    method: str, path: str, host: str, headers: dict[str, str], body: bytes = b""
) -> bytes:
    """Return the bytes of one HTTP/1.1 request with keep-alive."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def form_body(fields: dict[str, str]) -> bytes:
    return urlencode(fields).encode()


class _Protocol(asyncio.Protocol):
    """One connection; one request at a time, the response handed to a future."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.closed = False
        self.head: tuple[int, dict, list, int | None, bool] | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(HttpError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        try:
            response = self._parse()
        except HttpError as error:
            self.waiter.set_exception(error)
            return
        if response is not None:
            self.waiter.set_result(response)

    def _parse(self) -> Response | None:
        if self.head is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return None
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            del self.buffer[: end + 4]
            try:
                status = int(lines[0].split(" ", 2)[1])
            except (IndexError, ValueError):
                raise HttpError(f"bad status line {lines[0]!r}") from None
            headers: dict[str, str] = {}
            cookies: list[str] = []
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                value = value.strip()
                if name == "set-cookie":
                    cookies.append(value)
                headers[name] = value
            chunked = "chunked" in headers.get("transfer-encoding", "")
            length = None if chunked else int(headers.get("content-length", "0"))
            self.head = (status, headers, cookies, length, chunked)
        status, headers, cookies, length, chunked = self.head
        if chunked:
            body = self._dechunk()
            if body is None:
                return None
        else:
            if len(self.buffer) < length:
                return None
            body = bytes(self.buffer[:length])
            del self.buffer[:length]
        self.head = None
        return Response(status, headers, cookies, body)

    def _dechunk(self) -> bytes | None:
        position, parts = 0, []
        while True:
            end = self.buffer.find(b"\r\n", position)
            if end < 0:
                return None
            size = int(bytes(self.buffer[position:end]).split(b";")[0], 16)
            if size == 0:
                trailer_end = self.buffer.find(b"\r\n\r\n", end)
                if trailer_end < 0 and self.buffer[end : end + 4] != b"\r\n\r\n":
                    return None
                del self.buffer[: max(trailer_end, end) + 4]
                return b"".join(parts)
            start = end + 2
            if len(self.buffer) < start + size + 2:
                return None
            parts.append(bytes(self.buffer[start : start + size]))
            position = start + size + 2


class Connection:
    """A keep-alive connection that reconnects when the server closed it."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        require_loopback(host)
        self.host, self.port, self.timeout = host, port, timeout
        self.host_header = f"{host}:{port}"
        self._protocol: _Protocol | None = None

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        _transport, protocol = await loop.create_connection(
            _Protocol, self.host, self.port
        )
        return protocol

    async def send(self, raw: bytes) -> Response:
        """Send pre-encoded request bytes; return the parsed response."""
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = self._protocol = await self._connect()
        protocol.waiter = asyncio.get_running_loop().create_future()
        protocol.transport.write(raw)
        try:
            response = await asyncio.wait_for(protocol.waiter, self.timeout)
        except (TimeoutError, HttpError):
            self.close()
            raise
        if response.headers.get("connection", "").lower() == "close":
            self.close()
        return response

    async def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> Response:
        raw = encode_request(method, path, self.host_header, headers or {}, body)
        return await self.send(raw)

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None


@dataclass
class RoundResult:
    """Outcome of one bounded round: counts, wall time and per-request latencies."""

    requests: int = 0
    ok: int = 0
    failed: int = 0
    wall_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    client_cpu_seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    def count_error(self, kind: str) -> None:
        self.failed += 1
        self.errors[kind] = self.errors.get(kind, 0) + 1


def client_cpu() -> float:
    """Return this process's CPU seconds (user + system) from getrusage."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# A job is one logical operation (a request, or a whole login); it returns True
# on success, or an error kind for the tally.
Job = Callable[[int], Awaitable["bool | str"]]


async def closed_loop(
    job_for_worker: Callable[[int], Job],
    total: int,
    concurrency: int,
    deadline_seconds: float,
) -> RoundResult:
    """Run ``total`` operations with ``concurrency`` workers, as fast as possible.

    Each worker takes the next operation index as soon as its previous one ends.
    The round stops by itself at ``total`` or after ``deadline_seconds``.
    """
    result = RoundResult()
    next_index = 0
    deadline = time.perf_counter() + deadline_seconds

    async def worker(number: int) -> None:
        nonlocal next_index
        job = job_for_worker(number)
        while next_index < total and time.perf_counter() < deadline:
            index = next_index
            next_index += 1
            started = time.perf_counter()
            try:
                outcome = await job(index)
            except (TimeoutError, HttpError, OSError) as error:
                outcome = type(error).__name__
            result.requests += 1
            if outcome is True:
                result.ok += 1
                result.latencies.append(time.perf_counter() - started)
            else:
                result.count_error(str(outcome))

    cpu_before = client_cpu()
    started = time.perf_counter()
    await asyncio.gather(*(worker(number) for number in range(concurrency)))
    result.wall_seconds = time.perf_counter() - started
    result.client_cpu_seconds = client_cpu() - cpu_before
    return result


async def open_loop(
    job_for_worker: Callable[[int], Job],
    total: int,
    rate: float,
    max_in_flight: int,
    deadline_seconds: float,
) -> RoundResult:
    """Start ``total`` operations at a fixed ``rate`` per second, whatever the server.

    Latency runs from each operation's scheduled start, so a slow server that
    delays later starts is charged for the wait (no coordinated omission). At
    most ``max_in_flight`` run at once; each takes one worker (connection).
    """
    result = RoundResult()
    idle_workers: asyncio.Queue = asyncio.Queue()
    for number in range(max_in_flight):
        idle_workers.put_nowait(job_for_worker(number))
    tasks = []
    deadline = time.perf_counter() + deadline_seconds

    async def run_one(index: int, scheduled: float) -> None:
        job = await idle_workers.get()
        try:
            outcome = await job(index)
        except (TimeoutError, HttpError, OSError) as error:
            outcome = type(error).__name__
        finally:
            idle_workers.put_nowait(job)
        result.requests += 1
        if outcome is True:
            result.ok += 1
            result.latencies.append(time.perf_counter() - scheduled)
        else:
            result.count_error(str(outcome))

    cpu_before = client_cpu()
    started = time.perf_counter()
    interval = 1.0 / rate
    for index in range(total):
        scheduled = started + index * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if time.perf_counter() > deadline:
            break
        tasks.append(asyncio.create_task(run_one(index, scheduled)))
    await asyncio.gather(*tasks)
    result.wall_seconds = time.perf_counter() - started
    result.client_cpu_seconds = client_cpu() - cpu_before
    return result


def percentile(values: list[float], fraction: float) -> float | None:
    """Return the nearest-rank percentile of ``values`` (``fraction`` in 0..1)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]
