"""The eight measurements. Each returns a plain dict for results/latest.json; every ratio is
computed from figures measured in this same run."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import aiohttp
import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from doorman.up import wait_ready
from services.contacts.repository import UPSERT_VERIFIED
from shared import messaging
from shared.events import IdentifyMethod, Identity, IdentityVerified, utcnow

from . import oidc
from .client import (POLL_EVERY, Pool, Run, closed_loop, direct_op, doorman_open_op, doorman_poll_op,
                     doorman_wait_op, hold_streams, open_loop, percentile, post_op)
from .procs import Child, CpuMeter, RssSampler, python_child, rss_bytes, tcp_counters
from .stack import DbMeter, Stack, free_port

MB = 1024 * 1024
WIDGET_WAIT_SECONDS = 3.0  # as services/gateway/pages/static/widget.js asks
VERIFIER_EMIT_BATCH = 256  # services/verifier/settings.py's default: most outcomes per message


@dataclass(frozen=True)
class Plan:
    """How long and how much; ``--quick`` scales everything down."""

    post_seconds: float = 8.0
    post_concurrency: int = 64
    e2e_seconds: float = 10.0
    e2e_concurrency: int = 128
    fixed_rate: float = 300.0
    fixed_seconds: float = 15.0
    warmup: float = 1.5
    drain_events: int = 20_000
    streams: int = 10_000
    isolation_seconds: float = 12.0
    isolation_share: int = 10  # every Nth open goes to the bot whose API will hang
    scale_seconds: float = 10.0
    wrk_seconds: float = 5.0  # 0: no wrk cross-check
    streams_timeout: float = 90.0
    settle_timeout: float = 60.0
    backlog_timeout: float = 600.0  # for the pipeline to work off what a phase left queued (tests 1 and 8)
    wait_seconds: float = 2.0  # test 2's one-request mode: POST ...?wait=<this>
    overload_factor: float = 2.0  # test 8 offers this many times test 2's saturation
    overload_rate: float = 700.0  # ... or this many opens/s when test 2 did not run (--overload-rate)
    overload_seconds: float = 20.0
    overload_drain: float = 30.0  # the sessions' deadline is 15 s: every open has an outcome well before
    late_grace: float = 2.0  # test 8: a session resolved later than its deadline + this is late
    bots: int = 10
    visitors: int = 1000

    @staticmethod
    def quick() -> "Plan":
        return Plan(post_seconds=2, e2e_seconds=3, fixed_seconds=3, warmup=0.5, drain_events=3000, streams=1000,
                    isolation_seconds=3, scale_seconds=3, wrk_seconds=0, streams_timeout=15, settle_timeout=20,
                    backlog_timeout=300, overload_seconds=6)


@dataclass
class Context:
    plan: Plan
    stack: Stack
    customer_fast: str
    customer_hang: str
    bots: list[str] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    customer: Child | None = None

    def metered(self, *extra: Child) -> list[Child]:
        """Every process of ours whose CPU a phase should count: the services, the customer API, ``extra``."""
        return [*self.stack.children, *([self.customer] if self.customer else []), *extra]

    def gateway_pool(self) -> Pool:
        return Pool("127.0.0.1", self.stack.gateway_port)

    def e2e_op(self):  # type: ignore[no-untyped-def]
        bots = self.bots
        return doorman_open_op(lambda i: bots[i % len(bots)])

    def widget_op(self, answered: Counter | None = None):  # type: ignore[no-untyped-def]
        """What widget.js does: POST ?wait=3, the stream only when the outcome is not in the answer."""
        bots = self.bots
        return doorman_wait_op(lambda i: bots[i % len(bots)], WIDGET_WAIT_SECONDS, answered)

    def client_op(self, path: str, answered: Counter | None = None):  # type: ignore[no-untyped-def]
        """One of the widget's three ways to an outcome (``CLIENT_PATHS``): ``wait`` is ``widget_op``,
        ``sse`` is POST then the stream, ``poll`` is POST then ``GET`` every ``POLL_EVERY`` seconds."""
        if path == "wait":
            return self.widget_op(answered)
        if path == "sse":
            return self.e2e_op()
        bots = self.bots
        return doorman_poll_op(lambda i: bots[i % len(bots)], POLL_EVERY)

    def rss(self) -> dict[str, float]:
        out = {}
        for role in ("gateway", "verifier", "contacts"):
            for n, c in enumerate(self.stack.running(role)):
                out[role if n == 0 else f"{role}#{n + 1}"] = round(rss_bytes(c.pid) / MB, 1)
        return out


def say(msg: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {msg}", flush=True)


@asynccontextmanager
async def reference_server(ctx: Context, role: str, args: list[str]) -> AsyncIterator[tuple[Child, Pool, int]]:
    """A reference server (``python -m <args[0]> <port> <args[1:]>``), started and ready; stopped after."""
    port = free_port()
    child = python_child(role, [args[0], str(port), *args[1:]], ctx.stack.env(), ctx.stack.log_dir)
    await child.start()
    try:
        await wait_http(port, child)
        pool = Pool("127.0.0.1", port)
        try:
            yield child, pool, port
        finally:
            pool.close()
    finally:
        await child.stop()


async def wait_http(port: int, child: Child, timeout: float = 30.0) -> None:
    def alive() -> None:
        if not child.alive:
            raise RuntimeError(f"{child.role} exited; see {child.log}")

    await wait_ready(f"http://127.0.0.1:{port}/healthz", alive, timeout)


# -- 1. the widget-open endpoint vs a plain aiohttp JSON POST ----------------------------------------------


async def _wrk(port: int, body: bytes, seconds: float, connections: int) -> dict[str, Any] | None:
    if shutil.which("wrk") is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                f"wrk.body = [[{body.decode()}]]\n")
        script = f.name
    try:
        proc = await asyncio.create_subprocess_exec(
            "wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "-s", script,
            f"http://127.0.0.1:{port}/v1/widget/sessions", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), seconds + 30)
    finally:
        os.unlink(script)
    text = out.decode()
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    return {"per_second": float(rate.group(1)) if rate else None, "non_2xx": int(bad.group(1)) if bad else 0}


async def post_throughput(ctx: Context) -> dict[str, Any]:
    """req/s of a plain aiohttp JSON POST endpoint, of the gateway's widget-open POST alone (verifier
    and contacts stopped: the broker queue absorbs the opens) and of the same POST with verifier and
    contacts consuming (the pipeline shares the cores); same client, concurrency and closed loop."""
    plan, stack = ctx.plan, ctx.stack
    out: dict[str, Any] = {"concurrency": plan.post_concurrency}
    async with reference_server(ctx, "plain", ["bench.plain"]) as (plain, pool, port):
        say("1. plain aiohttp POST endpoint")
        with CpuMeter.of(ctx.metered(plain)) as cpu:
            run = await closed_loop(pool, post_op(b"/v1/widget/sessions", ctx.bots[0]),
                                    concurrency=plan.post_concurrency, seconds=plan.post_seconds, warmup=plan.warmup)
        out["plain"] = {**run.summary(), "cpu_cores": cpu.cores(), "cpu_ms_per_request": cpu.ms_per(run.completed)}
        wrk_plain = await _wrk(port, _wrk_body(ctx), plan.wrk_seconds, plan.post_concurrency) if plan.wrk_seconds else None

    say("1. gateway POST /v1/widget/sessions alone (verifier and contacts stopped, the queue absorbs the opens)")
    assert stack.pool is not None
    since = await stack.pool.fetchval("SELECT clock_timestamp()")
    await stack.scale(verifiers=0, contacts=0)
    try:
        out["gateway_alone"] = await _gateway_post(ctx)
        backlog = await _backlog(ctx)
    finally:
        await stack.scale(verifiers=1, contacts=1)
    out["ratio_alone"] = _ratio(out["gateway_alone"]["per_second"], out["plain"]["per_second"])
    say(f"   {out['gateway_alone']['per_second']:.0f} req/s; 1 verifier + 1 contacts working off "
        f"{backlog['pending_sessions']} pending sessions ({backlog['queued_messages']} queued messages)")
    out["backlog_after_alone"] = {**backlog, **await _work_off(ctx)}
    out["gateway_alone"]["db"] = await phase_sessions(stack, since, ctx.bots)

    say("1. gateway POST /v1/widget/sessions with verifier and contacts consuming")
    since = await stack.pool.fetchval("SELECT clock_timestamp()")
    out["gateway"] = await _gateway_post(ctx)
    out["ratio"] = _ratio(out["gateway"]["per_second"], out["plain"]["per_second"])
    say("   waiting for the pipeline to work off the accepted opens")
    out["quiet_after"] = await stack.quiet(timeout=plan.backlog_timeout)
    out["gateway"]["db"] = await phase_sessions(stack, since, ctx.bots)
    if wrk_plain is not None:
        wrk_gateway = await _wrk(stack.gateway_port, _wrk_body(ctx), plan.wrk_seconds, plan.post_concurrency)
        out["wrk"] = {"plain": wrk_plain, "gateway": wrk_gateway}
        if wrk_plain["per_second"] and wrk_gateway and wrk_gateway["per_second"]:
            out["wrk"]["ratio"] = round(wrk_gateway["per_second"] / wrk_plain["per_second"], 3)
        out["quiet_after_wrk"] = await stack.quiet(timeout=180)
    return out


async def _gateway_post(ctx: Context) -> dict[str, Any]:
    """Closed-loop req/s of the gateway's widget-open POST (202 expected), with CPU per component."""
    plan = ctx.plan
    pool = ctx.gateway_pool()
    before = await _open_batches(ctx)
    with CpuMeter.of(ctx.metered()) as cpu:
        run = await closed_loop(pool, post_op(b"/v1/widget/sessions", ctx.bots[0]),
                                concurrency=plan.post_concurrency, seconds=plan.post_seconds, warmup=plan.warmup)
    pool.close()
    after = await _open_batches(ctx)
    flushes = after[1] - before[1]
    return {**run.summary(), "cpu_cores": cpu.cores(), "cpu_system_share": cpu.system_share(),
            "cpu_ms_per_request": cpu.ms_per(run.completed),
            "opens_per_insert": round((after[0] - before[0]) / flushes, 1) if flushes else None}


