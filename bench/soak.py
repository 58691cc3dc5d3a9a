"""``python -m bench.soak [--minutes 30] [--rate R | --fraction 0.6]``: Doorman over time.

Starts the stack as the benchmark does (own database and queue prefix, the fake business) with 2
gateways, 2 verifiers and 2 contacts services, measures the end-to-end saturation of the soak's own
traffic for a few seconds (unless ``--rate``), then offers ``--fraction`` of it, open loop, for
``--minutes``: the widget's three paths, logouts, erasures through the admin API, webhooks to the
fake business, callback and signed-token bots. Each kind of service is restarted once, one replica
at a time (SIGTERM, then its replacement): verifiers at 40 % of the run, contacts at 50 %, gateways
at 60 %. Every few seconds each service process's RSS, file descriptors, TCP connections and asyncio
tasks are sampled. At the end: lost and duplicated outcomes, webhooks, levels after warm-up, p99
first vs last window; one table, bench/results/soak.json. Exit status 1 when a criterion failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from doorman.up import wait_ready
from shared import messaging

from . import machine, soak_checks
from .__main__ import RESULTS, raise_nofile, wait_port
from .procs import ROOT, Child, python_child
from .soak_checks import Life, Sample, Windows
from .soak_load import CONNECTION_ERRORS, Bot, Gateways, Record, Widgets, steady
from .stack import Stack, free_port

BOTS = 7  # 5 callback (Authentication URL), 2 signed-token; webhooks on callback 0, 1 and signed 5
SIGNED = (5, 6)
WEBHOOKS = (0, 1, 5)
WEBHOOK_EVENTS = ["contact.created", "contact.updated", "contact.erased", "session.fell_back"]
REPLICAS = 2
RESTARTS = (("verifier", 0.4), ("contacts", 0.5), ("gateway", 0.6))  # role, when (share of the run)
PORT_VARIABLE = {"gateway": "DOORMAN_GATEWAY_PORT", "verifier": "DOORMAN_VERIFIER_PORT",
                 "contacts": "DOORMAN_CONTACTS_PORT"}


def say(msg: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {msg}", flush=True)


@dataclass
class Proc:
    """One service process of the soak: its slot (``verifier#2``), generation and port."""

    role: str
    slot: int
    generation: int
    port: int  # the gateway's, or the worker's health and metrics port
    child: Child

    @property
    def key(self) -> str:
        return f"{self.role}#{self.slot}.{self.generation}"


class Soak:
    def __init__(self, stack: Stack, clock0: float) -> None:
        self.stack = stack
        self.procs: list[Proc] = []
        self.lives: dict[str, Life] = {}
        self.samples: list[Sample] = []
        self.load: list[tuple[float, float]] = []  # (t, 1-minute load average of the box)
        self.restarts: list[dict[str, Any]] = []
        self.restarting: list[float] = []  # [began, ended] of the rolling restart
        self.erased: dict[str, str] = {}  # contact id -> "bot:identifier"
        self.erase_errors: dict[str, int] = {}
        # Erasures whose answer never came (a timeout, a gateway restarting): the gateway may have done them.
        # After the run, those whose contact is gone count as erased (its deliveries went with it).
        self.erase_unanswered: dict[str, str] = {}
        self.clock0 = clock0  # the soak's t = 0 (monotonic); moved when the steady load starts

    def now(self) -> float:
        return time.monotonic() - self.clock0

    def gateway_ports(self) -> list[int]:
        return [p.port for p in sorted(self.procs, key=lambda p: p.slot) if p.role == "gateway"]

    async def start(self, role: str, slot: int, port: int, generation: int = 1) -> Proc:
        child = await self.stack.start(role, {PORT_VARIABLE[role]: str(port)})
        proc = Proc(role, slot, generation, port, child)
        self.procs.append(proc)
        self.lives[proc.key] = Life(role, self.now())
        return proc

    async def ready(self, proc: Proc) -> None:
        def alive() -> None:
            if not proc.child.alive:
                raise RuntimeError(f"{proc.key} exited; see {proc.child.log}")
        await wait_ready(f"http://127.0.0.1:{proc.port}/readyz", alive, 60.0)

    async def consuming(self) -> None:
        await self.stack.wait_consumers({messaging.VERIFIER_QUEUE: REPLICAS, messaging.CONTACTS_QUEUE: REPLICAS}, 60.0)

    # -- sampling --------------------------------------------------------------------------------

    async def sample_forever(self, every: float) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:
            while True:
                await self.sample(http)
                await asyncio.sleep(every)

    async def sample(self, http: aiohttp.ClientSession) -> None:
        self.samples.extend(await self._read(http))
        self.load.append((round(self.now(), 1), os.getloadavg()[0]))

    async def at_rest(self, times: int = 3, every: float = 1.0) -> list[Sample]:
        """Every live process with no load in hand: ``times`` readings ``every`` seconds apart, each
        process's lowest count kept (a reading may catch the metrics request's own handler)."""
        readings: list[Sample] = []
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:
            for i in range(times):
                readings.extend(await self._read(http))
                if i + 1 < times:
                    await asyncio.sleep(every)
        return soak_checks.lowest(readings)

    async def _read(self, http: aiohttp.ClientSession) -> list[Sample]:
        live = [p for p in self.procs if p.child.alive]
        tasks = await asyncio.gather(*(_tasks(http, p.port) for p in live))
        sockets = _tcp_sockets()
        t = self.now()
        out = []
        for proc, n in zip(live, tasks):
            pid = proc.child.pid
            mine = [sockets[i] for i in _socket_inodes(pid) if i in sockets]
            listening = {port for state, port in mine if state == LISTEN}
            out.append(Sample(
                t, proc.key, _vm_rss(pid), _fd_count(pid), conns=sum(1 for state, _ in mine if state != LISTEN),
                tasks=n, inbound=sum(1 for state, port in mine if state == ESTABLISHED and port in listening)))
        return out

    # -- erasures ----------------------------------------------------------------------------------

    async def erase_forever(self, gateways: Gateways, bots: list[Bot], every: float) -> None:
        headers = {"Authorization": f"Bearer {self.stack.admin_token}"}
        rng = random.Random(7)
        async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=10)) as http:
            for n in range(1 << 62):
                await asyncio.sleep(every)
                bot = bots[WEBHOOKS[n % len(WEBHOOKS)]].bot_id
                base = f"http://127.0.0.1:{self.gateway_ports()[gateways.pick(n)]}/v1/bots/{bot}/contacts"
                try:
                    async with http.get(base, params={"limit": "50"}) as resp:
                        contacts = (await resp.json())["contacts"]
                    if not contacts:
                        continue
                    contact = rng.choice(contacts)
                    visitor = f"{bot}:{contact['identifier']}"
                    try:
                        async with http.delete(f"{base}/{contact['contact_id']}") as resp:
                            if resp.status == 204:
                                self.erased[contact["contact_id"]] = visitor
                            else:
                                self.erase_errors[f"http-{resp.status}"] = self.erase_errors.get(f"http-{resp.status}", 0) + 1
                                if resp.status >= 500:
                                    self.erase_unanswered[contact["contact_id"]] = visitor
                    except (aiohttp.ClientError, TimeoutError):
                        self.erase_unanswered[contact["contact_id"]] = visitor
                        raise
                except (aiohttp.ClientError, TimeoutError, KeyError) as exc:
                    self.erase_errors[type(exc).__name__] = self.erase_errors.get(type(exc).__name__, 0) + 1

    # -- the rolling restart -------------------------------------------------------------------------

    async def restart_role(self, role: str, gateways: Gateways) -> None:
        """Each replica of ``role`` in turn: SIGTERM (a gateway taken out of the rotation first), wait
        for it to exit, start its replacement on the same port, wait until it is ready or consuming."""
        for old in sorted((p for p in self.procs if p.role == role and p.child.alive), key=lambda p: p.slot):
            say(f"   restarting {old.key} (SIGTERM)")
            k = self.gateway_ports().index(old.port) if role == "gateway" else None
            if k is not None:
                gateways.out.add(k)
                await asyncio.sleep(1.0)  # what a load balancer needs to stop sending it new requests
            began = time.monotonic()
            code = await old.child.stop(grace=20.0)
            stopped = time.monotonic() - began
            self.lives[old.key] = Life(role, self.lives[old.key].started, self.now())
            self.procs.remove(old)
            self.stack.children.remove(old.child)
            new = await self.start(role, old.slot, old.port, old.generation + 1)
            began = time.monotonic()
            ready = True
            try:
                await (self.ready(new) if role == "gateway" else self.consuming())
            except RuntimeError as exc:
                say(f"   {new.key} not ready: {exc}")
                ready = False
            if k is not None:
                gateways.out.discard(k)
            self.restarts.append({"role": role, "old": old.key, "new": new.key, "at_seconds": round(self.now(), 1),
                                  "exit_code": code, "stop_seconds": round(stopped, 1),
                                  "ready": ready, "ready_seconds": round(time.monotonic() - began, 1)})

    async def rolling_restarts(self, seconds: float, gateways: Gateways) -> None:
        for role, share in RESTARTS:
            await asyncio.sleep(max(0.0, share * seconds - self.now()))
            say(f"rolling restart: {role} replicas, one at a time, at {self.now():.0f} s")
            self.restarting[:] = [self.restarting[0] if self.restarting else self.now(), self.now()]
            await self.restart_role(role, gateways)
            self.restarting[1] = self.now()


