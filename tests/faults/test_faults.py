"""Nothing lost, nothing duplicated, whatever crashes: steady load through the real stack, one fault each.

Short by default (part of `make test`); `make faults` runs the long version
(DOORMAN_FAULTS_FULL=1). Each scenario gets its own queue prefix on the suite's own
RabbitMQ node and its own bots in the suite's own PostgreSQL cluster.
"""

from __future__ import annotations

import base64
from pathlib import Path
from uuid import uuid4

import aio_pika
import aiohttp
import pytest

from shared import messaging
from tests.fake_customer import FakeCustomerAPI
from tests.faults.conftest import RESULTS
from tests.faults.infra import PgCluster, RabbitCluster, RabbitNode, Service
from tests.faults.scenario import FULL, OUTAGE_SECONDS, Cluster, Fault, business_down, run, webhook_endpoint_down
from tests.waits import wait_until


async def kill_and_start(cluster: Cluster, *services: Service) -> None:
    """kill -9 ``services``; once they are gone and the broker has dropped their consumers (their unacked
    messages back in the queues), start them again."""
    for service in services:
        service.kill9()
    for service in services:
        assert service.proc is not None
        await service.proc.wait()
    await cluster.wait_consumers({name: len([s for s in cluster.services[name] if s not in services])
                                  for name in ("verifier", "contacts")})
    for service in services:
        await service.start()


async def kill_verifier(cluster: Cluster) -> None:
    await kill_and_start(cluster, cluster.services["verifier"][0])


async def kill_contacts(cluster: Cluster) -> None:
    await kill_and_start(cluster, cluster.services["contacts"][0])


async def kill_every_worker(cluster: Cluster) -> None:
    await kill_and_start(cluster, *cluster.services["verifier"], *cluster.services["contacts"])


async def rolling_restart(cluster: Cluster) -> None:
    """SIGTERM (graceful) one verifier and one contacts, then start them again."""
    for name in ("verifier", "contacts"):
        service = cluster.services[name][0]
        assert await service.terminate() == 0, f"{name} did not stop cleanly"
        await service.start()


async def restart_rabbitmq(cluster: Cluster) -> None:
    await cluster.rabbit.restart(while_down=cluster.wait_unready)


async def restart_postgresql(cluster: Cluster) -> None:
    await cluster.pg.restart(while_down=cluster.wait_unready)


POISON = 3


async def poison(cluster: Cluster) -> None:
    """An undecodable open, an unknown event type, and an identity for a bot that does not exist."""
    topology = messaging.Topology(cluster.prefix)
    async with await aio_pika.connect(cluster.rabbit.url) as conn:
        channel = await conn.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(topology.exchange)
        bogus_identity = (
            '{"event_id": "%s", "occurred_at": "2026-01-01T00:00:00Z", "correlation_id": "poison", "session_id": "none",'
            ' "bot_id": "%s", "identify_method": "id", "identity": {"identifier": "x"},'
            ' "observed_at": "2026-01-01T00:00:00Z"}' % (uuid4(), uuid4())
        )
        for body, type_, key in ((b"{not json", "widget.opened", "widget.opened"),
                                 (b"{}", "something.else", "widget.opened"),
                                 (bogus_identity.encode(), "identity.verified", "identity.verified")):
            await exchange.publish(aio_pika.Message(body, type=type_, message_id=str(uuid4())), routing_key=key)


SCENARIOS: list[tuple[str, Fault | None, dict[str, int]]] = [
    ("2 replicas of each worker, no fault", None, {}),
    ("kill -9 one verifier", kill_verifier, {}),
    ("kill -9 one contacts", kill_contacts, {}),
    ("kill -9 every worker", kill_every_worker, {}),
    ("SIGTERM rolling restart", rolling_restart, {}),
    ("restart RabbitMQ", restart_rabbitmq, {}),
    ("restart PostgreSQL", restart_postgresql, {}),
    ("poison messages", poison, {}),
    ("one bot's customer API hangs", None, {"hanging": 1}),
    (f"the business's API goes down for {OUTAGE_SECONDS:g} s (grace on)", business_down,
     {"grace": 300, "returning": True}),
    (f"the webhook endpoint is down for {OUTAGE_SECONDS:g} s", webhook_endpoint_down, {"webhooks": True}),
]