async def _open_batches(ctx: Context) -> tuple[float, float]:
    """(opens, INSERTs) the gateway has flushed so far, admitted and refused alike (its doorman_batch_items)."""
    async with aiohttp.ClientSession() as http, http.get(f"{ctx.stack.gateway_url}/metrics") as resp:
        text = await resp.text()
    samples = [s for family in text_string_to_metric_families(text) if family.name == "doorman_batch_items"
               for s in family.samples if s.labels.get("flush") in ("gateway opens", "gateway refusals")]
    return (sum(s.value for s in samples if s.name.endswith("_sum")),
            sum(s.value for s in samples if s.name.endswith("_count")))


async def _backlog(ctx: Context) -> dict[str, Any]:
    """What the pipeline has left to do: sessions pending (from the database) and messages ready in
    the verifier's queue (one message may carry several opens)."""
    stack = ctx.stack
    assert stack.pool is not None
    pending = await stack.pool.fetchval(
        "SELECT count(*) FROM widget_sessions WHERE status = 'pending' AND deadline_at < now() + interval '1 minute'")
    return {"pending_sessions": pending, "queued_messages": (await stack.queue_state(messaging.VERIFIER_QUEUE))[0]}


async def _work_off(ctx: Context) -> dict[str, Any]:
    """Wait (bounded by the plan's backlog timeout) until the queues are empty and no session is
    pending: how long that took, and whether it happened."""
    started = time.monotonic()
    quiet = await ctx.stack.quiet(timeout=ctx.plan.backlog_timeout)
    took = time.monotonic() - started
    if not quiet:
        say(f"   still not quiet after {took:.0f} s; the next phase starts on a busy stack")
    return {"seconds": round(took, 1), "quiet": quiet}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _wrk_body(ctx: Context) -> bytes:
    return json.dumps({"bot_id": ctx.bots[0], "access_token": "tok-7"}).encode()


