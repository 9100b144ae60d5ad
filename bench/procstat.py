"""Server CPU time from the kernel's own accounting in /proc.

The CPU of a process tree is the sum, over its live processes, of utime + stime
(the process itself) and cutime + cstime (children it has already reaped). A
gunicorn worker that exits between two snapshots moves from its own fields into
its master's cutime/cstime, so a before/after difference stays correct. Processes
that detach from the tree (a daemon that double-forks, such as gpg-agent) are not
counted.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessTimes:
    pid: int
    ppid: int
    ticks: int
    command: str


def _read_stat(pid: int) -> tuple[int, int] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in brackets may hold spaces; the fields start after ")".
    fields = text[text.rindex(")") + 2 :].split()
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return ppid, utime + stime + cutime + cstime


def _command(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def snapshot(root_pids: list[int]) -> dict[int, ProcessTimes]:
    """Return the CPU ticks of every process under ``root_pids`` (roots included)."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _read_stat(int(entry))
        if stat is not None:
            parents[int(entry)], ticks[int(entry)] = stat
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)

    found: dict[int, ProcessTimes] = {}
    pending = [pid for pid in root_pids if pid in ticks]
    while pending:
        pid = pending.pop()
        if pid in found:
            continue
        found[pid] = ProcessTimes(pid, parents[pid], ticks[pid], _command(pid))
        pending.extend(children.get(pid, []))
    return found


def cpu_seconds(
    before: dict[int, ProcessTimes],
    after: dict[int, ProcessTimes],
    pids: set[int] | None = None,
) -> float:
    """Return the CPU seconds spent between two snapshots, optionally for ``pids``.

    A process present only in ``after`` started during the round, so all of its
    ticks count. One present only in ``before`` exited and was reaped into its
    parent's child times, so the parent's difference already contains it.
    """
    total = 0
    for pid, times in after.items():
        if pids is not None and pid not in pids:
            continue
        start = before[pid].ticks if pid in before else 0
        total += times.ticks - start
    return total / CLOCK_TICKS


def machine_busy_seconds() -> tuple[float, float]:
    """Return (busy, total) CPU seconds of the whole machine from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(value) for value in fields[:8]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values)
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


def pids_named(names: tuple[str, ...]) -> dict[str, list[int]]:
    """Return the pids whose /proc/PID/comm is one of ``names``, by name."""
    found: dict[str, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            comm = Path(f"/proc/{entry}/comm").read_text().strip()
        except OSError:
            continue
        if comm in names:
            found.setdefault(comm, []).append(int(entry))
    return found


class QuietGate:
    """Delay the start of a round while other programs keep the machine busy.

    Other test runs on the same two cores stretch wall times and even CPU times
    (shared caches), so a round waits, in ``step`` s slices, until the machine's
    busy share over the last slice is below ``threshold``. Each round waits at
    most ``max_wait`` s and the whole run at most ``budget`` s, so the benchmark
    still ends in bounded time. A round that gave up waiting starts anyway.
    """

    def __init__(
        self,
        threshold: float = 0.25,
        step: float = 0.3,
        max_wait: float = 3.0,
        budget: float = 90.0,
    ) -> None:
        self.threshold = threshold
        self.step = step
        self.max_wait = max_wait
        self.budget = budget
        self.waited = 0.0

    def wait(self) -> tuple[float, float]:
        """Block until quiet or out of time; return (seconds waited, last share)."""
        waited, share = 0.0, 0.0
        while True:
            busy_before, total_before = machine_busy_seconds()
            time.sleep(self.step)
            busy_after, total_after = machine_busy_seconds()
            elapsed = total_after - total_before
            share = (busy_after - busy_before) / elapsed if elapsed > 0 else 0.0
            waited += self.step
            if (
                share < self.threshold
                or waited >= self.max_wait
                or self.waited + waited >= self.budget
            ):
                break
        self.waited += waited
        return waited, share


# One gate for the whole run, so its budget bounds the total wait.
QUIET_GATE = QuietGate()

# The Redis and RabbitMQ servers are shared with every other program on the
# machine, so their CPU is shown beside ours but never added to it.
SHARED_SERVERS = ("redis-server", "beam.smp")


class RoundMeter:
    """Measure one round: server CPU per group, load-generator CPU, machine load.

    ``groups`` maps a name (``gateway``, ``otp``...) to a predicate on a process
    command line; ``roots`` are the pids whose
    trees contain the servers.
    """

    def __init__(self, roots: list[int], groups: dict[str, callable]) -> None:
        self.roots = roots
        self.groups = groups
        self.shared = pids_named(SHARED_SERVERS)

    def _group_of(self, command: str) -> str:
        """Return the last (most specific) group whose predicate matches."""
        names = [name for name, matches in self.groups.items() if matches(command)]
        return names[-1] if names else "other"

    def _shared_snapshot(self) -> dict[str, dict[int, ProcessTimes]]:
        return {name: snapshot(pids) for name, pids in self.shared.items()}

    def start(self) -> None:
        self._quiet_wait, self._busy_before_round = QUIET_GATE.wait()
        self._before = snapshot(self.roots)
        self._shared_before = self._shared_snapshot()
        self._machine_before = machine_busy_seconds()

    def stop(self) -> dict:
        """Return CPU seconds by group, in total, and the machine's busy share."""
        after = snapshot(self.roots)
        shared_after = self._shared_snapshot()
        busy_after, total_after = machine_busy_seconds()
        busy_before, total_before = self._machine_before
        by_group = {}
        for name, matches in self.groups.items():
            pids = {pid for pid, times in after.items() if matches(times.command)}
            by_group[name] = cpu_seconds(self._before, after, pids)
        elapsed_cpu = total_after - total_before
        return {
            "server_cpu_seconds": cpu_seconds(self._before, after),
            "server_cpu_by_group": by_group,
            # Per process, to show how evenly gunicorn spread the load over workers.
            "server_cpu_by_process": {
                f"{pid} {self._group_of(times.command)}": round(
                    cpu_seconds(self._before, after, {pid}), 3
                )
                for pid, times in sorted(after.items())
                if cpu_seconds(self._before, after, {pid}) > 0
            },
            "shared_server_cpu_seconds": {
                name: cpu_seconds(self._shared_before[name], shared_after[name])
                for name in shared_after
            },
            "quiet_wait_seconds": self._quiet_wait,
            "busy_share_before_round": round(self._busy_before_round, 3),
            "machine_busy_seconds": busy_after - busy_before,
            "machine_busy_share": (busy_after - busy_before) / elapsed_cpu
            if elapsed_cpu > 0
            else None,
        }
