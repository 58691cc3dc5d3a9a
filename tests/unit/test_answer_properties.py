"""Property tests for reading the business's answer to the identity call (``services.verifier.answer``):
any HTTP status and any body end in an Identity or an AuthFailure with a defined reason, never another
exception; and every answer that does not verify is either unavailable (408, 429, 5xx: retried, and the
outage grace may answer) or a refusal for the grace cache (``services.verifier.failures.VERDICTS``)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from services.verifier.answer import parse_identity_response
from services.verifier.failures import AuthFailure, Grace
from shared.events import FallbackReason, Identity, IdentifyMethod
from tests.strategies import BODIES

PROPERTY = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

STATUSES = st.integers(min_value=0, max_value=999) | st.sampled_from([200, 201, 204, 302, 401, 403, 404, 408, 429, 500, 503])


@settings(PROPERTY)
@given(STATUSES, BODIES, st.sampled_from(list(IdentifyMethod)))
@example(200, b'{"data": {"id": NaN}}', IdentifyMethod.id)
@example(200, b'{"data": {"id": 1' + b"0" * 5000 + b"}}", IdentifyMethod.id)
@example(200, b"[" * 100_000, IdentifyMethod.id)
@example(200, b'{"status": true, "data": {"id": "7", "metadata": {"a": 1e400}}}', IdentifyMethod.id)
def test_any_status_and_body_end_in_an_identity_or_a_defined_failure(
        status: int, body: bytes, method: IdentifyMethod) -> None:
    try:
        identity = parse_identity_response(status, body, method)
    except AuthFailure as failure:
        assert failure.reason in (FallbackReason.auth_rejected, FallbackReason.auth_unavailable,
                                  FallbackReason.invalid_response)
        assert failure.detail.strip()
        # Unavailable exactly when the business did not really answer: retried, and the grace may answer;
        # everything else refuses the token.
        unavailable = status in (408, 429) or 500 <= status <= 599
        assert (failure.reason is FallbackReason.auth_unavailable) == unavailable
        assert failure.retry == unavailable
        assert failure.verdict.grace is (Grace.ANSWERS if unavailable else Grace.REFUSES)
    else:
        assert 200 <= status <= 299 and isinstance(identity, Identity) and identity.identifier
        json.dumps(identity.metadata, allow_nan=False)  # storable as JSON