# -- /proc and /metrics ----------------------------------------------------------------------------------


def _vm_rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _socket_inodes(pid: int) -> list[str]:
    inodes = []
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.append(target[8:-1])
    except OSError:
        pass
    return inodes


LISTEN, ESTABLISHED = "0A", "01"


def _tcp_sockets() -> dict[str, tuple[str, int]]:
    """Socket inode -> (TCP state in hex, local port), from /proc/net/tcp and tcp6."""
    found = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9:
                found[fields[9]] = (fields[3], int(fields[1].rsplit(":", 1)[1], 16))
    return found


TASKS = re.compile(rb"^doorman_asyncio_tasks (\S+)$", re.MULTILINE)


async def _tasks(http: aiohttp.ClientSession, port: int) -> int | None:
    try:
        async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            found = TASKS.search(await resp.read())
        return int(float(found.group(1))) if found else None
    except (aiohttp.ClientError, TimeoutError):
        return None


# -- set-up --------------------------------------------------------------------------------------------


async def make_bots(stack: Stack, customer: str, webhook: str) -> list[Bot]:
    bots = []
    for i in range(BOTS):
        if i in SIGNED:
            bot_id = (await stack.admin("POST", "/v1/bots", {"name": f"soak signed {i}"}))["bot_id"]
            await stack.admin("PUT", f"/v1/bots/{bot_id}/custom-auth", {
                "enabled": True, "identity_source": "signed_token", "identify_method": "id", "request_fields": [],
                "signed_token": {"algorithm": "HS256", "max_lifetime_seconds": 3600}})
            secret = await stack.admin("POST", f"/v1/bots/{bot_id}/custom-auth/token-secret", None)
            bot = Bot(bot_id, (secret["kid"], secret["secret"]))
        else:
            bot = Bot(await stack.create_bot(f"soak callback {i}", customer))
        if i in WEBHOOKS:
            await stack.admin("PUT", f"/v1/bots/{bot.bot_id}/webhook",
                              {"url": webhook, "events": WEBHOOK_EVENTS, "enabled": True})
        bots.append(bot)
    return bots


