"""The OpenAPI document states the constraints the API enforces, and the API answers as it states
(docs/rules.md, "The API answers what its document allows": "an API that answers 5xx to any request its OpenAPI document allows is a defect").

Each test here is one such promise, sent through the public HTTP API the way a client that trusts the
document would; ``test_api_fuzz.py`` checks the same under generated input.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.conftest import Stack, admin_headers, create_bot, open_session

DOC_URI = "urn:doorman:openapi"

UNUSED_METHODS = ("PATCH", "TRACE")


@pytest.fixture(scope="module")
async def doc(stack: Stack) -> dict[str, Any]:
    async with stack.http.get(f"{stack.gateway.url}/openapi.json") as resp:
        return await resp.json()


def _concrete(path: str) -> str:
    """A documented path with made-up values for its parameters (the method is refused before they are read)."""
    return (path.replace("{bot_id}", "00000000-0000-4000-8000-000000000000")
                .replace("{contact_id}", "00000000-0000-4000-8000-000000000001")
                .replace("{workspace_id}", "00000000-0000-4000-8000-000000000002")
                .replace("{key_id}", "00000000-0000-4000-8000-000000000003")
                .replace("{session_id}", "s" * 43)
                .replace("{kid}", "k" * 12)
                .replace("{delivery_id}", "00000000-0000-4000-8000-000000000004"))


async def test_a_method_a_path_does_not_have_is_405_with_allow(stack: Stack, doc: dict[str, Any]) -> None:
    """RFC 9110: a 405 names the methods the resource has. The document declares that answer, and every
    path gives it, admin paths (with the token) and widget paths alike."""
    declared = doc["components"]["responses"]["MethodNotAllowed"]
    assert declared["headers"]["Allow"]["required"] is True
    assert declared["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    for path, item in doc["paths"].items():
        documented = {method.upper() for method in item}
        for method in UNUSED_METHODS:
            async with stack.http.request(method, stack.gateway.url + _concrete(path), headers=admin_headers()) as resp:
                assert resp.status == 405, (method, path, resp.status)
                assert (await resp.json())["error"]["code"] == "method_not_allowed"
                allowed = {m.strip() for m in resp.headers.get("Allow", "").split(",") if m.strip()}
            assert allowed - {"HEAD"} == documented, (path, allowed)


async def test_the_event_stream_is_described_event_by_event(stack: Stack, doc: dict[str, Any]) -> None:
    """The document describes what the stream sends, each event's name and its data's schema (the 3.1 way: the
    event-stream media type's ``schema`` is one event), so a client, or Schemathesis, can check each event."""
    bot_id = await create_bot(stack.http, stack.gateway.url)  # Custom Authentication off: falls back at once
    session_id = await open_session(stack.http, stack.gateway.url, {"bot_id": bot_id})
    async with stack.http.get(f"{stack.gateway.url}/v1/widget/sessions/{session_id}/events") as resp:
        text = await resp.text()
    events: list[dict[str, str]] = []
    for line in text.splitlines():
        field, _, value = line.partition(":")
        if field == "event":
            events.append({"event": value.strip()})
        elif field == "data":
            events[-1]["data"] = value.strip()
    assert [e["event"] for e in events] == ["outcome"]

    media = doc["paths"]["/v1/widget/sessions/{session_id}/events"]["get"]["responses"]["200"]["content"]
    schema = media["text/event-stream"]["schema"]
    validate(doc, schema, events[0])  # the event's shape: its name, data a string
    [branch] = [b for b in schema["oneOf"] if b["properties"]["event"]["const"] == "outcome"]
    data = branch["properties"]["data"]
    assert data["contentMediaType"] == "application/json"
    validate(doc, data["contentSchema"], json.loads(events[0]["data"]))  # the data: the session as GET returns it
    assert {b["properties"]["event"]["const"] for b in schema["oneOf"]} == {"outcome", "ended"}


def validate(doc: dict[str, Any], schema: dict[str, Any], value: Any) -> None:
    """``value`` is valid against ``schema`` (whose references point into ``doc``)."""
    registry = Registry().with_resource(DOC_URI, Resource.from_contents(doc, default_specification=DRAFT202012))
    resolved = json.loads(json.dumps(schema).replace('"#/', f'"{DOC_URI}#/'))
    Draft202012Validator(resolved, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(value)


async def test_testing_a_bot_without_an_auth_url_is_a_state_conflict(stack: Stack, doc: dict[str, Any]) -> None:
    """The request is valid (the document allows it); the bot's state is what is wrong: 409 ``invalid_state``, and
    the field in the way named, as the admin page shows it."""
    bot_id = await create_bot(stack.http, stack.gateway.url)
    async with stack.http.post(f"{stack.gateway.url}/v1/bots/{bot_id}/custom-auth/test", json={"access_token": "t"},
                               headers=admin_headers()) as resp:
        assert resp.status == 409, await resp.text()
        error = (await resp.json())["error"]
    assert error["code"] == "invalid_state" and [f["field"] for f in error["fields"]] == ["auth_url"]
    assert "409" in doc["paths"]["/v1/bots/{bot_id}/custom-auth/test"]["post"]["responses"]
