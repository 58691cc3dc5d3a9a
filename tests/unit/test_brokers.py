"""DOORMAN_AMQP_URL: one broker address or several; a bad one is refused without quoting it. A
publish the broker refused during a failover is retried."""

from __future__ import annotations

import aiormq.exceptions
import pamqp.commands
import pytest
from pydantic import ValidationError

from shared.failures import is_transient

from shared.messaging import broker_urls, node_of
from shared.settings import DoormanSettings


def test_one_address_or_several_comma_separated() -> None:
    assert broker_urls("amqp://u:p@h1:5672/v") == ["amqp://u:p@h1:5672/v"]
    assert broker_urls(" amqp://u:p@h1:5672/v , amqps://u:p@h2/v") == ["amqp://u:p@h1:5672/v", "amqps://u:p@h2/v"]
    settings = DoormanSettings(amqp_url="amqp://u:p@h1:5672/v,amqp://u:p@h2:5672/v,amqp://u:p@h3:5672/v")
    assert [node_of(u) for u in settings.amqp_urls()] == ["h1:5672", "h2:5672", "h3:5672"]


def test_what_may_be_logged_of_an_address_has_no_credentials() -> None:
    assert node_of("amqp://doorman:s3cret@rabbit-0.rabbit:5672/doorman") == "rabbit-0.rabbit:5672"
    assert node_of("amqps://doorman:s3cret@rabbit/") == "rabbit:5671"


@pytest.mark.parametrize("value", [
    "amqp://doorman:s3cret@h1:5672/,",  # a trailing comma: an empty address
    "http://doorman:s3cret@h1:5672/",
    "amqp://doorman:s3cret@h1:5672/,amqp://doorman:s3cret@:5672/",  # no host
    "amqp://doorman:s3cret@h1:port/",
    "amqp://doorman:s3cret@h1:99999/",
    "doorman:s3cret@h1",
])
def test_a_bad_address_is_refused_by_position_never_quoted(value: str) -> None:
    with pytest.raises(ValidationError) as refused:
        DoormanSettings(amqp_url=value)
    assert "DOORMAN_AMQP_URL: address" in str(refused.value)
    assert "s3cret" not in str(refused.value) and "s3cret" not in repr(refused.value)


def test_a_publish_the_broker_nacked_is_worth_another_attempt_a_returned_one_is_not() -> None:
    # A quorum queue electing a new leader after losing its node nacks publishes for a few seconds.
    nacked = aiormq.exceptions.DeliveryError(None, pamqp.commands.Basic.Nack(delivery_tag=1, multiple=True))
    returned = aiormq.exceptions.DeliveryError(None, pamqp.commands.Basic.Return(reply_code=312, reply_text="NO_ROUTE"))
    assert is_transient(nacked)
    assert not is_transient(returned)
