"""Every JSON sample in docs/ is what the code accepts or returns: each is marked with what it is
(``<!-- sample: KIND -->`` on the line before its fence) and checked against the code's own shape."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from services.gateway.admin.views import WidgetToken
from services.gateway.schemas import CustomAuthSettingsIn
from shared.discover import DiscoverResult
from services.verifier.answer import parse_identity_response
from services.verifier.failures import AuthFailure
from shared.events import IdentifyMethod
from shared.widget_view import SessionView

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = re.compile(r"(?:<!-- sample: ([\w-]+) [^>]*-->\n)?```json\n(.*?)```", re.S)

CHECKS: dict[str, Callable[[Any], object]] = {
    # what a business's Authentication URL answers: verifies (a bot identifying by id)
    "business-answer": lambda sample: parse_identity_response(200, json.dumps(sample).encode(), IdentifyMethod.id),
    "custom-auth-settings": CustomAuthSettingsIn.model_validate,  # a PUT body the API accepts
    "widget-token": WidgetToken.model_validate,  # what an identity push answers
    "session-view": TypeAdapter(SessionView).validate_python,  # what the widget API answers (no field missing or extra)
    "discover-result": DiscoverResult.model_validate,  # what the OpenID Provider's Discover action answers
}


def _samples() -> list[tuple[str, str | None, str]]:
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for match in SAMPLE.finditer(doc.read_text()):
            line = doc.read_text()[:match.start(2)].count("\n")
            found.append((f"{doc.relative_to(ROOT)}:{line}", match[1], match[2]))
    return found


@pytest.mark.parametrize(("where", "kind", "text"), _samples(), ids=[s[0] for s in _samples()])
def test_each_json_sample_is_what_the_code_takes_or_gives(where: str, kind: str | None, text: str) -> None:
    assert kind in CHECKS, f"{where}: mark the sample with <!-- sample: KIND --> ({', '.join(CHECKS)})"
    CHECKS[kind](json.loads(text))


def test_a_sample_that_is_wrong_is_caught() -> None:
    with pytest.raises(ValueError):
        CHECKS["session-view"]({"session_id": "x", "status": "fallback", "contact": None})  # fields missing
    with pytest.raises(AuthFailure, match="data.id is missing"):
        CHECKS["business-answer"]({"status": True, "data": {"name": "no id"}})
