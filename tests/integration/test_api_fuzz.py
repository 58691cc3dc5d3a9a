"""Schemathesis against the live gateway: every documented operation, with generated valid and invalid input.

The schema is the document the running gateway serves at ``GET /openapi.json``, loaded in a fixture
(the gateway's port is only known at run time). For every operation, each generated request must
get no 5xx, and a status code, content type, headers and body that the document gives for it.

Real bots, sessions, contacts (verified and collected), a workspace and an API key are made first;
every read is called once with them, and part of the generated valid cases name them, so the
200/202/409 branches are reached and not only 404.

How this differs from ``schemathesis.pytest.from_fixture``: that lazy loader sets
``request.node._nodeid``, which pytest 9.2 no longer has (AttributeError before any request is
made). So each operation is one pytest item (parametrized by the operation ids the gateway's routes
are declared with, read from an app as ``init_app`` builds it) that draws cases from the live schema
with Schemathesis's public ``APIOperation.as_strategy`` under Hypothesis's ``@given``.

Also: the gateway runs on pytest-asyncio's session loop in this process, and these tests are
synchronous, so each request (and each check that re-sends one) runs in a worker thread while that
loop is driven with ``run_until_complete``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from schemathesis.checks import (  # type: ignore[attr-defined]  # the registry's public names
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode
from yarl import URL

from services.gateway.app import init_app
from services.gateway.openapi import operations
from services.gateway.settings import GatewaySettings
from tests.conftest import ADMIN_TOKEN, Stack, admin_headers, await_outcome, create_bot, open_session
from tests.fake_customer import FakeCustomerAPI, verified

MAX_EXAMPLES = 25  # per operation; the whole file runs in well under a minute
REQUEST_TIMEOUT = 10.0
OPERATION_IDS = [op.operation_id for _, _, op in operations(init_app(GatewaySettings(environment="development")))]
# Session ids are free-form strings in the document: beside real ones, a few the generator rarely
# makes (NUL, percent sign, non-ASCII, an id with a slash) must be answered 404, never 5xx.
ODD_SESSION_IDS = ["a\x00b", "%", "é", "a/b", " "]
STREAM = "streamSession"  # text/event-stream: its events are checked here, not by Schemathesis (see below)

# The brief's contract (no 5xx; documented status, content type, headers and body) plus: input the
# document says is invalid is refused. Left out: ``positive_data_acceptance`` (valid-looking input
# has documented 4xx answers here: unknown cursors, {} to the form, testing a bot without auth_url)
# and the checks that need state Schemathesis does not have (use_after_free, ...).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@dataclass
class World:
    """Real resources the generated cases may name."""

    ids: dict[str, list[str]]  # parameter name -> real values
    customer: URL  # the fake business API: the only place a fuzzed auth_url may point to


async def _resolved_session(stack: Stack, bot_id: str, **fields: Any) -> dict[str, Any]:
    session_id = await open_session(stack.http, stack.gateway.url, {"bot_id": bot_id, **fields})
    return {"session_id": session_id, **await await_outcome(stack.http, stack.gateway.url, session_id)}


async def _post(stack: Stack, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with stack.http.post(stack.gateway.url + path, json=body, headers=admin_headers()) as resp:
        assert resp.status == 201, await resp.text()
        return await resp.json()


async def _collected_contact(stack: Stack, bot_id: str, session_id: str, form: dict[str, str]) -> str:
    """The Collect Information form sent for a fallen-back session; the contact it makes (made async)."""
    async with stack.http.get(f"{stack.gateway.url}/v1/bots/{bot_id}/contacts", headers=admin_headers()) as resp:
        before = {c["contact_id"] for c in (await resp.json())["contacts"]}
    async with stack.http.post(f"{stack.gateway.url}/v1/widget/sessions/{session_id}/contact", json=form) as resp:
        assert resp.status == 202, await resp.text()
    for _ in range(100):
        async with stack.http.get(f"{stack.gateway.url}/v1/bots/{bot_id}/contacts", headers=admin_headers()) as resp:
            new = [c["contact_id"] for c in (await resp.json())["contacts"] if c["contact_id"] not in before]
        if new:
            return new[0]
        await asyncio.sleep(0.1)
    raise AssertionError("the collected contact never appeared")


@pytest.fixture(scope="module")
async def fuzz_world(stack: Stack, customer_api: FakeCustomerAPI) -> World:
    auth_url = customer_api.endpoint(verified(id="fuzz-1", name="Fuzz Visitor", email="fuzz@example.com"))
    verifying = await create_bot(stack.http, stack.gateway.url, enabled=True, auth_url=auth_url, identify_method="id")
    plain = await create_bot(stack.http, stack.gateway.url)  # Custom Authentication off: its sessions fall back
    verified_session = await _resolved_session(stack, verifying, access_token="fuzz-token")
    assert verified_session["status"] == "verified", verified_session
    fallbacks = [await _resolved_session(stack, plain) for _ in range(5)]  # the form takes one each
    assert all(s["status"] == "fallback" for s in fallbacks), fallbacks
    collected = [  # the form's contacts: keyed by email when one is given, else by the session
        await _collected_contact(stack, plain, fallbacks.pop()["session_id"], {"name": "Form", "email": "f@example.com"}),
        await _collected_contact(stack, plain, fallbacks.pop()["session_id"], {"name": "Form, name only"}),
    ]
    workspace = await _post(stack, "/v1/workspaces", {"name": "fuzz"})
    key = await _post(stack, f"/v1/workspaces/{workspace['workspace_id']}/api-keys", {"name": "fuzz"})
    return World(
        ids={
            "bot_id": [verifying, plain],
            "session_id": [verified_session["session_id"], *(s["session_id"] for s in fallbacks), *ODD_SESSION_IDS],
            "contact_id": [verified_session["contact"]["contact_id"], *collected],
            "workspace_id": [workspace["workspace_id"]],
            "key_id": [key["key_id"]],
        },
        customer=URL(customer_api.url),
    )


@pytest.fixture(scope="module")
async def session_loop() -> asyncio.AbstractEventLoop:
    """The loop the gateway runs on (pytest-asyncio's session loop); idle while a sync test runs."""
    return asyncio.get_running_loop()


@pytest.fixture(scope="module")
async def api_schema(stack: Stack) -> Any:
    """The live document, as Schemathesis loads it from the gateway."""
    config = SchemathesisConfig.from_dict({
        "base-url": stack.gateway.url,
        "request-timeout": REQUEST_TIMEOUT,
        "auth": {"openapi": {"adminToken": {"bearer": ADMIN_TOKEN}}},
        "generation": {"deterministic": True, "max-examples": MAX_EXAMPLES},
        # Invalid input may also be refused for its size (documented 413s), not only as 4xx "invalid".
        "checks": {"negative_data_rejection": {"expected-statuses": [
            400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]}},
    })
    # from_url blocks: run it in a thread so this loop stays free to serve the gateway.
    return await asyncio.to_thread(schemathesis.openapi.from_url, f"{stack.gateway.url}/openapi.json", config=config)


# --- cases ----------------------------------------------------------------------------------------


def _confine_urls(case: schemathesis.Case, world: World) -> None:
    """Point every URL a fuzzed settings body would store at the fake business API (loopback only).

    Mirrors the gateway's own URL check (yarl, stripped, http/https with a host): whatever it would
    accept keeps its shape but targets ``world.customer``; whatever it would refuse is left alone,
    so valid cases stay valid and invalid ones invalid. Without this a stored ``auth_url`` or
    ``api_url`` could make the Testing panel or the verifier call (and resolve) any host.
    """
    if case.operation.label != "PUT /v1/bots/{bot_id}/custom-auth" or not isinstance(case.body, dict):
        return

    def confine(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            url = URL(value.strip())
        except (ValueError, TypeError):
            return value  # the gateway's URL(...) fails the same way: refused (422), never stored
        if url.scheme not in ("http", "https") or not url.host:
            return value
        try:
            return str(url.with_host(world.customer.host).with_port(world.customer.port))
        except (ValueError, TypeError):
            return str(world.customer)  # safety first: never leave an outside host in place

    if "auth_url" in case.body:
        case.body["auth_url"] = confine(case.body["auth_url"])
    whitelist = case.body.get("domain_whitelist")
    if isinstance(whitelist, dict) and "api_url" in whitelist:
        whitelist["api_url"] = confine(whitelist["api_url"])


def _with_real_body_ids(case: schemathesis.Case, chosen: dict[str, str]) -> schemathesis.Case:
    if isinstance(case.body, dict):
        for name in ("bot_id", "workspace_id"):
            if name in case.body and name in chosen:
                case.body[name] = chosen[name]
    return case


def _body_properties(operation: Any) -> set[str]:
    """Top-level property names of the operation's JSON body (its schema is a component reference)."""
    body = operation.definition.raw.get("requestBody", {}).get("content", {}).get("application/json", {})
    ref = body.get("schema", {}).get("$ref", "")
    if not ref.startswith("#/components/schemas/"):
        return set()
    components = operation.schema.raw_schema["components"]["schemas"]
    return set(components[ref.rsplit("/", 1)[1]].get("properties", {}))


def _strategy(operation: Any, world: World) -> st.SearchStrategy[schemathesis.Case]:
    """Valid and invalid cases; a third of the draws are valid cases naming real resources."""
    body_names = _body_properties(operation) & set(world.ids)
    path_names = {p.name for p in operation.path_parameters}
    strategies = [operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)]
    names = (path_names | body_names) & set(world.ids)
    if names:
        real = st.fixed_dictionaries({name: st.sampled_from(world.ids[name]) for name in sorted(names)})
        strategies.append(real.flatmap(lambda chosen: operation.as_strategy(
            GenerationMode.POSITIVE, path_parameters={k: v for k, v in chosen.items() if k in path_names},
        ).map(lambda case: _with_real_body_ids(case, chosen))))
    return st.one_of(strategies)


def _baseline_cases(operation: Any, world: World) -> list[schemathesis.Case]:
    """Every read with real ids and nothing optional: deterministic 200s for each response schema."""
    if operation.method.upper() != "GET":
        return []
    names = [p.name for p in operation.path_parameters]
    if not set(names) <= set(world.ids):
        return []
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"} if operation.definition.raw.get("security") else {}
    return [operation.Case(path_parameters=dict(zip(names, values)), headers=dict(headers))
            for values in itertools.product(*(world.ids[name] for name in names))]


# --- the event stream -----------------------------------------------------------------------------


def _check_stream(doc: dict[str, Any], response: Any) -> None:
    """The 200 body: exactly one event, ``outcome`` (or ``ended``: a fuzzed DELETE may have ended the session
    first), whose data is the JSON the document's event schema names (its ``contentSchema``)."""
    if response.status_code != 200:
        return
    events: list[tuple[str, str]] = []
    name = ""
    for line in response.content.decode().splitlines():
        if line.startswith("event:"):
            name = line.partition(":")[2].strip()
        elif line.startswith("data:"):
            events.append((name, line.partition(":")[2].strip()))
    assert [n for n, _ in events] in (["outcome"], ["ended"]), events
    media = doc["paths"]["/v1/widget/sessions/{session_id}/events"]["get"]["responses"]["200"]["content"]
    [branch] = [b for b in media["text/event-stream"]["schema"]["oneOf"]
                if b["properties"]["event"]["const"] == events[0][0]]
    ref = branch["properties"]["data"]["contentSchema"]["$ref"]
    registry = Registry().with_resource("urn:doc", Resource.from_contents(doc, default_specification=DRAFT202012))
    Draft202012Validator({"$ref": "urn:doc" + ref}, registry=registry,
                         format_checker=Draft202012Validator.FORMAT_CHECKER).validate(json.loads(events[0][1]))


# --- the test -------------------------------------------------------------------------------------


@pytest.mark.parametrize("operation_id", OPERATION_IDS)
def test_operation(operation_id: str, api_schema: Any, fuzz_world: World,
                   session_loop: asyncio.AbstractEventLoop) -> None:
    operation = api_schema.find_operation_by_id(operation_id)
    excluded = [response_schema_conformance] if operation_id == STREAM else []

    def call_and_validate(case: schemathesis.Case) -> None:
        response = case.call(timeout=REQUEST_TIMEOUT)
        case.validate_response(response, checks=CHECKS, excluded_checks=excluded)
        if operation_id == STREAM:
            _check_stream(api_schema.raw_schema, response)

    for case in _baseline_cases(operation, fuzz_world):
        session_loop.run_until_complete(asyncio.to_thread(call_and_validate, case))

    @given(case=_strategy(operation, fuzz_world))
    @settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        _confine_urls(case, fuzz_world)
        session_loop.run_until_complete(asyncio.to_thread(call_and_validate, case))

    run()


def test_every_served_operation_is_fuzzed(api_schema: Any) -> None:
    """The parametrization (from the code) covers exactly the operations the live document has."""
    served = {op.get("operationId") for item in api_schema.raw_schema["paths"].values() for op in item.values()}
    assert served == set(OPERATION_IDS)