async def saturation(widgets: Widgets, seconds: float, concurrency: int = 128, warmup: float = 1.5) -> float:
    """Opens answered per second by ``concurrency`` widgets, each opening again once answered (closed
    loop, the soak's own traffic), counted after ``warmup``."""
    loop = asyncio.get_running_loop()
    start = loop.time() + warmup
    stop = start + seconds
    done = 0
    counter = iter(range(1 << 40, 1 << 62))

    async def widget() -> None:
        nonlocal done
        while loop.time() < stop:
            try:
                async with asyncio.timeout(30):
                    await widgets.open(next(counter))
            except (TimeoutError, ValueError, KeyError, *CONNECTION_ERRORS):
                continue  # not answered: the rate counts what was answered
            if start <= loop.time() <= stop:
                done += 1

    await asyncio.gather(*(widget() for _ in range(concurrency)))
    return done / seconds


# -- the run -----------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    seconds = args.minutes * 60
    w = Windows(seconds)
    log_dir = RESULTS / "logs"
    for old in log_dir.glob("*.log"):
        old.unlink()
    stack = Stack(log_dir)
    fast_port, hang_port = free_port(), free_port()
    customer = python_child("customer", ["bench.customer", str(fast_port), str(hang_port)], stack.env(), log_dir)
    result: dict[str, Any] = {"mode": "soak", "machine": machine.describe(), "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                              "minutes": args.minutes, "nofile": raise_nofile(),
                              "windows": {"warmup_s": w.warmup, "latency_s": w.latency, "level_s": w.level,
                                          "sample_every_s": w.sample_every}}
    soak = Soak(stack, time.monotonic())
    await customer.start()
    try:
        await wait_port(fast_port)
        say(f"database {stack.database}, queue prefix {stack.prefix}, logs in {log_dir.relative_to(ROOT)}")
        await stack.setup()
        gateway_ports = [stack.gateway_port, free_port()]
        for slot, port in enumerate(gateway_ports, 1):
            await soak.ready(await soak.start("gateway", slot, port))
        for role in ("verifier", "contacts"):
            for slot in range(1, REPLICAS + 1):
                await soak.start(role, slot, free_port())
        await soak.consuming()
        bots = await make_bots(stack, f"http://127.0.0.1:{fast_port}/auth", f"http://127.0.0.1:{fast_port}/webhook")
        gateways = Gateways(gateway_ports)

        if args.rate:
            rate, source = args.rate, "--rate"
        else:
            say(f"saturation: the soak's traffic, closed loop, 128 widgets, {args.saturation_seconds:g} s")
            sat = await saturation(Widgets(gateways, bots, Record()), args.saturation_seconds)
            result["saturation_per_second"] = round(sat, 1)
            rate, source = round(sat * args.fraction, 1), f"{args.fraction:g} x saturation {sat:.0f}/s"
            await stack.quiet(timeout=120)
        rest_before = await soak.at_rest()  # after the saturation phase has been worked off: nothing in hand
        result.update(rate=rate, rate_source=source, load_average_before=os.getloadavg())
        say(f"soak: {rate:g} opens/s ({source}) for {args.minutes:g} min; "
            f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")

        record = Record()
        widgets = Widgets(gateways, bots, record)
        soak.clock0 = time.monotonic()
        # Started before the soak: their warm-up counts from t = 0.
        soak.lives = {key: Life(life.role, 0.0) for key, life in soak.lives.items()}
        background = [asyncio.create_task(soak.sample_forever(w.sample_every)),
                      asyncio.create_task(soak.erase_forever(gateways, bots, args.erase_every)),
                      asyncio.create_task(soak.rolling_restarts(seconds, gateways))]
        try:
            offered = await steady(widgets, rate=rate, seconds=seconds)
            end_of_run = seconds
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
        gateways.close()
        say("draining: queues empty, no session pending, webhook deliveries settled")
        result["quiet"] = await stack.quiet(timeout=120)
        result["webhooks_settled"] = await _webhooks_settled(stack, 120)
        result["at_rest"] = {"before": [asdict(x) for x in rest_before],
                             "after": [asdict(x) for x in await soak.at_rest()]}
        result.update(await _checks(stack, record, soak, fast_port))
        result.update(
            offered=offered, accepted=record.accepted, unanswered=record.unanswered,
            outcomes=dict(record.outcomes), errors=dict(record.errors), refused=dict(record.refused),
            logouts=dict(record.logouts), failovers=gateways.failovers, erasures=len(soak.erased),
            erase_errors=soak.erase_errors, restarts=soak.restarts,
            latency=soak_checks.latency_windows(record.latencies_by_second, seconds, w),
            per_minute=soak_checks.per_minute(record.latencies_by_second),
            by_path={p: {"opens": len(xs), "p50_ms": soak_checks.percentile(xs, 50),
                         "p99_ms": soak_checks.percentile(xs, 99)} for p, xs in record.by_path.items()},
            restarting_seconds=soak.restarting,
            levels=soak_checks.levels(soak.samples, soak.lives, end_of_run, w, _disturbed(soak.restarting, w)),
            lives={k: asdict(v) for k, v in soak.lives.items()},
            samples=[asdict(s) for s in soak.samples], load_average=soak.load,
            load_average_after=os.getloadavg(),
        )
    finally:
        say("stopping everything this run started")
        try:
            await stack.teardown(keep_database=args.keep_database)
        finally:
            await customer.stop()
    return result


def _disturbed(restarting: list[float], w: Windows) -> list[tuple[float, float]]:
    """The rolling restart, and one level window after it for the load to settle back on every replica."""
    return [(restarting[0], restarting[1] + w.level)] if restarting else []


async def _webhooks_settled(stack: Stack, timeout: float) -> bool:
    assert stack.pool is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not await stack.pool.fetchval("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"):
            return True
        await asyncio.sleep(0.5)
    return False


async def _checks(stack: Stack, record: Record, soak: Soak, fast_port: int) -> dict[str, Any]:
    """Lost, duplicated and webhooks, from the database, the client's record and the endpoint's."""
    assert stack.pool is not None
    stored: dict[str, str] = {}
    ids = list(record.seen)
    for i in range(0, len(ids), 20_000):
        rows = await stack.pool.fetch("SELECT session_id, status FROM widget_sessions WHERE session_id = ANY($1::text[])",
                                      ids[i:i + 20_000])
        stored.update((r["session_id"], r["status"]) for r in rows)
    compared = soak_checks.disagreements(record.seen, stored)
    rows_pending = await stack.pool.fetchval("SELECT count(*) FROM widget_sessions WHERE status = 'pending'")
    contacts = int(await stack.pool.fetchval(
        """SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM contacts
           GROUP BY bot_id, identify_method, identifier, external_workspace_id HAVING count(*) > 1) AS twice"""))
    deliveries = {str(r["delivery_id"]): r["status"] for r in await stack.pool.fetch(
        "SELECT delivery_id, status FROM webhook_deliveries")}
    still = {str(r["contact_id"]) for r in await stack.pool.fetch(
        "SELECT contact_id FROM contacts WHERE contact_id = ANY($1::uuid[])", list(soak.erase_unanswered))}
    erased_unanswered = {c: v for c, v in soak.erase_unanswered.items() if c not in still}
    soak.erased.update(erased_unanswered)
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{fast_port}/webhook/log") as resp:
        received = [tuple(r) for r in await resp.json()]
    by_status = {r["status"]: r["n"] for r in await stack.pool.fetch(
        "SELECT status, count(*) AS n FROM widget_sessions GROUP BY status")}
    return {
        "sessions_by_status": by_status,
        "lost": {"missing": compared["missing"], "pending": compared["pending"], "rows_pending": rows_pending},
        "duplicated": {"differ": compared["differ"], "streams_with_two_outcomes": record.two_outcomes,
                       "contacts": contacts},
        "webhooks": soak_checks.webhook_checks(received, deliveries, soak.erased),  # type: ignore[arg-type]
        "webhooks_unknown": soak_checks.unknown_deliveries(received, deliveries, soak.erased),  # type: ignore[arg-type]
        "erasures_unanswered": {"tried": len(soak.erase_unanswered), "done": len(erased_unanswered)},
    }


def _jsonable(result: dict[str, Any]) -> dict[str, Any]:
    levels = {p: {m: ({**asdict(lv), "growth": round(lv.growth, 4), "grew": lv.grew} if lv else None)
                  for m, lv in ms.items()} for p, ms in result["levels"].items()}
    verdicts = [asdict(v) for v in soak_checks.verdicts(result)]
    return {**result, "levels": levels, "verdicts": verdicts, "passed": soak_checks.passed(result)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak",
                                     description="Doorman over time: one table, bench/results/soak.json.")
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the steady load (default 30)")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--rate", type=float, help="opens/s to offer (default: --fraction of the measured saturation)")
    how.add_argument("--fraction", type=float, default=0.6, help="share of the saturation to offer (default 0.6)")
    parser.add_argument("--saturation-seconds", type=float, default=10.0, help="how long saturation is measured")
    parser.add_argument("--erase-every", type=float, default=2.0, help="seconds between two erasures (default 2)")
    parser.add_argument("--keep-database", action="store_true", help="do not drop the run's database")
    parser.add_argument("--output", type=Path, default=RESULTS / "soak.json")
    args = parser.parse_args()
    if args.minutes <= 0:
        parser.error("--minutes must be positive")
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = _jsonable(asyncio.run(run(args)))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print()
    print(machine.line(result["machine"]))
    print(f"{result['minutes']:g} min at {result['rate']:g} opens/s ({result['rate_source']}); "
          f"{result['offered']:,} offered, {result['accepted']:,} accepted; load average "
          f"{result['load_average_before'][0]:.2f} before, {result['load_average_after'][0]:.2f} after")
    print(soak_checks.table(result))
    print(f"\nresults in {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")
    raise SystemExit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
