"""A stage's delays as the environment says them (seconds, comma-separated): read, or refused naming the variable."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from doorman.ops import RETRY_DELAYS, QueueSettings, all_queues, retry_delays
from services.contacts.settings import ContactsRetrySettings
from services.verifier.settings import VerifierRetrySettings
from shared import messaging


def test_delays_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOORMAN_VERIFIER_RETRY_DELAYS", "0.5, 2")
    monkeypatch.setenv("DOORMAN_VERIFIER_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("DOORMAN_CONTACTS_RETRY_DELAYS", "1")
    verifier, contacts = VerifierRetrySettings(), ContactsRetrySettings()
    assert (verifier.verifier_retry_delays, verifier.verifier_max_attempts) == ((0.5, 2.0), 3)
    assert contacts.contacts_retry_delays == (1.0,)
    assert verifier.webhook_retry_delays == RETRY_DELAYS[messaging.WEBHOOK_QUEUE]  # not set: the default


@pytest.mark.parametrize(("value", "says"), [
    ("0.25;1", "DOORMAN_VERIFIER_RETRY_DELAYS: seconds, comma-separated"),
    ("", "DOORMAN_VERIFIER_RETRY_DELAYS: seconds, comma-separated"),
    ("0,1", "greater than 0"),
    ("1,86401", "less than or equal to 86400"),
    ("nan", "finite number"),
    ("inf", "finite number"),
])
def test_delays_that_are_not_seconds_are_refused(monkeypatch: pytest.MonkeyPatch, value: str, says: str) -> None:
    monkeypatch.setenv("DOORMAN_VERIFIER_RETRY_DELAYS", value)
    with pytest.raises(ValidationError, match=says):
        VerifierRetrySettings()


def test_doorman_queues_names_the_delay_queues_of_the_delays_set() -> None:
    topology = messaging.Topology("doorman")
    names = all_queues(topology, retry_delays(QueueSettings(verifier_retry_delays="0.3", contacts_retry_delays="0.4")))
    assert {"doorman.verifier.widget-opened.retry.300ms", "doorman.contacts.outcomes.retry.400ms"} <= set(names)
    assert "doorman.verifier.widget-opened.retry.250ms" not in names
    assert "doorman.verifier.widget-opened.retry.250ms" in all_queues(topology)  # the defaults: deploy/'s
