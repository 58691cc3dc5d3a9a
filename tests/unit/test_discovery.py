"""The discovery cache (``services.verifier.discovery``) on a fake clock: one read per TTL, the last good document
while the provider cannot be reached, a failed read not repeated for a few seconds, a wrong document never used."""

from __future__ import annotations

import asyncio

import pytest

from services.verifier.discovery import Discovery, discovery_url
from services.verifier.failures import AuthFailure, Kind
from tests.strategies import encoded
from tests.unit.test_oidc_answers import ISSUER_URL, Answers

GOOD = (200, encoded({"issuer": ISSUER_URL, "userinfo_endpoint": ISSUER_URL + "/me"}))


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def cache(*answers: tuple[int, bytes]) -> tuple[Discovery, Answers, Clock]:
    http, clock = Answers(list(answers)), Clock()
    return Discovery(http, ttl=300, retry_after_failure=5, max_stale=3600, clock=clock), http, clock  # type: ignore[arg-type]


def read(discovery: Discovery) -> object:
    return asyncio.run(discovery.metadata(ISSUER_URL, tenant="bot"))


def test_the_document_is_read_once_per_ttl_and_at_the_well_known_url() -> None:
    discovery, http, clock = cache(GOOD, GOOD)
    read(discovery)
    clock.now += 299
    read(discovery)
    assert [url for _, url, _, _ in http.sent] == [discovery_url(ISSUER_URL)]
    clock.now += 2
    read(discovery)
    assert len(http.sent) == 2
    assert discovery_url(ISSUER_URL + "/") == ISSUER_URL + "/.well-known/openid-configuration"


def test_the_last_good_document_serves_while_the_provider_is_down_and_a_failure_rests() -> None:
    discovery, http, clock = cache(GOOD, (503, b""), GOOD)
    first = read(discovery)
    clock.now += 301
    assert read(discovery) == first  # the provider is down: the stale document, its calls decide
    clock.now += 1
    read(discovery)
    assert len(http.sent) == 2  # not asked again within 5 s of the failure
    clock.now += 5
    read(discovery)
    assert len(http.sent) == 3


@pytest.mark.parametrize(("answer", "kind"), [
    ((503, b""), Kind.UNAVAILABLE),
    ((404, b""), Kind.MISCONFIGURED),
    ((200, encoded({"issuer": ISSUER_URL + "/other"})), Kind.MISCONFIGURED),
])
def test_with_no_good_document_the_failure_is_answered(answer: tuple[int, bytes], kind: Kind) -> None:
    discovery, _, _ = cache(answer)
    with pytest.raises(AuthFailure) as failed:
        read(discovery)
    assert failed.value.kind is kind


def test_a_document_turned_wrong_is_not_used_stale() -> None:
    discovery, _, clock = cache(GOOD, (200, encoded({"issuer": "https://elsewhere.example"})))
    read(discovery)
    clock.now += 301
    with pytest.raises(AuthFailure) as failed:
        read(discovery)
    assert failed.value.kind is Kind.MISCONFIGURED
