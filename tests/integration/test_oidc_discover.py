"""The admin page's Discover action through the public API, on the real stack: ``POST
/v1/bots/{bot_id}/custom-auth/oidc/discover`` asks a verifier over the broker (the gateway calls no one), which reads
the issuer's discovery document from panva's real provider (tests/oidc_provider) and answers what it publishes.

A provider that cannot be used is a diagnosis (200, ``ok: false``): issuer mismatch, unreachable, a private address
refused where the stack disallows private networks. An issuer Doorman would not save is 422, as on the PUT; no
verifier is 503 ``verifier_unavailable``.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from yarl import URL

from tests.conftest import Stack, admin_headers, create_bot, service_config
from tests.integration.test_oidc import oidc_settings, provider  # noqa: F401  (provider: the fixture)
from tests.integration.test_openapi import assert_documented, doc  # noqa: F401  (doc: the fixture)
from tests.integration.test_panel_rpc import ANSWER_SECONDS, gateway_alone
from tests.openid_provider import BOT_CLIENT, OpenIDProvider

DISCOVER = "/v1/bots/{bot_id}/custom-auth/oidc/discover"


async def discover(http: aiohttp.ClientSession, gateway_url: str, bot: str, body: Any) -> tuple[int, Any]:
    async with http.post(gateway_url + DISCOVER.format(bot_id=bot), json=body, headers=admin_headers()) as resp:
        return resp.status, await resp.json()


async def documented(stack: Stack, doc: dict[str, Any], bot: str, body: Any, status: int = 200) -> Any:  # noqa: F811
    got, answer = await discover(stack.http, stack.gateway.url, bot, body)
    assert got == status, answer
    assert_documented(doc, "POST", DISCOVER, status, answer)
    return answer


def closed_port() -> int:
    """A port of 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_discover_lists_what_the_provider_publishes(
        stack: Stack, provider: OpenIDProvider, doc: dict[str, Any]) -> None:  # noqa: F811
    bot = await create_bot(stack.http, stack.gateway.url)
    published = await provider.discovery(stack.http)

    result = await documented(stack, doc, bot, {"issuer": provider.issuer})

    assert (result["ok"], result["failure"], result["issuer_matches"]) == (True, None, True), result
    found = result["provider"]
    assert found["issuer"] == provider.issuer
    for name in ("userinfo_endpoint", "introspection_endpoint", "jwks_uri", "end_session_endpoint"):
        assert found[name] == published[name], name
    assert found["backchannel_logout_supported"] is True
    assert "RS256" in found["signing_algs"]
    assert "client_secret_basic" in found["introspection_auth_methods"]
    assert result["userinfo"]["usable"] and result["introspection"]["usable"], result
    assert result["document_url"] == provider.issuer + "/.well-known/openid-configuration"
    assert result["http_status"] == 200 and published["issuer"] in result["document"]


async def test_without_an_issuer_the_saved_one_is_read_and_the_secret_stays_out(
        stack: Stack, provider: OpenIDProvider, doc: dict[str, Any]) -> None:  # noqa: F811
    bot = await create_bot(stack.http, stack.gateway.url, **oidc_settings(provider, "introspection"))

    status, answer = await discover(stack.http, stack.gateway.url, bot, {})

    assert status == 200 and answer["issuer"] == provider.issuer and answer["ok"], answer
    assert provider.secrets[BOT_CLIENT] not in str(answer)
    unset = await create_bot(stack.http, stack.gateway.url)
    refused = await documented(stack, doc, unset, {}, 409)
    assert refused["error"]["code"] == "invalid_state" and refused["error"]["fields"][0]["field"] == "issuer"


async def test_an_issuer_spelt_otherwise_than_the_provider_is_a_mismatch(
        stack: Stack, provider: OpenIDProvider, doc: dict[str, Any]) -> None:  # noqa: F811
    bot = await create_bot(stack.http, stack.gateway.url)

    result = await documented(stack, doc, bot, {"issuer": provider.issuer + "/"})

    assert (result["ok"], result["failure"], result["issuer_matches"]) == (False, "issuer_mismatch", False), result
    assert "trailing slash" in result["verdict"]
    assert result["provider"]["issuer"] == provider.issuer  # what the provider spells, shown
    assert not result["userinfo"]["usable"] and not result["introspection"]["usable"]


async def test_an_unreachable_issuer_is_said_plainly(stack: Stack, doc: dict[str, Any]) -> None:  # noqa: F811
    bot = await create_bot(stack.http, stack.gateway.url)

    result = await documented(stack, doc, bot, {"issuer": f"http://127.0.0.1:{closed_port()}/realms/shop"})

    assert (result["ok"], result["failure"], result["http_status"], result["provider"]) == (
        False, "unreachable", None, None), result
    assert "could not connect" in result["verdict"]


async def test_where_private_networks_are_refused_the_provider_is_not_called(
        strict_stack: Stack, provider: OpenIDProvider, doc: dict[str, Any]) -> None:  # noqa: F811
    """An IP literal Doorman will not call is refused as the PUT refuses it (422, field ``issuer``); a name that
    resolves to a private address is only known when the verifier calls it: the verdict says ``blocked``."""
    stack = strict_stack
    bot = await create_bot(stack.http, stack.gateway.url)

    refused = await documented(stack, doc, bot, {"issuer": provider.issuer}, 422)
    [field] = refused["error"]["fields"]
    assert field["field"] == "issuer" and "Doorman will not call this URL" in field["message"], field

    by_name = str(URL(provider.issuer).with_scheme("https").with_host("localhost"))
    result = await documented(stack, doc, bot, {"issuer": by_name})
    assert (result["ok"], result["failure"], result["http_status"]) == (False, "blocked", None), result
    assert "not a public address" in result["detail"]


@pytest.mark.parametrize(("body", "field"), [
    ({"issuer": "ftp://id.example.com"}, "issuer"),
    ({"issuer": "https://id.example.com/?tenant=1"}, "issuer"),
    ({"issuer": ""}, "issuer"),
    ({"issuer": 7}, "issuer"),
    ({"issuer": "https://id.example.com", "client_secret": "x"}, "client_secret"),
    ([], "body"),
])
async def test_a_bad_body_is_refused_field_by_field(
        stack: Stack, doc: dict[str, Any], body: Any, field: str) -> None:  # noqa: F811
    bot = await create_bot(stack.http, stack.gateway.url)
    refused = await documented(stack, doc, bot, body, 422)
    assert refused["error"]["code"] == "invalid_body"
    assert [f["field"] for f in refused["error"]["fields"]] == [field], refused


async def test_with_no_verifier_running_discover_says_so(
        database_url: str, fresh_prefix: Callable[[], str], secret_key: str) -> None:
    async with gateway_alone(service_config(database_url, fresh_prefix(), secret_key)) as (gateway, http):
        bot = await create_bot(http, gateway.url)
        started = time.monotonic()
        status, body = await discover(http, gateway.url, bot, {"issuer": "https://id.example.com"})
        took = time.monotonic() - started
    assert (status, body["error"]["code"]) == (503, "verifier_unavailable"), body
    assert "verifier" in body["error"]["message"]
    assert took < ANSWER_SECONDS + 1
