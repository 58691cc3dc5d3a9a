"""The docs name the tests that prove their promises: every test they name exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md"))
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?")


def _references(doc: Path) -> list[tuple[str, str | None]]:
    return [(m.group(1), m.group(2)) for m in TEST_REF.finditer(doc.read_text())]


def test_security_names_its_tests() -> None:
    assert len(_references(ROOT / "docs" / "security.md")) >= 20


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_test_a_doc_names_exists(doc: Path) -> None:
    missing = []
    for path, name in _references(doc):
        source = ROOT / path
        if not source.is_file():
            missing.append(path)
        elif name and not re.search(rf"^(?:async )?def {name}\(", source.read_text(), re.MULTILINE):
            missing.append(f"{path}::{name}")
    assert not missing, f"{doc.name} names tests that do not exist: {missing}"