# -- 2. end to end: saturation and latency at a fixed rate --------------------------------------------------


async def stages(stack: Stack, since: datetime) -> dict[str, Any]:
    """Where the time went, from the database's own clock: session row written -> resolved (the
    pipeline: broker, verifier, identity call, contacts), and the identity call alone."""
    assert stack.pool is not None
    row = await stack.pool.fetchrow(
        """SELECT count(*) AS n,
                  percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM resolved_at - created_at) * 1000) AS pipeline,
                  percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY auth_latency_ms) AS auth
           FROM widget_sessions WHERE created_at >= $1 AND resolved_at IS NOT NULL AND deadline_at < now() + interval '1 minute'""",
        since)
    r = lambda xs: [round(x, 1) for x in xs] if xs else None  # noqa: E731
    return {"sessions": row["n"], "db_open_to_resolved_ms_p50_p99": r(row["pipeline"]),
            "identity_call_ms_p50_p99": r(row["auth"])}


async def e2e_saturation(ctx: Context, label: str, seconds: float, op=None,  # type: ignore[no-untyped-def]
                         extra: tuple[Child, ...] = ()) -> dict[str, Any]:
    """Opens resolved per second, closed loop (each widget opens, waits for its outcome, opens again);
    ``op`` defaults to the widget's whole flow (POST, then the SSE stream); ``extra``: more processes
    whose CPU counts (an OpenID Provider)."""
    pool = ctx.gateway_pool()
    since = datetime.now(UTC)
    pids = {c.role: [x.pid for x in ctx.stack.running(c.role)] for c in ctx.stack.children}
    async with DbMeter(ctx.stack) as dbm, RssSampler(pids) as rss:
        with CpuMeter.of(ctx.metered(*extra)) as cpu:
            run = await closed_loop(pool, op or ctx.e2e_op(), concurrency=ctx.plan.e2e_concurrency, seconds=seconds,
                                    warmup=ctx.plan.warmup)
        pool.close()
        await ctx.stack.quiet()
    say(f"   {label}: {run.rate:.0f} resolved/s")
    return {**run.summary(), "concurrency": ctx.plan.e2e_concurrency, "stages": await stages(ctx.stack, since),
            "cpu_cores": cpu.cores(), "cpu_system_share": cpu.system_share(),
            "cpu_ms_per_open": cpu.ms_per(run.completed), "db_per_open": dbm.per(dbm_count(ctx, run)), "peak_rss_mb": {k: round(v / MB, 1) for k, v in rss.peak.items()}}


def dbm_count(ctx: Context, run) -> int:  # type: ignore[no-untyped-def]
    """Opens the database saw in a closed-loop phase: those measured plus warm-up and stragglers
    (approximated by scaling the measured rate to the whole phase)."""
    return round(run.rate * (run.seconds + ctx.plan.warmup))


async def fixed_rate(ctx: Context, rate: float, seconds: float) -> dict[str, Any]:
    pool = ctx.gateway_pool()
    since = datetime.now(UTC)
    with CpuMeter.of(ctx.metered()) as cpu:
        runs = await open_loop(pool, ctx.e2e_op(), rate=rate, seconds=seconds)
    pool.close()
    run = runs.get("all")
    return {"offered_per_second": rate, **(run.summary() if run else {}), "stages": await stages(ctx.stack, since),
            "cpu_cores": cpu.cores()}


