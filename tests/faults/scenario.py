"""Steady widget traffic through the real stack while a fault strikes, then the count.

Every accepted (202) widget open must end in exactly one terminal status (verified, fallback, or
ended: some visitors log out, while pending or after their outcome, and stay logged out); every
identity a verifier published (broker-confirmed) must become a contact; nothing is duplicated.
Late (resolved after the visitor's deadline) is reported, not forbidden.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import time
from collections import Counter
from datetime import UTC, datetime
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg
from cryptography.fernet import Fernet

from doorman.ops import RETRY_DELAYS
from shared import messaging
from shared.logging import session_ref
from tests.fake_customer import Answer, FakeCustomerAPI, verified
from tests.faults.infra import PgCluster, RabbitCluster, RabbitNode, Service, free_port
from tests.waits import wait_until

FULL = bool(os.environ.get("DOORMAN_FAULTS_FULL"))
RATE = float(os.environ.get("DOORMAN_FAULTS_RATE", 80 if FULL else 30))  # widget opens per second
DURATION = float(os.environ.get("DOORMAN_FAULTS_SECONDS", 30 if FULL else 6))
DEADLINE = 8.0  # the visitor's deadline in these runs
IDENTIFIERS = 40  # distinct visitors per bot: the same person comes back often
LOGOUT_EVERY = 10  # every tenth accepted open logs out (DELETE) 0 to 0.8 s later: some pending, some resolved
RETURNING = 8  # with `returning`: every other open per bot is one of this many visitors reusing their token
OUTAGE_SECONDS = 30.0 if FULL else 4.0
WEBHOOK_RETRY_DELAYS = (0.5, 1.0, 2.0)  # "the business's API goes down for 30 s" (shorter in the quick run)
ADMIN_TOKEN = "faults-admin-token-" + secrets.token_hex(8)
SECRET_KEY = Fernet.generate_key().decode()


@dataclass
class Result:
    fault: str
    accepted: int = 0
    refused_503: int = 0
    other_errors: int = 0
    verified: int = 0
    fallback: dict[str, int] = field(default_factory=dict)
    ended: int = 0  # final status `ended`
    logged_out: int = 0  # DELETEs answered 204
    not_ended: int = 0  # logged out (204) but not `ended` at the end: must be 0
    ended_while_pending: int = 0  # of those ended, how many before their outcome (the race exercised)
    half_accepted: int = 0  # sessions stored although the widget was refused
    lost_sessions: int = 0
    lost_contacts: int = 0
    duplicated: int = 0
    late: int = 0
    dead_letters: int = 0
    seconds: float = 0.0
    # With the business's API down (`outage`): verified from the grace cache, and how each kind of visitor
    # who opened during the outage ended.
    degraded: int = 0
    outage_returning: int = 0  # opens by visitors whose token was verified before the outage
    outage_returning_verified: int = 0
    outage_new: int = 0  # opens with a token never verified before the outage
    outage_new_unavailable: int = 0
    wrongly_degraded: int = 0  # degraded with a token the business had not verified before: must be 0
    # What visitors saw while the fault struck (from its start until 3 s after it ended; the whole run
    # without a fault): opens tried and refused, how long an open took to answer, and to its outcome.
    fault_opens: int = 0
    fault_503: int = 0
    fault_open_ms: tuple[int, int, int] = (0, 0, 0)  # p50, p99, max
    fault_outcome_s: tuple[float, float] = (0.0, 0.0)  # p50, p99 of accepted opens, open to outcome
    # The widget's time to an answer: from sending its open to its outcome (verified or fallback; a 503 is its
    # answer too). A session the visitor ended while pending had no answer to wait for: not counted.
    fault_answer_s: tuple[float, float, float] = (0.0, 0.0, 0.0)  # p50, p99, max
    replicas: dict[str, int] = field(default_factory=dict)  # broker cluster: members of each work queue
    failovers: int = 0  # broker cluster: service connections that moved to another node during the fault
    # With `webhooks`: every bot's webhook on (all events); what was recorded, and how it reached the endpoint.
    webhooks: int = 0  # deliveries recorded
    webhooks_lost: int = 0  # recorded but never answered 2xx by the endpoint, or an announcement never recorded
    webhooks_duplicated: int = 0  # a second delivery id for the same change (not a retry of one id): must be 0
    webhook_repeats: int = 0  # POSTs repeating an id already answered 2xx (at least once: allowed, reported)
    webhooks_retried: int = 0  # deliveries that needed more than one attempt (the endpoint was down)


@dataclass
class Cluster:
    rabbit: RabbitNode | RabbitCluster
    pg: PgCluster
    database: str
    customer_api: FakeCustomerAPI
    log_dir: Path
    prefix: str = field(default_factory=lambda: f"faults-{secrets.token_hex(3)}")
    gateway_port: int = field(default_factory=free_port)
    services: dict[str, list[Service]] = field(default_factory=dict)
    api_down: bool = False  # every bot's Authentication URL answers 503
    webhook_down: bool = False  # every bot's webhook endpoint answers 503
    webhook_ok: list[str] = field(default_factory=list)  # delivery ids the webhook endpoint answered 2xx, in order
    outage: tuple[datetime, datetime] | None = None  # when it went down and came back
    samples: list[tuple[float, float, int]] = field(default_factory=list)  # open: (sent at, seconds, status)
    sent: dict[str, float] = field(default_factory=dict)  # accepted session -> when its open was sent (epoch s)
    window: tuple[float, float] | None = None  # when the fault struck (epoch seconds), for the latencies
    replicas: dict[str, int] = field(default_factory=dict)  # broker cluster: members of each work queue

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ, "DOORMAN_ENVIRONMENT": "test", "DOORMAN_AMQP_URL": self.rabbit.urls,
            "DOORMAN_AMQP_PREFIX": self.prefix, "DOORMAN_DATABASE_URL": self.pg.url(self.database),
            "DOORMAN_SECRET_KEY": SECRET_KEY,
            "DOORMAN_ADMIN_TOKEN": ADMIN_TOKEN, "DOORMAN_ALLOW_PRIVATE_NETWORKS": "true", "DOORMAN_OUTBOUND_PORTS": "*",
            "DOORMAN_AUTH_TIMEOUT_SECONDS": "1", "DOORMAN_SESSION_DEADLINE_SECONDS": str(DEADLINE),
            "DOORMAN_GATEWAY_PORT": str(self.gateway_port), "DOORMAN_VERIFIER_PORT": "0",
            "DOORMAN_CONTACTS_PORT": "0", "DOORMAN_RATE_LIMIT_OPENS_PER_CLIENT": "1000000/minute",
            "DOORMAN_RATE_LIMIT_OPENS_PER_BOT": "1000000/minute", "DOORMAN_RATE_LIMIT_READS_PER_CLIENT": "1000000/minute", "DOORMAN_LOG_JSON": "true", "DOORMAN_DB_POOL_MAX": "10",
            # Webhook deliveries back off for seconds here (a day in production).
            "DOORMAN_WEBHOOK_RETRY_DELAYS": ",".join(str(d) for d in WEBHOOK_RETRY_DELAYS),
            "DOORMAN_WEBHOOK_MAX_ATTEMPTS": "40", "DOORMAN_WEBHOOK_TIMEOUT_SECONDS": "2",
        }

    async def start(self, *, verifiers: int = 2, contacts: int = 2, gateway_first: bool = False,
                    before_workers: Callable[[], Awaitable[None]] | None = None) -> None:
        """``gateway_first``: the gateway declares the queues before the workers start, so on a
        broker cluster their leaders are on the gateway's node (quorum queues start on the
        declaring connection's node). ``before_workers`` runs once the gateway is ready, before the
        workers start."""
        env = self.env()
        self.services = {
            name: [Service(name, env, self.log_dir, i) for i in range(count)]
            for name, count in (("gateway", 1), ("verifier", verifiers), ("contacts", contacts))
        }
        if gateway_first or before_workers:
            await self.services["gateway"][0].start()
            await self.wait_ready(workers=False)
        if before_workers:
            await before_workers()
        await asyncio.gather(*(s.start() for group in self.services.values() for s in group if s.proc is None))
        await self.wait_ready()

    async def _ready(self, http: aiohttp.ClientSession) -> bool:
        try:
            async with http.get(f"{self.gateway_url}/readyz") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    async def wait_ready(self, timeout: float = 60, *, workers: bool = True) -> None:
        async with aiohttp.ClientSession() as http:
            await wait_until(lambda: self._ready(http), timeout, "the gateway's /readyz to answer 200")
        if workers:
            await self.wait_consumers({name: len(self.services[name]) for name in ("verifier", "contacts")}, timeout)

    async def wait_unready(self, timeout: float = 60) -> None:
        """Until the gateway's /readyz says a dependency is gone (an outage seen by the stack)."""
        async with aiohttp.ClientSession() as http:
            async def unready() -> bool:
                return not await self._ready(http)

            await wait_until(unready, timeout, "the gateway's /readyz to see the outage")

    async def wait_consumers(self, expected: dict[str, int], timeout: float = 60) -> None:
        """Until the work queue of each service ("verifier", "contacts") has exactly the expected consumers."""
        queues = {"verifier": messaging.VERIFIER_QUEUE, "contacts": messaging.CONTACTS_QUEUE}
        async with aiohttp.ClientSession() as http:
            async def counted() -> bool:
                try:
                    return all([(await self.queue_info(http, queues[name]))["consumers"] == count
                                for name, count in expected.items()])
                except (aiohttp.ClientError, KeyError):
                    return False

            await wait_until(counted, timeout, f"consumers {expected}")

    async def queue_info(self, http: aiohttp.ClientSession, name: str) -> dict[str, Any]:
        queue = messaging.Topology(self.prefix).queue(name) if "." in name and not name.startswith(self.prefix) else name
        async with http.get(f"{self.rabbit.management_url}/api/queues/%2F/{queue}",
                            headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()}) as resp:
            return await resp.json()

    async def stop(self) -> list[int | None]:
        return list(await asyncio.gather(*(s.terminate() for g in self.services.values() for s in g)))


