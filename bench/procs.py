"""Child processes the harness starts (and only those), and what they cost: CPU time and RSS from /proc."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of one process ((0, 0) when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0, 0.0


def cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of one process (0 when it is gone)."""
    return sum(cpu_times(pid))


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def pids_named(*names: str) -> list[int]:
    """Processes whose command name (/proc/PID/comm) is one of ``names`` (read only: for metering)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() in names:
                        found.append(int(entry))
            except OSError:
                pass
    return found


TCP_COUNTERS = ("ListenOverflows", "ListenDrops", "TCPSynRetrans")


def tcp_counters() -> dict[str, int]:
    """The kernel's TCP counters that say connections waited before any process saw them (accept
    queue full, SYNs dropped and sent again), from /proc/net/netstat: machine-wide, so they count
    whatever else uses TCP on the box too."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return {}
    for head, values in zip(lines[::2], lines[1::2]):
        if head.startswith("TcpExt:"):
            row = dict(zip(head.split()[1:], values.split()[1:]))
            return {k: int(row[k]) for k in TCP_COUNTERS if k in row}
    return {}


@dataclass
class Child:
    """One process started by the harness, its output in a log file."""

    role: str  # gateway, verifier, contacts, customer, plain, direct
    argv: list[str]
    env: dict[str, str]
    log: Path
    proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, cwd=ROOT, env=self.env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
            )
        finally:
            out.close()

    async def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM this child (by its own pid), SIGKILL it if it outlives ``grace``."""
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), grace)
        except TimeoutError:
            self.proc.kill()
            return await self.proc.wait()


def python_child(role: str, module_args: list[str], env: dict[str, str], log_dir: Path) -> Child:
    return Child(role, [sys.executable, "-m", *module_args], env, log_dir / f"{role}-{time.monotonic_ns()}.log")


NAMED = {"postgres": ("postgres",), "rabbitmq": ("beam.smp", "erl_child_setup", "epmd", "inet_gethost")}


@dataclass
class CpuMeter:
    """CPU seconds per component over a phase: Doorman's services, the database, the broker, the client.

    The database's and broker's processes are found by name, again at the end of the phase, so
    backends started during it (a pool growing) are counted from zero."""

    groups: dict[str, list[int]]
    started: dict[int, tuple[float, float]] = field(default_factory=dict)
    wall0: float = 0.0

    @staticmethod
    def of(children: list[Child]) -> "CpuMeter":
        groups: dict[str, list[int]] = {}
        for c in children:
            if c.alive:
                groups.setdefault(c.role, []).append(c.pid)
        groups["client"] = [os.getpid()]
        return CpuMeter(groups)

    def _pids(self) -> dict[str, list[int]]:
        return {**self.groups, **{g: pids_named(*names) for g, names in NAMED.items()}}

    def __enter__(self) -> "CpuMeter":
        self.started = {p: cpu_times(p) for pids in self._pids().values() for p in pids}
        self.wall0 = time.monotonic()
        return self

    def __exit__(self, *_: object) -> None:
        self.wall = time.monotonic() - self.wall0
        self.user: dict[str, float] = {}
        self.system: dict[str, float] = {}
        for g, pids in self._pids().items():
            u = s = 0.0
            for p in pids:
                u1, s1 = cpu_times(p)
                u0, s0 = self.started.get(p, (0.0, 0.0))
                u, s = u + u1 - u0, s + s1 - s0
            self.user[g], self.system[g] = u, s
        self.seconds = {g: self.user[g] + self.system[g] for g in self.user}

    def cores(self) -> dict[str, float]:
        """Average cores used by each component over the phase."""
        return {g: round(s / self.wall, 2) for g, s in self.seconds.items()}

    def system_share(self) -> dict[str, float]:
        """Part of each component's CPU time spent in the kernel (loopback TCP, syscalls)."""
        return {g: round(self.system[g] / s, 2) for g, s in self.seconds.items() if s > 0}

    def ms_per(self, count: int) -> dict[str, float]:
        """CPU milliseconds each component spent per unit of work (e.g. per resolved open)."""
        if not count:
            return {}
        out = {g: round(s * 1000 / count, 3) for g, s in self.seconds.items()}
        out["total"] = round(sum(self.seconds.values()) * 1000 / count, 3)
        return out


class RssSampler:
    """Peak RSS per pid while the context runs (sampled every ``every`` seconds)."""

    def __init__(self, pids: dict[str, list[int]], every: float = 0.25) -> None:
        self._pids = pids
        self._every = every
        self.peak: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    def _take(self) -> None:
        for role, pids in self._pids.items():
            for i, pid in enumerate(pids):
                key = role if len(pids) == 1 else f"{role}#{i + 1}"
                self.peak[key] = max(self.peak.get(key, 0), rss_bytes(pid))

    async def _run(self) -> None:
        while True:
            self._take()
            await asyncio.sleep(self._every)

    async def __aenter__(self) -> "RssSampler":
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._take()