async def end_to_end(ctx: Context) -> dict[str, Any]:
    """Saturation with the widget's usual flow, the same with the one-request mode (``?wait=``), and
    open->outcome latency at a fixed rate (open loop)."""
    plan = ctx.plan
    say("2. end to end at saturation (1 verifier + 1 contacts)")
    sat = await e2e_saturation(ctx, "1+1", plan.e2e_seconds)
    await ctx.stack.quiet()
    ctx.results["rss_after_load_mb"] = ctx.rss()
    say("2. end to end at saturation, signed identity tokens (HS256 JWTs, no call to the business)")
    sat_token = await e2e_signed_token_saturation(ctx)
    await ctx.stack.quiet()
    say("2. end to end at saturation, OpenID Connect (userinfo at a real provider: one Node.js process, same cores)")
    sat_oidc = await e2e_oidc_saturation(ctx)
    await ctx.stack.quiet()
    say(f"2. end to end at saturation, one-request mode: POST ?wait={plan.wait_seconds:g}, the stream only on a 202")
    sat_wait = await e2e_wait_saturation(ctx)
    await ctx.stack.quiet()
    say(f"2. end to end at a fixed {plan.fixed_rate:.0f} opens/s for {plan.fixed_seconds:.0f} s")
    fixed = await fixed_rate(ctx, plan.fixed_rate, plan.fixed_seconds)
    say(f"   p50 {fixed.get('p50_ms')} ms, p99 {fixed.get('p99_ms')} ms")
    await ctx.stack.quiet()
    return {"saturation": sat, "saturation_signed_token": sat_token, "saturation_oidc": sat_oidc,
            "saturation_wait": sat_wait, "fixed": fixed}


async def e2e_signed_token_saturation(ctx: Context) -> dict[str, Any]:
    """As the saturation above (same bots count, visitors, concurrency and client), with bots whose
    identity source is ``signed_token``: each open carries an HS256 JWT minted beforehand, verified
    in the verifier with no call to the business."""
    import math

    import jwt

    stack, plan = ctx.stack, ctx.plan
    bodies: list[bytes] = []
    secrets: list[tuple[str, dict[str, str]]] = []
    for i in range(plan.bots):
        bot = (await stack.admin("POST", "/v1/bots", {"name": f"bench token {i}"}))["bot_id"]
        await stack.admin("PUT", f"/v1/bots/{bot}/custom-auth", {
            "enabled": True, "identity_source": "signed_token", "identify_method": "id", "request_fields": [],
            "signed_token": {"algorithm": "HS256", "max_lifetime_seconds": 3600},
        })
        secrets.append((bot, await stack.admin("POST", f"/v1/bots/{bot}/custom-auth/token-secret", None)))
    now = int(time.time())
    # The (bot, visitor) pairs the callback variant's i % bots, i % visitors walk through, one token each.
    for i in range(math.lcm(plan.bots, plan.visitors)):
        bot, secret = secrets[i % plan.bots]
        n = i % plan.visitors
        token = jwt.encode({"sub": f"v-{n}", "name": f"Visitor {n}", "aud": bot, "iat": now, "exp": now + 3600},
                           secret["secret"], algorithm="HS256", headers={"kid": secret["kid"]})
        bodies.append(json.dumps({"bot_id": bot, "access_token": token}).encode())
    return await e2e_saturation(ctx, "signed token 1+1", plan.e2e_seconds, prepared_open_op(bodies))


async def e2e_oidc_saturation(ctx: Context) -> dict[str, Any] | None:
    """As the saturation above (same bots count, visitors, concurrency and client), with bots whose
    identity source is ``oidc``, method ``userinfo``, at a real OpenID Provider (bench/oidc.py: the
    tests' pinned panva oidc-provider, one Node.js process on the same cores, its CPU counted as
    ``provider``). Each visitor signs in there before the timed phase; each open's access token is
    then checked at the provider's userinfo endpoint (discovery is cached per issuer). None when
    Node.js or the provider's packages are missing (said, not installed)."""
    if why := oidc.missing():
        say(f"   skipped: {why}")
        return None
    stack, plan = ctx.stack, ctx.plan
    async with oidc.running(stack.env(), stack.log_dir) as (provider, op):
        bots = []
        for i in range(plan.bots):
            bot = (await stack.admin("POST", "/v1/bots", {"name": f"bench oidc {i}"}))["bot_id"]
            await stack.admin("PUT", f"/v1/bots/{bot}/custom-auth", {
                "enabled": True, "identity_source": "oidc", "identify_method": "id", "request_fields": [],
                "oidc": {"issuer": op.issuer, "method": "userinfo", "client_id": oidc.BOT_CLIENT},
            })
            bots.append(bot)
        started = time.monotonic()
        tokens = await oidc.access_tokens(op, [f"v-{n}" for n in range(plan.visitors)])
        signed_in = time.monotonic() - started
        say(f"   {len(tokens)} visitors signed in at the provider in {signed_in:.1f} s (before the timed phase)")
        sat = await e2e_saturation(ctx, "OpenID Connect userinfo 1+1", plan.e2e_seconds,
                                   prepared_open_op(oidc.open_bodies(bots, tokens)), extra=(provider,))
    # A busy or deadline fallback also ends an open (and counts in per_second): say how many were verified.
    verified = round(sat["outcomes"].get("verified", 0) / sat["seconds"], 1) if sat["seconds"] else None
    return {**sat, "verified_per_second": verified, "visitors_signed_in": len(tokens),
            "sign_in_seconds": round(signed_in, 1)}


