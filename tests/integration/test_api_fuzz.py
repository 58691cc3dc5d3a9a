"""Schemathesis against the live gateway: every documented operation, with generated valid and invalid input,
under every check Schemathesis has, and chains of calls along the document's links (the stateful phase).

The schema is the document the running gateway serves at ``GET /openapi.json``, loaded in a fixture
(the gateway's port is only known at run time). Every built-in check runs on every response (the
configuration enables them all): no 5xx; a status code, content type, headers and body that the
document gives; input the document allows is accepted (``positive_data_acceptance``: a documented
constraint the API enforces and the document does not state fails here) and input it forbids is
refused; a method a path lacks answers 405 with ``Allow``; the admin token is enforced; nothing
deleted stays readable, nothing created is missing.

Real bots, sessions, contacts (verified and collected), a workspace and an API key are made first;
every read is called once with them, and part of the generated valid cases name them, so the
200/202/409 branches are reached and not only 404. Each operation also gets Schemathesis's coverage
cases (boundaries, each constraint broken one at a time, undeclared methods, a missing required
header). The stateful test follows the links declared on the routes (``shared.routes.Link``):
create a bot, configure it, open its sessions, send the form, read the activity log and contacts.

How this differs from ``schemathesis.pytest.from_fixture``: that lazy loader sets
``request.node._nodeid``, which pytest 9.2 no longer has (AttributeError before any request is
made). So each operation is one pytest item (parametrized by the operation ids the gateway's routes
are declared with, read from an app as ``init_app`` builds it) that draws cases from the live schema
with Schemathesis's public ``APIOperation.as_strategy`` under Hypothesis's ``@given``, and
``schema.iter_coverage_cases`` for the coverage phase.

Also: the gateway runs on pytest-asyncio's session loop in this process, and these tests are
synchronous, so each request (and each check that re-sends one) runs in a worker thread while that
loop is driven with ``run_until_complete``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.coverage import _schema as coverage_schema
from schemathesis.specs.openapi.coverage._schema import CoverageContext
from yarl import URL

from services.gateway.app import init_app
from services.gateway.constraints import HTTP_URL, ISSUER_URL
from services.gateway.openapi import operations
from services.gateway.settings import GatewaySettings
from tests import api_formats  # noqa: F401 - registers the document's own formats with Schemathesis
from tests.conftest import (
    ADMIN_TOKEN,
    Stack,
    admin_headers,
    await_outcome,
    create_bot,
    open_session,
)
from tests.fake_customer import FakeCustomerAPI, verified
from tests.waits import wait_until

MAX_EXAMPLES = 25  # per operation; the whole file runs in about a minute
STATEFUL_EXAMPLES = 60  # scenarios of linked calls
STATEFUL_STEPS = 10
REQUEST_TIMEOUT = 10.0
OPERATION_IDS = [op.operation_id for _, _, op in operations(init_app(GatewaySettings(environment="development")))]
# Session ids are free-form strings in the document: beside real ones, a few the generator rarely
# makes (NUL, percent sign, non-ASCII, an id with a slash) must be answered 404, never 5xx.
ODD_SESSION_IDS = ["a\x00b", "%", "é", "a/b", " "]
STREAM = "streamSession"  # text/event-stream: Schemathesis checks each event, and _check_stream how many
SETTINGS = "PUT /v1/bots/{bot_id}/custom-auth"  # the operations whose bodies name URLs the verifier would call
DISCOVER = "POST /v1/bots/{bot_id}/custom-auth/oidc/discover"


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

    async def made() -> str | None:
        async with stack.http.get(f"{stack.gateway.url}/v1/bots/{bot_id}/contacts", headers=admin_headers()) as resp:
            return next((c["contact_id"] for c in (await resp.json())["contacts"] if c["contact_id"] not in before), None)

    return await wait_until(made, what="the collected contact")


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
        # The one check the contract answers otherwise: a session ended with DELETE stays readable (docs/integrators.md:
        # "GET answers status: ended"; its stream sends the `ended` event), where use_after_free expects a 404.
        "operations": [
            *({"include-operation-id": operation_id, "checks": {"use_after_free": {"enabled": False}}}
              for operation_id in ("getSession", "streamSession")),
            # A logout token the document allows (any string) is valid only when the bot's OpenID Provider signed it,
            # which no schema can say: a generated one is refused 400 `invalid_request`, as Back-Channel Logout asks.
            {"include-operation-id": "backchannelLogout",
             "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400", "429", "503"]}}},
        ],
    })
    # from_url blocks: run it in a thread so this loop stays free to serve the gateway.
    return await asyncio.to_thread(schemathesis.openapi.from_url, f"{stack.gateway.url}/openapi.json", config=config)


# --- cases ----------------------------------------------------------------------------------------


def _confine_urls(case: schemathesis.Case, world: World) -> None:
    """Point every URL a fuzzed settings body would store at the fake business API (loopback only): the
    Authentication URL, the whitelist API, the JWKS and the OpenID Provider's issuer (its discovery document); and
    the issuer the Discover action reads.

    Mirrors the gateway's own URL check (yarl, stripped, http/https with a host): whatever it would
    accept keeps its shape but targets ``world.customer``; whatever it would refuse is left alone,
    so valid cases stay valid and invalid ones invalid. Without this a stored ``auth_url`` or
    ``api_url`` could make the Testing panel or the verifier call (and resolve) any host.
    """
    if case.operation.label not in (SETTINGS, DISCOVER) or not isinstance(case.body, dict):
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

    for key in ("auth_url", "issuer"):  # the settings' auth_url, Discover's issuer
        if key in case.body:
            case.body[key] = confine(case.body[key])
    for name, key in (("domain_whitelist", "api_url"), ("signed_token", "jwks_url"), ("signed_token", "issuer"),
                      ("oidc", "issuer")):
        nested = case.body.get(name)
        if isinstance(nested, dict) and key in nested:
            nested[key] = confine(nested[key])


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


def _check_stream(response: Any) -> None:
    """Schemathesis checks each event against the document (its shape, its data a SessionView); the document
    also says there is exactly one: ``outcome`` (or ``ended``: a fuzzed DELETE may have ended the session first)."""
    if response.status_code != 200:
        return
    names = [line.partition(":")[2].strip() for line in response.content.decode().splitlines()
             if line.startswith("event:")]
    assert names in (["outcome"], ["ended"]), names


# --- the tests ------------------------------------------------------------------------------------


def _call_and_validate(case: schemathesis.Case) -> None:
    """Send ``case`` and run every check the configuration enables (all of them) on the answer."""
    response = case.call(timeout=REQUEST_TIMEOUT)
    case.validate_response(response)
    if case.operation.definition.raw.get("operationId") == STREAM:
        _check_stream(response)


def _coverage_cases(api_schema: Any, operation: Any) -> list[schemathesis.Case]:
    """Schemathesis's coverage phase for ``operation``: boundary values, each constraint broken in turn,
    undeclared methods, a required header left out."""
    generation = api_schema.config.generation_for(operation=operation, phase="coverage")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CoverageContext, "generate_from_schema", _no_long_urls(CoverageContext.generate_from_schema))
        patch.setattr(coverage_schema, "_pattern_implies_format",
                      _urls_imply_uri(coverage_schema._pattern_implies_format))
        return list(api_schema.iter_coverage_cases(
            operation, generation_modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], generation_config=generation))


def _no_long_urls(generate: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """For a URL of one exact length of 1 KiB or more (the maximum length, 2048, and one less), the coverage phase
    asks Hypothesis for a string matching the document's URL pattern: its regex generator never gets there, and says
    so (Unsatisfiable) after 10 to 20 s, the same every run (draws are seeded). putCustomAuth has three such URLs,
    so a minute and more for no case. These draws are refused at once: the cases made are the very same ones."""
    def generate_from_schema(context: Any, schema: Any) -> Any:
        if (isinstance(schema, dict) and schema.get("format") == "uri" and "pattern" in schema
                and schema.get("minLength") == schema.get("maxLength") and (schema.get("minLength") or 0) >= 1024):
            raise Unsatisfiable(f"no string of {schema['minLength']} characters drawn from the URL pattern")
        return generate(context, schema)
    return generate_from_schema


URL_PATTERNS = (HTTP_URL, ISSUER_URL)


def _urls_imply_uri(implies: Callable[[str, str], bool]) -> Callable[[str, str], bool]:
    """The document's URL patterns are RFC 3986's grammar (an http(s) scheme, a host, a port, then only the
    characters a path, query and fragment may hold), so no string matching one breaks the ``uri`` format
    (tests/unit/test_api_constraints.py draws them to show it). Schemathesis cannot tell from its probes, and
    searched 20-40 s per operation for such a string, in vain; told so, it makes the very same cases."""
    def pattern_implies_format(pattern: str, format: str) -> bool:
        return (format == "uri" and pattern in URL_PATTERNS) or implies(pattern, format)
    return pattern_implies_format


@pytest.mark.parametrize("operation_id", OPERATION_IDS)
def test_operation(operation_id: str, api_schema: Any, fuzz_world: World,
                   session_loop: asyncio.AbstractEventLoop) -> None:
    operation = api_schema.find_operation_by_id(operation_id)

    def send(case: schemathesis.Case) -> None:
        _confine_urls(case, fuzz_world)
        session_loop.run_until_complete(asyncio.to_thread(_call_and_validate, case))

    for case in [*_baseline_cases(operation, fuzz_world), *_coverage_cases(api_schema, operation)]:
        send(case)

    @given(case=_strategy(operation, fuzz_world))
    @settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        send(case)

    run()


# The visitor's path through the API, on its own: with every operation in play, a scenario rarely gets from a new bot
# through a session and its form to the activity log and the contact it made.
VISITOR_FLOW = ["createBot", "openSession", "getSession", "streamSession", "collectContact", "endSession",
                "listAuthEvents", "listContacts", "getContact", "exportContact", "revokeContactSessions", "eraseContact"]


@pytest.mark.parametrize("flow", [None, VISITOR_FLOW], ids=["every-operation", "visitor-flow"])
def test_linked_calls(api_schema: Any, fuzz_world: World, session_loop: asyncio.AbstractEventLoop,
                      flow: list[str] | None) -> None:
    """The stateful phase: scenarios that follow the document's links (a bot made, configured, its sessions
    opened, read, ended, its form sent, its contacts and activity log read), every check on every step."""
    world = fuzz_world
    schema = api_schema if flow is None else api_schema.include(operation_id=flow)

    class Scenario(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: schemathesis.Case) -> None:
            _confine_urls(case, world)

        def call(self, case: schemathesis.Case, **kwargs: Any) -> Any:
            return case.call(timeout=REQUEST_TIMEOUT, **kwargs)

        def validate_response(self, response: Any, case: schemathesis.Case, *args: Any, **kwargs: Any) -> None:
            super().validate_response(response, case, *args, **kwargs)
            if case.operation.definition.raw.get("operationId") == STREAM:
                _check_stream(response)

    run = settings(max_examples=STATEFUL_EXAMPLES, stateful_step_count=STATEFUL_STEPS, derandomize=True,
                   deadline=None, database=None, suppress_health_check=list(HealthCheck))
    session_loop.run_until_complete(asyncio.to_thread(Scenario.run, settings=run))


def test_every_served_operation_is_fuzzed(api_schema: Any) -> None:
    """The parametrization (from the code) covers exactly the operations the live document has."""
    served = {op.get("operationId") for item in api_schema.raw_schema["paths"].values() for op in item.values()}
    assert served == set(OPERATION_IDS)
