"""The Testing panel, asked of a verifier: the gateway calls no business itself (it holds no outbound
client). The sample goes to the verifiers' panel queue with its access token sealed, and the verifier's
answer (:class:`shared.panel.TestResult`) is what ``POST /v1/bots/{bot_id}/custom-auth/test`` returns."""

from __future__ import annotations

from uuid import UUID

from aiohttp import web

from shared.crypto import Secrets
from shared.messaging import Topology
from shared.panel import REQUEST_TYPE, TESTING_QUEUE, PanelAnswer, PanelRequest, TestResult
from shared.rpc import Asker, Unanswered

from ..http_errors import error
from ..schemas import TestRequest


async def run_test(ask: Asker, topology: Topology, secrets: Secrets, bot_id: UUID, sample: TestRequest, *,
                   patience: float) -> TestResult:
    """The verifier's dry run of ``sample`` with the bot's current settings; 503 ``verifier_unavailable``
    when no verifier answers within ``patience`` seconds."""
    request = PanelRequest(bot_id=bot_id, patience_seconds=patience, **sample.model_dump())
    try:
        body = await ask.ask(topology.queue(TESTING_QUEUE), request.on_the_wire(secrets), timeout=patience,
                             kind=REQUEST_TYPE)
    except Unanswered:
        raise _unavailable(patience) from None
    answer = PanelAnswer.model_validate_json(body)
    if answer.refused == "bot_not_found":
        raise error(404, "bot_not_found", "no bot has this bot_id")
    if answer.refused == "no_auth_url":
        raise error(409, "invalid_state", "set the bot's auth_url before testing",
                    fields=[{"field": "auth_url", "message": "not set"}])
    assert answer.result is not None
    return answer.result


def _unavailable(patience: float) -> web.HTTPException:
    return error(503, "verifier_unavailable", (
        f"no verifier answered within {patience:g} s: the test runs in the verifier service, which calls your "
        "Authentication URL; check that a verifier is running, then try again"), headers={"Retry-After": "5"})