def prepared_open_op(bodies: list[bytes]):  # type: ignore[no-untyped-def]
    """The widget's whole flow (POST, then the SSE stream to its outcome) with pre-made bodies."""
    from .client import loads, stream_outcome

    async def op(conn, i: int) -> str:  # type: ignore[no-untyped-def]
        status, body = await conn.request(b"POST", b"/v1/widget/sessions", bodies[i % len(bodies)])
        if status != 202:
            return f"http-{status}"
        return await stream_outcome(conn, loads(body)["session_id"].encode())
    return op


async def e2e_wait_saturation(ctx: Context) -> dict[str, Any]:
    """As the saturation above, each open POSTed with ``?wait=``: answered 200 with the outcome when
    it comes in time, else 202 and the SSE stream. ``answered`` counts the POSTs' statuses over the
    whole phase (warm-up included)."""
    bots = ctx.bots
    answered: Counter = Counter()
    op = doorman_wait_op(lambda i: bots[i % len(bots)], ctx.plan.wait_seconds, answered)
    sat = await e2e_saturation(ctx, f"?wait={ctx.plan.wait_seconds:g}", ctx.plan.e2e_seconds, op)
    return {**sat, "wait_seconds": ctx.plan.wait_seconds, "answered": dict(answered)}


# -- 3. the single-process direct reference --------------------------------------------------------------


async def direct_baseline(ctx: Context) -> dict[str, Any]:
    plan, stack = ctx.plan, ctx.stack
    bot = await stack.insert_bot("bench direct")
    async with reference_server(ctx, "direct", ["bench.direct", stack.database_url, ctx.customer_fast]) as (direct, pool, _):
        say("3. direct single-process reference at saturation")
        with CpuMeter.of(ctx.metered(direct)) as cpu:
            run = await closed_loop(pool, direct_op(str(bot)), concurrency=plan.e2e_concurrency,
                                    seconds=plan.e2e_seconds, warmup=plan.warmup)
        sat = {**run.summary(), "cpu_cores": cpu.cores(), "cpu_system_share": cpu.system_share(),
               "cpu_ms_per_open": cpu.ms_per(run.completed)}
        say(f"   {run.rate:.0f} resolved/s")
        say(f"3. direct reference at a fixed {plan.fixed_rate:.0f} opens/s")
        with CpuMeter.of(ctx.metered(direct)) as cpu:
            runs = await open_loop(pool, direct_op(str(bot)), rate=plan.fixed_rate, seconds=plan.fixed_seconds)
        fixed = {"offered_per_second": plan.fixed_rate, **runs["all"].summary(), "cpu_cores": cpu.cores()}
    return {"saturation": sat, "fixed": fixed}


# -- 4. contacts backlog drain vs a raw batched upsert ----------------------------------------------------


def _verified(bot: UUID, session_id: str, i: int) -> IdentityVerified:
    return IdentityVerified(
        correlation_id=uuid4().hex[:16], session_id=session_id, bot_id=bot, identify_method=IdentifyMethod.id,
        identity=Identity(identifier=f"d-{i}", id=f"d-{i}", name=f"Drained visitor {i}"), observed_at=utcnow(),
    )