def identifier(token: str) -> str:
    return f"u-{int(token.rsplit('-', 1)[1]) % IDENTIFIERS}"


async def _admin(http: aiohttp.ClientSession, method: str, url: str, body: Any) -> Any:
    async with http.request(method, url, json=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as resp:
        assert resp.status in (200, 201), await resp.text()
        return await resp.json()


async def make_bots(cluster: Cluster, http: aiohttp.ClientSession, *, hanging: int = 0, count: int = 3,
                    grace: int = 0, webhooks: bool = False) -> list[tuple[str, bool]]:
    bots = []
    for i in range(count):
        hangs = i < hanging

        def answer(body: Any, hangs: bool = hangs) -> Answer:
            if hangs:
                return Answer(json={}, delay=30)
            if cluster.api_down:
                return Answer(status=503, json={})
            token = body["access_token"]
            return verified(id=identifier(token), name=f"Visitor {identifier(token)}")

        url = cluster.customer_api.responder(answer)
        bot = await _admin(http, "POST", f"{cluster.gateway_url}/v1/bots", {"name": f"faults {i}"})
        await _admin(http, "PUT", f"{cluster.gateway_url}/v1/bots/{bot['bot_id']}/custom-auth",
                     {"enabled": True, "auth_url": url, "header_token": "Bearer faults", "outage_grace_seconds": grace})
        if webhooks:
            await _admin(http, "PUT", f"{cluster.gateway_url}/v1/bots/{bot['bot_id']}/webhook",
                         {"url": webhook_endpoint(cluster), "enabled": True,
                          "events": ["contact.created", "contact.updated", "contact.erased", "session.fell_back"]})
        bots.append((bot["bot_id"], hangs))
    return bots


def webhook_endpoint(cluster: Cluster) -> str:
    """The business's webhook endpoint: 503 while ``cluster.webhook_down``, else 200 (recording the id)."""
    def answer(body: Any) -> Answer:
        if cluster.webhook_down:
            return Answer(status=503, json={})
        cluster.webhook_ok.append(body["id"])
        return Answer(json={"ok": True})
    return cluster.customer_api.responder(answer)


async def webhook_endpoint_down(cluster: Cluster) -> None:
    """The business's webhook endpoint answers 503 to every delivery for OUTAGE_SECONDS."""
    cluster.webhook_down = True
    await asyncio.sleep(OUTAGE_SECONDS)  # time is the subject: an outage of this length
    cluster.webhook_down = False


async def count_webhooks(pool: asyncpg.Pool, bots: list[tuple[str, bool]], answered: list[str], result: Result,
                         timeout: float) -> None:
    """Once no delivery is pending (or ``timeout``): every recorded delivery answered 2xx by the endpoint under
    its own id; every contact announced as created and every fallback as fell back, once each."""
    ids = [bot for bot, _ in bots]

    async def none_pending() -> bool:
        return not await pool.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE bot_id = ANY($1::uuid[]) AND status = 'pending'", ids)

    with suppress(TimeoutError):  # what is still pending is counted as lost
        await wait_until(none_pending, timeout, "no delivery pending")
    rows = await pool.fetch("SELECT delivery_id, status, attempts FROM webhook_deliveries WHERE bot_id = ANY($1::uuid[])",
                            ids)
    ok = Counter(answered)
    result.webhooks = len(rows)
    result.webhooks_lost = sum(1 for r in rows if r["status"] != "delivered" or str(r["delivery_id"]) not in ok)
    result.webhook_repeats = sum(n - 1 for n in ok.values())
    result.webhooks_retried = sum(1 for r in rows if r["attempts"] > 1)
    result.webhooks_lost += await pool.fetchval(
        """SELECT count(*) FROM contacts c WHERE c.bot_id = ANY($1::uuid[]) AND NOT EXISTS (
               SELECT 1 FROM webhook_deliveries d WHERE d.contact_id = c.contact_id AND d.type = 'contact.created')""", ids)
    result.webhooks_lost += await pool.fetchval(
        """SELECT count(*) FROM widget_sessions s WHERE s.bot_id = ANY($1::uuid[]) AND s.status = 'fallback'
             AND s.reason <> 'busy'  -- refused at the gateway under overload: not announced (shed, not decided)
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.session_id = s.session_id)""", ids)
    result.webhooks_duplicated = await pool.fetchval(
        """SELECT count(*) FROM (SELECT 1 FROM webhook_deliveries WHERE bot_id = ANY($1::uuid[])
                                   AND type IN ('contact.created', 'session.fell_back')
                                 GROUP BY type, contact_id, session_id HAVING count(*) > 1) d""", ids)


async def drive(cluster: Cluster, http: aiohttp.ClientSession, bots: list[tuple[str, bool]],
                result: Result, until: asyncio.Event, returning: bool = False,
                logged_out: set[str] | None = None) -> dict[str, tuple[str, str]]:
    """Open widgets at RATE per second for at least DURATION seconds and until ``until`` is set;
    returns session -> (bot, token). With ``returning``, every other open of a bot reuses the token of
    one of RETURNING visitors (a visitor coming back), the others carry a token never seen. Every
    LOGOUT_EVERY-th open logs out a little later; the sessions whose DELETE said 204 go in ``logged_out``."""
    logged_out = set() if logged_out is None else logged_out
    accepted: dict[str, tuple[str, str]] = {}
    interval, n = 1.0 / RATE, 0
    started = time.monotonic()
    tasks: set[asyncio.Task[None]] = set()

    async def one(bot: str, token: str, n: int) -> None:
        sent, status, session_id = time.time(), 0, None
        try:
            async with http.post(f"{cluster.gateway_url}/v1/widget/sessions", json={"bot_id": bot, "access_token": token},
                                 timeout=aiohttp.ClientTimeout(total=15)) as resp:
                status = resp.status
                if resp.status == 202:
                    session_id = (await resp.json())["session_id"]
                    accepted[session_id] = (bot, token)
                    cluster.sent[session_id] = sent
                elif resp.status == 503:
                    result.refused_503 += 1
                else:
                    result.other_errors += 1
        except (aiohttp.ClientError, asyncio.TimeoutError):
            result.other_errors += 1
        finally:
            cluster.samples.append((sent, time.time() - sent, status))
        if session_id is not None and n % LOGOUT_EVERY == 0:
            # time is the subject: 0 to 0.8 s after the open, so that some log out pending and some resolved
            await asyncio.sleep(n // LOGOUT_EVERY % 5 * 0.2)
            try:
                async with http.delete(f"{cluster.gateway_url}/v1/widget/sessions/{session_id}",
                                       timeout=aiohttp.ClientTimeout(total=15)) as resp:
                    if resp.status == 204:
                        logged_out.add(session_id)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass  # not known to be logged out: counted as whatever it ends as

    while time.monotonic() - started < DURATION or not until.is_set():
        bot, _ = bots[n % len(bots)]
        turn = n // len(bots)
        token = f"{bot[:8]}-r-{turn // 2 % RETURNING}" if returning and turn % 2 == 0 else f"{bot[:8]}-{n}"
        task = asyncio.create_task(one(bot, token, n))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        n += 1
        await asyncio.sleep(max(0.0, started + n * interval - time.monotonic()))  # time is the subject: RATE per second
    await asyncio.gather(*tasks)
    return accepted


async def settle(cluster: Cluster, pool: asyncpg.Pool, sessions: list[str], timeout: float) -> None:
    """Wait until every accepted session has its outcome and the work and retry queues are empty."""
    topology = messaging.Topology(cluster.prefix)
    queues = [q for name in messaging.WORK_QUEUES
              for q in (topology.queue(name), *topology.retry_queues(name, RETRY_DELAYS[name]))]
    async with aiohttp.ClientSession() as http:
        async def settled() -> bool:
            try:
                pending = await pool.fetchval(
                    "SELECT count(*) FROM widget_sessions WHERE session_id = ANY($1) AND status = 'pending'", sessions)
                backlog = sum([(await cluster.queue_info(http, q)).get("messages", 0) for q in queues])
            except (OSError, aiohttp.ClientError, asyncpg.PostgresError, asyncpg.InterfaceError):
                return False  # a dependency is still coming back
            return pending == 0 and backlog == 0

        with suppress(TimeoutError):  # what is still pending is counted as lost
            await wait_until(settled, timeout, "every session resolved and the queues empty")


def _log_lines(cluster: Cluster, service: str) -> list[dict[str, Any]]:
    lines = []
    for s in cluster.services[service]:
        for raw in s.log.read_text(errors="replace").splitlines():
            if raw.startswith("{"):
                try:
                    lines.append(json.loads(raw))
                except ValueError:
                    pass
    return lines


async def count(cluster: Cluster, pool: asyncpg.Pool, accepted: dict[str, tuple[str, str]],
                bots: list[tuple[str, bool]], result: Result, logged_out: set[str] = frozenset()) -> None:
    sessions = list(accepted)
    rows = await pool.fetch(
        """SELECT session_id, status, reason, resolved_at > deadline_at AS late, degraded, created_at, resolved_at,
                  contact_id IS NOT NULL AND reason IS NULL AS was_verified,
                  ended_at IS NOT NULL AND resolved_at = ended_at AS ended_while_pending
           FROM widget_sessions WHERE session_id = ANY($1)""",
        sessions)
    by_id = {r["session_id"]: r for r in rows}
    result.accepted = len(sessions)
    result.lost_sessions = sum(1 for s in sessions if s not in by_id or by_id[s]["status"] == "pending")
    result.verified = sum(1 for r in rows if r["status"] == "verified")
    result.fallback = dict(Counter(r["reason"] for r in rows if r["status"] == "fallback"))
    result.ended = sum(1 for r in rows if r["status"] == "ended")
    result.logged_out = len(logged_out)
    result.not_ended = sum(1 for s in logged_out if s not in by_id or by_id[s]["status"] != "ended")
    result.late = sum(1 for r in rows if r["late"])
    result.degraded = sum(1 for r in rows if r["degraded"])
    if cluster.outage is not None:
        count_outage(cluster.outage, accepted, rows, result)
    count_window(cluster, rows, result)
    if cluster.window is not None:  # connections (re)made to the broker after the fault struck
        result.failovers = sum(
            1 for service in cluster.services for line in _log_lines(cluster, service)
            if line.get("event") == "broker connected"
            and datetime.fromisoformat(line["timestamp"]).timestamp() >= cluster.window[0])
    result.half_accepted = await pool.fetchval(
        "SELECT count(*) FROM widget_sessions WHERE bot_id = ANY($1::uuid[]) AND NOT session_id = ANY($2)",
        [bot for bot, _ in bots], sessions)

    # Exactly one terminal status: each session was resolved by exactly one writer, once, or ended while
    # still pending (then no outcome may resolve it afterwards); ending a resolved session is not a second one.
    resolutions = Counter(
        line["session_ref"] for service in ("contacts", "gateway") for line in _log_lines(cluster, service)
        if line.get("event") in ("session resolved", "session swept: never resolved", "session expired on read")
        or (line.get("event") == "session ended" and line.get("was") == "pending")
    )
    result.duplicated = sum(1 for s in sessions if resolutions[session_ref(s)] > 1)
    result.ended_while_pending = sum(1 for line in _log_lines(cluster, "gateway")
                                     if line.get("event") == "session ended" and line.get("was") == "pending")
    result.duplicated += await pool.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM contacts GROUP BY bot_id, identify_method, identifier, external_workspace_id HAVING count(*) > 1) d")

    # No contact lost: every identity a verifier published (after the broker's confirm) is stored.
    published = {line["session_ref"] for line in _log_lines(cluster, "verifier") if line.get("event") == "session verified"}
    expected = {(bot, identifier(token)) for sid, (bot, token) in accepted.items() if session_ref(sid) in published}
    stored = {(str(r["bot_id"]), r["identifier"]) for r in await pool.fetch("SELECT bot_id, identifier FROM contacts")}
    result.lost_contacts = len(expected - stored)

    result.dead_letters = await dead_letters(cluster)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def count_window(cluster: Cluster, rows: list[asyncpg.Record], result: Result) -> None:
    """What visitors saw while the fault struck: refusals, open latency, time to outcome, time to an answer."""
    start, end = cluster.window or (float("-inf"), float("inf"))
    samples = [(seconds, status) for sent, seconds, status in cluster.samples if start <= sent <= end]
    result.fault_opens = len(samples)
    result.fault_503 = sum(1 for _, status in samples if status == 503)
    answered = [seconds * 1000 for seconds, _ in samples]
    result.fault_open_ms = (round(_quantile(answered, 0.5)), round(_quantile(answered, 0.99)), round(max(answered, default=0)))
    outcomes = [(r["resolved_at"] - r["created_at"]).total_seconds() for r in rows
                if r["resolved_at"] is not None and start <= r["created_at"].timestamp() <= end]
    result.fault_outcome_s = (round(_quantile(outcomes, 0.5), 2), round(_quantile(outcomes, 0.99), 2))
    answers = [r["resolved_at"].timestamp() - cluster.sent[r["session_id"]] for r in rows
               if r["resolved_at"] is not None and not r["ended_while_pending"]
               and start <= cluster.sent[r["session_id"]] <= end]
    answers += [seconds for seconds, status in samples if status == 503]
    result.fault_answer_s = (round(_quantile(answers, 0.5), 2), round(_quantile(answers, 0.99), 2),
                             round(max(answers, default=0.0), 2))


def count_outage(outage: tuple[datetime, datetime], accepted: dict[str, tuple[str, str]],
                 rows: list[asyncpg.Record], result: Result) -> None:
    """How the visitors who opened while the business's API was down ended: a returning visitor (token
    verified before the outage) verified, a new one fallen back; nobody degraded without a verification."""
    down, up = outage
    first_verified: dict[str, datetime] = {}  # token -> when the business first verified it
    for r in rows:  # verified, and still so or logged out after (an end keeps the session's contact)
        if r["was_verified"] and not r["degraded"]:
            token = accepted[r["session_id"]][1]
            first_verified[token] = min(first_verified.get(token, r["resolved_at"]), r["resolved_at"])
    for r in rows:
        token = accepted[r["session_id"]][1]
        known_at = first_verified.get(token)
        if r["degraded"] and (known_at is None or known_at > r["created_at"]):
            result.wrongly_degraded += 1
        if not down <= r["created_at"] <= up or r["status"] == "ended":  # a visitor who logged out chose its end
            continue
        if known_at is not None and known_at < down:
            result.outage_returning += 1
            result.outage_returning_verified += r["status"] == "verified"
        else:
            result.outage_new += 1
            result.outage_new_unavailable += r["reason"] == "auth_unavailable"


async def business_down(cluster: Cluster) -> None:
    """The business's API answers 503 to every identity call for OUTAGE_SECONDS."""
    down = datetime.now(UTC)
    cluster.api_down = True
    await asyncio.sleep(OUTAGE_SECONDS)  # time is the subject: an outage of this length
    cluster.api_down = False
    cluster.outage = (down, datetime.now(UTC))


async def dead_letters(cluster: Cluster, settle_for: float = 2.0) -> int:
    """Messages in the dead-letter queues (AMQP's exact count), once it has stopped changing."""
    topology = messaging.Topology(cluster.prefix)
    async with await aio_pika.connect(cluster.rabbit.url) as conn:
        channel = await conn.channel()
        last, stable_since = -1, time.monotonic()
        while True:
            total = 0
            for name in messaging.WORK_QUEUES:
                queue = await channel.declare_queue(topology.dead_letter_queue(name), passive=True)
                total += queue.declaration_result.message_count
            if total != last:
                last, stable_since = total, time.monotonic()
            elif time.monotonic() - stable_since >= settle_for:
                return total
            # time is the subject: the count must hold still for settle_for (the broker's figures come late)
            await asyncio.sleep(0.2)


Fault = Callable[[Cluster], Awaitable[None]]


async def run(name: str, cluster: Cluster, fault: Fault | None, *, hanging: int = 0,
              verifiers: int = 2, contacts: int = 2, grace: int = 0, returning: bool = False,
              gateway_first: bool = False, webhooks: bool = False) -> Result:
    result = Result(fault=name)
    started = time.monotonic()
    codes: list[int | None] = []
    try:
        async with AsyncExitStack() as es:
            http = await es.enter_async_context(aiohttp.ClientSession())
            bots: list[tuple[str, bool]] = []

            async def make() -> None:
                # Before the workers start: a contacts service loads the bots with a webhook as it starts.
                bots.extend(await make_bots(cluster, http, hanging=hanging, grace=grace, webhooks=webhooks))

            await cluster.start(verifiers=verifiers, contacts=contacts, gateway_first=gateway_first, before_workers=make)
            recovered = asyncio.Event()
            logged_out: set[str] = set()
            load = asyncio.create_task(drive(cluster, http, bots, result, recovered, returning, logged_out))
            if fault is not None:
                third = round(RATE * DURATION / 3)  # a third of the run's opens

                async def answered(count: int) -> None:
                    await wait_until(lambda: len(cluster.samples) >= count or load.done(), DURATION + 60,
                                     f"{count} opens answered")

                await answered(third)
                struck = time.time()
                await fault(cluster)
                cluster.window = (struck, time.time() + 3)
                await answered(len(cluster.samples) + third)  # keep the load on after the fault: recovery is measured too
            recovered.set()
            accepted = await load
            pool = await es.enter_async_context(asyncpg.create_pool(cluster.pg.url(cluster.database), min_size=1, max_size=2))
            await settle(cluster, pool, list(accepted), timeout=DEADLINE + 30)
            await count(cluster, pool, accepted, bots, result, logged_out)
            if webhooks:
                await count_webhooks(pool, bots, cluster.webhook_ok, result, timeout=60)
    finally:
        codes = await cluster.stop()
    result.seconds = round(time.monotonic() - started, 1)
    assert all(code == 0 for code in codes), f"a service did not stop cleanly on SIGTERM: {codes}"
    return result


def table(results: list[Result]) -> str:
    head = ("fault", "accepted", "503", "errors", "half-accepted", "verified", "fallback",
            "ended (logged out; while pending)", "lost", "lost contacts", "duplicated", "late", "dead letters",
            "webhooks", "during the fault: 503 / opens", "open ms p50/p99/max", "to outcome s p50/p99",
            "widget's answer s p50/p99/max",
            "connections failed over", "s")
    rows = [(r.fault, r.accepted, r.refused_503, r.other_errors, r.half_accepted,
             f"{r.verified} ({r.degraded} degraded)" if r.degraded else r.verified,
             ", ".join(f"{k} {v}" for k, v in sorted(r.fallback.items())) or "-",
             f"{r.ended} ({r.logged_out}; {r.ended_while_pending} pending)", r.lost_sessions, r.lost_contacts,
             r.duplicated, r.late, r.dead_letters, _webhooks(r), f"{r.fault_503} / {r.fault_opens}",
             "/".join(str(v) for v in r.fault_open_ms), "/".join(str(v) for v in r.fault_outcome_s),
             "/".join(str(v) for v in r.fault_answer_s),
             r.failovers if r.replicas else "-", r.seconds)
            for r in results]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _webhooks(r: Result) -> str:
    if not r.webhooks:
        return "-"
    return (f"{r.webhooks} ({r.webhooks_retried} retried, {r.webhooks_lost} lost, {r.webhooks_duplicated} duplicated, "
            f"{r.webhook_repeats} repeats)")


def save(results: list[Result], path: Path) -> None:
    path.write_text(json.dumps([asdict(r) for r in results], indent=2))