@pytest.mark.parametrize(("name", "fault", "options"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
async def test_nothing_lost_nothing_duplicated(
    name: str, fault: Fault | None, options: dict[str, int], rabbit: RabbitNode, pg: PgCluster,
    fault_database: str, customer_api: FakeCustomerAPI, tmp_path: Path,
) -> None:
    cluster = Cluster(rabbit, pg, fault_database, customer_api, tmp_path)
    result = await run(name, cluster, fault, **options)
    RESULTS.append(result)

    assert result.accepted > 0
    assert result.half_accepted == 0, result
    assert result.lost_sessions == 0, result
    assert result.lost_contacts == 0, result
    assert result.duplicated == 0, result
    assert result.logged_out > 0 and result.not_ended == 0 and result.ended >= result.logged_out, result
    if fault is restart_rabbitmq:
        # PostgreSQL stays up: every open is stored and answered, its event held until the broker is back.
        assert result.refused_503 == 0 and result.fault_opens > 0, result
    if fault is poison:
        assert result.dead_letters == POISON, result
    else:
        assert result.dead_letters == 0, result
    if options.get("hanging"):
        assert result.fallback.get("auth_unavailable", 0) > 0, result
    if fault is None and not options:
        assert result.fallback == {} and result.late == 0, result
    if fault is business_down:
        # Returning visitors stay verified (degraded); new ones fall back with auth_unavailable.
        assert result.outage_returning > 0 and result.outage_returning_verified == result.outage_returning, result
        assert result.outage_new > 0 and result.outage_new_unavailable > 0, result
        assert result.degraded > 0 and result.wrongly_degraded == 0, result
        assert set(result.fallback) == {"auth_unavailable"}, result
    else:
        assert result.degraded == 0, result
    if options.get("webhooks"):
        # Deliveries caught up: every change announced, each delivered under its own id; a repeat of an id
        # (at least once) is allowed, a second id for one change is not.
        assert result.webhooks > 0 and result.webhooks_retried > 0, result  # the outage did hit deliveries
        assert result.webhooks_lost == 0 and result.webhooks_duplicated == 0, result


# A RabbitMQ cluster of three, every service given all three addresses: lose the node leading a work queue.
MANAGEMENT_AUTH = {"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()}


async def work_queue_leader(cluster: Cluster) -> str:
    """The Erlang name of the node leading the verifier's work queue, which the gateway (started
    first, it declared the queues) is connected to; notes each work queue's members."""
    async with aiohttp.ClientSession() as http:
        queues = {name: await cluster.queue_info(http, name) for name in messaging.WORK_QUEUES}
        async with http.get(f"{cluster.rabbit.management_url}/api/connections", headers=MANAGEMENT_AUTH) as resp:
            connections = await resp.json()
    cluster.replicas = {name: len(q.get("members", [])) for name, q in queues.items()}
    leader = queues[messaging.VERIFIER_QUEUE]["leader"]
    gateway = {c["node"] for c in connections if c.get("client_properties", {}).get("connection_name", "").startswith(
        "doorman-gateway-")}
    assert gateway == {leader}, f"the gateway is on {gateway}, the queue's leader on {leader}"
    return leader


async def new_leader(cluster: Cluster, lost: str) -> None:
    """Until the verifier's work queue is led by another node than ``lost`` (the cluster failed over)."""
    async with aiohttp.ClientSession() as http:
        async def elsewhere() -> bool:
            try:
                leader = (await cluster.queue_info(http, messaging.VERIFIER_QUEUE)).get("leader")
            except (aiohttp.ClientError, ValueError):
                return False  # the management API of the node asked is itself catching up
            return leader not in (None, lost)

        await wait_until(elsewhere, 60, f"a leader other than {lost} for the verifier's queue")


async def kill_leader_node(cluster: Cluster) -> None:
    """kill -9 the node leading the verifier's queue; once another node leads it, it boots and rejoins."""
    assert isinstance(cluster.rabbit, RabbitCluster)
    node = cluster.rabbit.node(await work_queue_leader(cluster))
    await node.kill9()
    await new_leader(cluster, node.name)
    await node.start()


async def restart_leader_node(cluster: Cluster) -> None:
    """Stop (rabbitmqctl stop) the node leading the verifier's queue; once another node leads it, start it again."""
    assert isinstance(cluster.rabbit, RabbitCluster)
    node = cluster.rabbit.node(await work_queue_leader(cluster))
    await node.restart(while_down=lambda: new_leader(cluster, node.name))


CLUSTER_SCENARIOS: list[tuple[str, Fault]] = [
    ("3-node RabbitMQ: kill -9 the node leading a work queue", kill_leader_node),
    ("3-node RabbitMQ: restart the node leading a work queue", restart_leader_node),
]


@pytest.mark.skipif(not FULL, reason="a 3-node RabbitMQ cluster is slow to boot: `make faults` (DOORMAN_FAULTS_FULL=1)")
@pytest.mark.parametrize(("name", "fault"), CLUSTER_SCENARIOS, ids=[s[0] for s in CLUSTER_SCENARIOS])
async def test_a_broker_node_lost_loses_nothing(
    name: str, fault: Fault, rabbit_cluster: RabbitCluster, pg: PgCluster, fault_database: str,
    customer_api: FakeCustomerAPI, tmp_path: Path,
) -> None:
    cluster = Cluster(rabbit_cluster, pg, fault_database, customer_api, tmp_path)
    result = await run(name, cluster, fault, gateway_first=True)
    result.replicas = cluster.replicas
    RESULTS.append(result)

    assert result.replicas == {name: 3 for name in messaging.WORK_QUEUES}, result  # quorum queues on every node
    assert result.accepted > 0
    assert result.half_accepted == 0, result
    assert result.lost_sessions == 0, result
    assert result.lost_contacts == 0, result
    assert result.duplicated == 0, result
    assert result.dead_letters == 0, result
    assert result.degraded == 0, result
    assert result.failovers >= 1, result  # the gateway's connection, at least, moved to a live node
    assert result.refused_503 == 0 and result.fault_opens > 0, result  # opens held while the quorum elected