async def _json_codec(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _drain(ctx: Context, n: int, *, per_message: int, on_start=None) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    stack = ctx.stack
    assert stack.pool is not None and stack.amqp is not None
    say(f"4. contacts backlog drain: {n} verified identities queued ({per_message} per message) with contacts stopped")
    await stack.scale(verifiers=1, contacts=0)
    bot = await stack.insert_bot("bench drain")
    sessions = await stack.insert_pending_sessions(bot, n, deadline_in=3600)
    events = [_verified(bot, s, i) for i, s in enumerate(sessions)]
    started = time.monotonic()
    async with messaging.publisher(stack.amqp, stack.topology) as publish:
        for i in range(0, n, 500 * per_message):
            chunk = events[i:i + 500 * per_message]
            await asyncio.gather(*(publish.many(chunk[j:j + per_message]) for j in range(0, len(chunk), per_message)))
    publish_s = time.monotonic() - started
    messages = -(-n // per_message)
    while (await stack.queue_state(messaging.CONTACTS_QUEUE))[0] < messages:
        await asyncio.sleep(0.1)

    dbm = DbMeter(stack)
    await dbm.__aenter__()
    child = await stack.start("contacts")
    if on_start is not None:
        on_start(child)
    with CpuMeter.of(ctx.metered()) as cpu:
        while (await stack.queue_state(messaging.CONTACTS_QUEUE))[1] < 1:
            if not child.alive:
                raise RuntimeError(f"contacts exited; see {child.log}")
            await asyncio.sleep(0.01)
        attached = datetime.now(UTC)
        deadline = time.monotonic() + 600
        while await stack.pool.fetchval(
                "SELECT count(*) FROM widget_sessions WHERE bot_id = $1 AND status = 'pending'", bot):
            if time.monotonic() > deadline:
                raise RuntimeError("the contacts backlog did not drain in 10 minutes")
            await asyncio.sleep(0.05)
    await dbm.__aexit__()
    last = await stack.pool.fetchval("SELECT max(resolved_at) FROM widget_sessions WHERE bot_id = $1", bot)
    contacts = await stack.pool.fetchval("SELECT count(*) FROM contacts WHERE bot_id = $1", bot)
    drain_s = (last - attached).total_seconds()
    say(f"   Doorman drained {n} in {drain_s:.2f} s ({n / drain_s:.0f}/s)")
    return {"events": n, "events_per_message": per_message, "seconds": round(drain_s, 3),
            "per_second": round(n / drain_s, 1), "contacts_created": contacts, "publish_seconds": round(publish_s, 2),
            "cpu_cores": cpu.cores(), "cpu_system_share": cpu.system_share(), "cpu_ms_per_event": cpu.ms_per(n),
            "db_per_event": dbm.per(n)}


async def backlog_drain(ctx: Context, *, events: int | None = None, on_start=None) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The contacts service working off a backlog, twice: one event per message (what retries and
    DLQ replays look like) and batches as the verifier emits them (up to its default of 256 events
    per message); then the raw upsert reference. ``on_start(child)`` is called once the contacts
    service is started for the first drain (the profiler hooks in there)."""
    plan, stack = ctx.plan, ctx.stack
    n = events or plan.drain_events
    doorman = await _drain(ctx, n, per_message=1, on_start=on_start)
    batched = await _drain(ctx, n, per_message=VERIFIER_EMIT_BATCH)
    events_list = [_verified(uuid4(), f"raw-{i}", i) for i in range(n)]
    say("4. raw batched asyncpg upsert of the same rows (same statement, batches of 100, one transaction each)")
    raw_bot = await stack.insert_bot("bench raw upsert")
    batch = int(os.environ.get("DOORMAN_CONTACTS_BATCH_SIZE", 100))
    rows = [
        (raw_bot, "id", e.identity.identifier, e.identity.id, e.identity.name, None, None, None, None, None, {},
         e.observed_at, e.event_id, {"external_id": "api", "name": "api"}, None, False, [], e.session_id)
        for e in events_list
    ]
    conn = await asyncpg.connect(stack.database_url)
    try:
        await _json_codec(conn)
        started = time.monotonic()
        for i in range(0, n, batch):
            async with conn.transaction():
                await conn.executemany(UPSERT_VERIFIED, rows[i:i + batch])
        raw_s = time.monotonic() - started
    finally:
        await conn.close()
    raw = {"rows": n, "batch": batch, "seconds": round(raw_s, 3), "per_second": round(n / raw_s, 1)}
    say(f"   raw upsert: {n / raw_s:.0f}/s")
    await stack.scale(verifiers=1, contacts=1)
    return {"doorman": doorman, "doorman_batched": batched, "raw_upsert": raw,
            "ratio": round(doorman["per_second"] / raw["per_second"], 3),
            "ratio_batched": round(batched["per_second"] / raw["per_second"], 3)}


# -- 5. isolation: one bot's customer API hangs ------------------------------------------------------------


async def isolation(ctx: Context, rate: float) -> dict[str, Any]:
    plan, stack = ctx.plan, ctx.stack
    hanging = await stack.create_bot("bench hanging", ctx.customer_fast)
    others = ctx.bots
    share = plan.isolation_share

    def bot_for(i: int) -> str:
        return hanging if i % share == 0 else others[(i // share) % len(others)]

    def label(i: int) -> str:
        return "hanging" if i % share == 0 else "others"

    op = doorman_open_op(bot_for)
    await stack.quiet()
    say(f"5. isolation, before: {rate:.0f} opens/s, every {share}th to one bot (its API still fast)")
    pool = ctx.gateway_pool()
    before = await open_loop(pool, op, rate=rate, seconds=plan.isolation_seconds, label_of=label)
    await stack.quiet()
    await stack.set_auth_url(hanging, ctx.customer_hang)
    await asyncio.sleep(1.0)  # the verifier's cache is told by NOTIFY
    say("5. isolation, during: that bot's API hangs (others' outcomes measured)")
    with CpuMeter.of(ctx.metered()) as cpu:
        during = await open_loop(pool, op, rate=rate, seconds=plan.isolation_seconds, label_of=label,
                                 skip=lambda i: i % share == 0)
    pool.close()
    b, d = before["others"].summary(), during["others"].summary()
    say(f"   others' p99: before {b['p99_ms']} ms, during {d['p99_ms']} ms")
    return {
        "offered_per_second": rate, "hanging_share": 1 / share,
        "before": {"others": b, "hanging_bot": before["hanging"].summary() if "hanging" in before else None},
        "during": {"others": d, "cpu_cores": cpu.cores(), "unfinished": during.get("all").unfinished if "all" in during else 0},
        "ratio": round(d["p99_ms"] / b["p99_ms"], 3) if b["p99_ms"] and d["p99_ms"] else None,
    }


# -- 6. memory: many widgets waiting -------------------------------------------------------------------------


async def waiting_streams(ctx: Context) -> dict[str, Any]:
    stack = ctx.stack
    n = ctx.plan.streams
    assert stack.pool is not None
    await stack.quiet(timeout=ctx.plan.settle_timeout)
    gateway = stack.running("gateway")[0]
    bot = await stack.insert_bot("bench streams")
    sessions = await stack.insert_pending_sessions(bot, n, deadline_in=900)
    rss_before = rss_bytes(gateway.pid)
    say(f"6. {n} concurrent SSE streams on pending sessions")
    started = time.monotonic()
    held = 0
    with CpuMeter.of(ctx.metered()) as connect_cpu:
        conns, problems, _ = await hold_streams("127.0.0.1", stack.gateway_port, sessions,
                                                timeout=ctx.plan.streams_timeout)
        while time.monotonic() - started < ctx.plan.streams_timeout:
            held = await stack.pool.fetchval(
                "SELECT count(*) FROM widget_sessions WHERE bot_id = $1 AND watcher IS NOT NULL", bot)
            if held >= n:
                break
            await asyncio.sleep(0.25)
    took = time.monotonic() - started
    say(f"   {held} streams held by the gateway after {took:.1f} s; holding")
    async with RssSampler({"gateway": [gateway.pid]}) as rss:
        with CpuMeter.of(ctx.metered()) as hold_cpu:
            await asyncio.sleep(max(4.0, ctx.plan.post_seconds))
    for c in conns:
        c.close()
    # End the sessions so the gateway's stream handlers (re-reading the database) finish at once.
    await stack.pool.execute(
        "UPDATE widget_sessions SET status = 'fallback', reason = 'internal_error', detail = 'bench', resolved_at = now() "
        "WHERE bot_id = $1 AND status = 'pending'", bot)
    await asyncio.sleep(3.0)
    plain = await _plain_streams(ctx, n)
    return {
        "plain": plain,
        "gateway_kb_per_stream_above_plain": (
            round((rss.peak["gateway"] - rss_before) / 1024 / max(1, len(conns)) - plain["kb_per_stream"], 1)
            if plain["held"] else None),
        "streams": n, "open": held, "problems": dict(problems),
        "connect_seconds": round(took, 1), "gateway_rss_before_mb": round(rss_before / MB, 1),
        "gateway_rss_peak_mb": round(rss.peak["gateway"] / MB, 1),
        "gateway_kb_per_stream": round((rss.peak["gateway"] - rss_before) / 1024 / max(1, len(conns)), 1),
        "connections": len(conns),
        "cpu_cores_while_connecting": connect_cpu.cores(), "cpu_cores_while_holding": hold_cpu.cores(),
        "gateway_rss_after_mb": round(rss_bytes(gateway.pid) / MB, 1),
    }


async def _plain_streams(ctx: Context, n: int) -> dict[str, Any]:
    """Reference 6: a plain aiohttp server (bench/plain.py) holding ``n`` streams the same way, one
    connection and request each, one future per stream: what aiohttp itself costs per waiting widget."""
    async with reference_server(ctx, "plain", ["bench.plain"]) as (plain, pool, port):
        say(f"6. plain aiohttp holding {n} streams")
        rss_before = rss_bytes(plain.pid)
        conns, problems, _ = await hold_streams("127.0.0.1", port, [f"s{i}" for i in range(n)],
                                                timeout=ctx.plan.streams_timeout)
        held, started = 0, time.monotonic()
        conn = await pool.acquire()
        while time.monotonic() - started < ctx.plan.streams_timeout:
            held = json.loads((await conn.request(b"GET", b"/held"))[1])["held"]
            if held >= n:
                break
            await asyncio.sleep(0.25)
        pool.release(conn)
        async with RssSampler({"plain": [plain.pid]}) as rss:
            await asyncio.sleep(2.0)
        for c in conns:
            c.close()
    return {"held": held, "problems": dict(problems), "rss_before_mb": round(rss_before / MB, 1),
            "rss_peak_mb": round(rss.peak["plain"] / MB, 1),
            "kb_per_stream": round((rss.peak["plain"] - rss_before) / 1024 / max(1, len(conns)), 1)}


# -- 7. scale-out ---------------------------------------------------------------------------------------------


async def scale_out(ctx: Context) -> dict[str, Any]:
    say("7. scale-out: 2 verifiers + 2 contacts")
    await ctx.stack.scale(verifiers=2, contacts=2)
    try:
        sat = await e2e_saturation(ctx, "2+2", ctx.plan.scale_seconds)
    finally:
        await ctx.stack.quiet()
        await ctx.stack.scale(verifiers=1, contacts=1)
    return sat


# -- 8. overload: twice the saturation rate, open loop ---------------------------------------------------------


OVERLOAD_COUNTS = ("verified", "fallback:busy", "fallback:other", "http-503", "errors", "unfinished")


def overload_counts(run: Run) -> dict[str, int]:
    """Each offered open once: verified, refused with the busy fallback, any other fallback, refused
    with a 503, failed (a client-side error or an unexpected answer), or still running at the drain
    timeout."""
    counts = dict.fromkeys(OVERLOAD_COUNTS, 0)
    for label, n in run.outcomes.items():
        if label in ("verified", "fallback:busy", "http-503"):
            counts[label] += n
        elif label.startswith("fallback:"):
            counts["fallback:other"] += n
        else:  # other HTTP statuses, a stream without an outcome, ...
            counts["errors"] += n
    counts["errors"] += sum(run.errors.values())
    counts["unfinished"] = run.unfinished
    return counts


def time_to_answer(run: Run) -> dict[str, Any]:
    """p50/p95/p99 from each open's scheduled time to its answer (an outcome of any kind, or the
    POST's refusal). An open still running at the drain timeout counts with the time it had waited
    when cancelled: a lower bound, so unfinished opens can only raise the percentiles."""
    waits = run.latencies_ms + run.cancelled_after_ms
    return {"answered": len(run.latencies_ms), "unfinished_counted": len(run.cancelled_after_ms),
            **{f"p{p}_ms": percentile(waits, p) for p in (50, 95, 99)},
            "max_ms": round(max(waits), 1) if waits else None}


async def phase_sessions(stack: Stack, since: datetime, bots: list[str], grace: float = 2.0) -> dict[str, Any]:
    """From the database: the sessions a phase created (since ``since``, the database's clock, for
    these bots), by outcome (``fallback:busy``: refused by admission control when opened), and how
    many were resolved more than ``grace`` seconds after their deadline (or are still pending that late)."""
    assert stack.pool is not None
    rows = await stack.pool.fetch(
        """SELECT status, reason, count(*) AS n,
                  count(*) FILTER (WHERE coalesce(resolved_at, clock_timestamp()) > deadline_at + make_interval(secs => $3)) AS late
           FROM widget_sessions WHERE created_at >= $1 AND bot_id = ANY($2::uuid[])
           GROUP BY status, reason""",
        since, [UUID(b) for b in bots], grace)
    by_outcome = {(r["status"] if r["status"] != "fallback" else f"fallback:{r['reason']}"): r["n"] for r in rows}
    return {"sessions": sum(r["n"] for r in rows), "late": sum(r["late"] for r in rows), "late_grace_seconds": grace,
            "by_outcome": by_outcome}


async def cpu_for(children: list[Child], seconds: float) -> CpuMeter:
    """CPU per component over the next ``seconds`` (e.g. an open-loop schedule, without its drain)."""
    with CpuMeter.of(children) as cpu:
        await asyncio.sleep(seconds)
    return cpu


async def overload(ctx: Context, rate: float, source: str, path: str = "wait") -> dict[str, Any]:
    """One client path's whole flow (``path``, one of ``CLIENT_PATHS``: ``wait`` is widget.js's POST
    ?wait=3 then the SSE stream only if the outcome was not in the answer; ``sse`` POST then the
    stream; ``poll`` POST then GET every 0.2 s), offered open loop at
    ``rate`` for the plan's overload seconds. Measures how each open was answered, the time to an
    answer, the verified outcomes finished inside the window per second (goodput), the CPU per
    component over the window (and with the drain), the kernel's TCP counters (connections that
    waited in or were dropped from the gateway's accept queue), and from the database the sessions
    resolved late."""
    plan, stack = ctx.plan, ctx.stack
    assert stack.pool is not None
    await stack.quiet(timeout=plan.settle_timeout)
    say(f"8. overload ({path}): {rate:.0f} opens/s ({source}) for {plan.overload_seconds:g} s, open loop, whole flow")
    answered: Counter = Counter()
    since = await stack.pool.fetchval("SELECT clock_timestamp()")
    pool = ctx.gateway_pool()
    tcp_before = tcp_counters()
    with CpuMeter.of(ctx.metered()) as phase_cpu:
        runs, cpu = await asyncio.gather(
            open_loop(pool, ctx.client_op(path, answered), rate=rate, seconds=plan.overload_seconds,
                      drain_timeout=plan.overload_drain),
            cpu_for(ctx.metered(), plan.overload_seconds))
    tcp_after = tcp_counters()
    pool.close()
    run = runs.get("all") or Run(plan.overload_seconds)
    verified_in_window = run.in_window["verified"]
    out: dict[str, Any] = {
        "path": path, "offered_per_second": rate, "rate_source": source, "seconds": plan.overload_seconds,
        "post_answered": dict(answered),
        "offered": int(rate * plan.overload_seconds), "counts": overload_counts(run),
        "time_to_answer": time_to_answer(run),
        "time_to_answer_by_second": {second: {f"p{p}_ms": percentile(ms, p) for p in (50, 99)}
                                     for second, ms in sorted(run.by_second_ms.items())},
        "client_start_lag_ms": {f"p{p}": percentile(run.start_lag_ms, p) for p in (50, 99)},
        "time_to_answer_by_outcome": {label: {f"p{p}_ms": percentile(ms, p) for p in (50, 99)}
                                      for label, ms in run.latencies_by_outcome_ms.items()},
        "verified_in_window": verified_in_window,
        "goodput_per_second": round(verified_in_window / plan.overload_seconds, 1),
        "outcomes": dict(run.outcomes), "errors": dict(run.errors), "in_window": dict(run.in_window),
        "cpu_cores": cpu.cores(), "cpu_system_share": cpu.system_share(), "cpu_cores_with_drain": phase_cpu.cores(),
        "tcp": {k: tcp_after[k] - tcp_before.get(k, 0) for k in tcp_after},
    }
    t = out["time_to_answer"]
    say(f"   answers p50 {t['p50_ms']} ms, p99 {t['p99_ms']} ms; {out['counts']}")
    backlog = await _backlog(ctx)
    say(f"   waiting for the pipeline to work off what is left ({backlog['pending_sessions']} sessions pending)")
    out["backlog_after"] = {**backlog, **await _work_off(ctx)}
    out["db"] = await phase_sessions(stack, since, ctx.bots, plan.late_grace)
    out["late"] = out["db"]["late"]
    say(f"   {out['late']} of {out['db']['sessions']} sessions resolved later than deadline + {plan.late_grace:g} s")
    return out
