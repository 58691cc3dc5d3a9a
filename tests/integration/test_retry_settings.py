"""Each stage's retry policy is a setting (DOORMAN_VERIFIER_RETRY_DELAYS, DOORMAN_VERIFIER_MAX_ATTEMPTS,
DOORMAN_CONTACTS_RETRY_DELAYS, ...): the services retry as it says and declare the delay queues its delays name,
and `doorman queues` names the same queues from the same settings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aio_pika
import pytest

from doorman.ops import QueueSettings, all_queues, retry_delays
from shared import messaging
from tests.conftest import AMQP_URL, Stack, create_bot, running_stack, service_config, verify_once
from tests.fake_customer import Answer, FakeCustomerAPI

TUNED = {"verifier_retry_delays": "0.3", "verifier_max_attempts": 2, "contacts_retry_delays": "0.4,2"}


@pytest.fixture(scope="module")
async def tuned_stack(database_url: str, module_prefix: Callable[[], str], secret_key: str) -> AsyncIterator[Stack]:
    config = {**service_config(database_url, module_prefix(), secret_key), **TUNED}
    async with running_stack(config) as stack:
        yield stack
    # The session's clean-up deletes the default delay queues; these are named by the settings.
    topology = messaging.Topology(config["amqp_prefix"])
    async with await aio_pika.connect(AMQP_URL) as conn:
        channel = await conn.channel()
        for name, delays in retry_delays(QueueSettings(**config)).items():
            for queue in topology.retry_queues(name, delays):
                await channel.queue_delete(queue)


async def test_a_blinking_business_is_called_as_often_as_the_verifiers_settings_say(
        tuned_stack: Stack, customer_api: FakeCustomerAPI) -> None:
    """Five attempts by default, while the visitor can wait; two here."""
    url = customer_api.endpoint(Answer(status=503, json={"error": "down"}))
    bot = await create_bot(tuned_stack.http, tuned_stack.gateway.url, enabled=True, auth_url=url)
    outcome = await verify_once(tuned_stack, bot, access_token="t")
    assert outcome["status"] == "fallback" and outcome["fallback"]["reason"] == "auth_unavailable"
    assert len(customer_api.received(url)) == 2


async def test_the_delay_queues_doorman_queues_names_are_the_ones_the_services_declared(tuned_stack: Stack) -> None:
    settings = QueueSettings(**tuned_stack.config)
    topology = messaging.Topology(tuned_stack.config["amqp_prefix"])
    names = all_queues(topology, retry_delays(settings))
    assert {topology.retry_queue(messaging.VERIFIER_QUEUE, 0.3), topology.retry_queue(messaging.CONTACTS_QUEUE, 0.4),
            topology.retry_queue(messaging.CONTACTS_QUEUE, 2.0)} <= set(names)
    async with await aio_pika.connect(AMQP_URL) as conn:
        for name in names:  # each exists already: a passive declare fails (and closes its channel) if not
            channel = await conn.channel()
            await channel.declare_queue(name, passive=True)
            await channel.close()
