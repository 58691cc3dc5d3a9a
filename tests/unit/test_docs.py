"""The docs hold what the code does: the tests they name exist, their links lead somewhere, the generated
reference pages match the code, the codes they list are the code's, and nothing cites a file outside the
repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from doorman import docs

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?")
README_MAX_LINES = 250


def _references(doc: Path) -> list[tuple[str, str | None]]:
    return [(m.group(1), m.group(2)) for m in TEST_REF.finditer(doc.read_text())]


def test_security_names_its_tests() -> None:
    assert len(_references(ROOT / "docs" / "security.md")) >= 20


@pytest.mark.parametrize("doc", PAGES, ids=lambda d: d.name)
def test_every_test_a_doc_names_exists(doc: Path) -> None:
    missing = []
    for path, name in _references(doc):
        source = ROOT / path
        if not source.is_file():
            missing.append(path)
        elif name and not re.search(rf"^(?:async )?def {name}\(", source.read_text(), re.MULTILINE):
            missing.append(f"{path}::{name}")
    assert not missing, f"{doc.name} names tests that do not exist: {missing}"


# -- links ------------------------------------------------------------------------------------------

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub makes of a page's headings (a repeated heading gets -1, -2, ...)."""
    seen: dict[str, int] = {}
    anchors = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        if m := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line):
            base = docs.slug(re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1)))
            count = seen.get(base, 0)
            seen[base] = count + 1
            anchors.add(base if count == 0 else f"{base}-{count}")
    return anchors


def _links(page: Path) -> list[str]:
    text = CODE_SPAN.sub("", FENCE.sub("", page.read_text()))
    return [m.group(1) or m.group(2) for m in LINK.finditer(text)]


@pytest.mark.parametrize("page", PAGES, ids=lambda d: d.name)
def test_every_relative_link_resolves_to_a_file_and_anchor(page: Path) -> None:
    broken = []
    for target in _links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: not ours to check
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists() or (anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved)):
            broken.append(target)
    assert not broken, f"{page.name} links to what does not exist: {broken}"


def test_the_link_check_sees_a_broken_anchor(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## A `code` heading, with punctuation!\n\n[ok](#a-code-heading-with-punctuation) "
                    "[bad](#nowhere) [file](missing.md)\n")
    assert _anchors(page) == {"title", "a-code-heading-with-punctuation"}
    assert _links(page) == ["#a-code-heading-with-punctuation", "#nowhere", "missing.md"]


def test_the_readme_is_a_guide_not_a_reference() -> None:
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; the reference belongs in docs/"


# -- generated pages --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(docs.PAGES))
def test_generated_page_matches_the_code(name: str) -> None:
    """docs/api.md is the OpenAPI document rendered, docs/settings.md the settings classes: regenerated here,
    they must be what is in the repository (`doorman docs` rewrites them)."""
    assert (ROOT / "docs" / name).read_text() == docs.PAGES[name](), f"docs/{name} is stale: run `doorman docs`"


def test_the_api_page_names_every_operation_and_schema() -> None:
    document = docs.openapi_document()
    page = (ROOT / "docs" / "api.md").read_text()
    for path, item in document["paths"].items():
        for method in item:
            assert f"### {method.upper()} {path}\n" in page
    for name in document["components"]["schemas"]:
        assert f"### {name}\n" in page


def test_the_settings_page_names_every_variable() -> None:
    page = (ROOT / "docs" / "settings.md").read_text()
    for cls in docs.processes().values():
        for name in cls.model_fields:
            assert f"### DOORMAN_{name.upper()}\n" in page


# -- nothing outside the repository -----------------------------------------------------------------

OUTSIDE = re.compile(r"\b(?:DESIGN|STYLE)\b(?:\.md)?")
SKIPPED = {".git", ".venv", "node_modules", "__pycache__", ".pytest_cache", ".hypothesis"}
CODE_DIRS = ("services", "shared", "doorman", "scripts", "deploy", "tests")


def _tracked_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / f for f in listed if not SKIPPED & set(Path(f).parts) and (ROOT / f).is_file()]


def _citing(files: list[Path]) -> list[str]:
    found = []
    for path in files:
        if path == Path(__file__).resolve():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:  # images
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}")
    return found


def test_the_docs_cite_nothing_outside_the_repository() -> None:
    files = [f for f in _tracked_files() if f.relative_to(ROOT).parts[0] not in CODE_DIRS]
    assert not _citing(files), f"these cite a file outside the repository: {_citing(files)}"


@pytest.mark.parametrize("folder", CODE_DIRS)
def test_the_code_cites_nothing_outside_the_repository(folder: str) -> None:
    files = [f for f in _tracked_files() if f.relative_to(ROOT).parts[0] == folder]
    assert not _citing(files), f"these cite a file outside the repository: {_citing(files)}"


# -- docs/codes.md ----------------------------------------------------------------------------------

SOURCES = ("services", "shared", "doorman")


def _source() -> str:
    return "\n".join(p.read_text() for folder in SOURCES for p in sorted((ROOT / folder).rglob("*.py")))


def _enum(schema: dict, *path: str) -> set[str]:
    """The values of the enum at ``path`` in a schema of the OpenAPI document (through unions and items)."""
    for key in path:
        schema = schema[key]
    for union in ("anyOf", "oneOf"):
        for branch in schema.get(union, []):
            if "enum" in branch:
                return set(branch["enum"])
    return set(schema["enum"])


def _codes_of_the_code() -> dict[str, set[str]]:
    """Each table of docs/codes.md and the codes the code has for it, read from the code itself: the OpenAPI
    document's enums, and the literals the verifier and the gateway raise."""
    source = _source()
    schemas = docs.openapi_document()["components"]["schemas"]
    aiohttp_answers = {"not_found", "method_not_allowed"}  # aiohttp's own 404 and 405, made JSON by the gateway
    return {
        "Fallback reasons": _enum(schemas["FallbackReason"]),
        "Signed identity token checks": set(re.findall(r'TokenRejected\(\s*"(\w+)"', source))
        | set(re.findall(r'code, failure = "(\w+)"', source)),
        "Widget token refusals": set(re.findall(r'_rejected\(f?"(\w+):', source)),
        "HTTP error codes": set(re.findall(r'\berror\(\s*\d{3},\s*"(\w+)"', source)) | aiohttp_answers,
        "Session statuses": _enum(schemas["SessionView"], "properties", "status"),
        "Who ended a session": _enum(schemas["AuthEvent"], "properties", "ended_by"),
        "Identity changes": _enum(schemas["ContactHistoryEntry"], "properties", "kind"),
        "Field sources": _enum(schemas["ContactDetail"], "properties", "sources", "additionalProperties"),
        "Webhook events": _enum(schemas["WebhookDelivery"], "properties", "type"),
        "Webhook delivery statuses": _enum(schemas["WebhookDelivery"], "properties", "status"),
        "Circuit breaker states": _enum(schemas["AuthBreaker"], "properties", "state"),
        "Refused opens": set(re.findall(r'SESSIONS_REFUSED\.labels\("(\w+)"\)', source)),
        "Message headers": set(re.findall(r'^\w+_HEADER = "(doorman-[\w-]+)"', source, re.MULTILINE)),
    }


def _codes_page() -> dict[str, dict[str, str]]:
    """Each ``## `` section of docs/codes.md: the code in its table's first column -> the row's last cell."""
    sections: dict[str, dict[str, str]] = {}
    current = None
    for line in (ROOT / "docs" / "codes.md").read_text().splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), {})
        elif current is not None and (m := re.match(r"^\| `([\w.-]+)` \|", line)):
            current[m.group(1)] = line.rstrip(" |").rsplit(" | ", 1)[-1]
    return sections


def test_codes_page_lists_the_codes_of_the_code() -> None:
    page = _codes_page()
    for section, codes in _codes_of_the_code().items():
        assert codes, f"found no code for {section!r} in the code: the test reads it wrong"
        assert set(page.get(section, {})) == codes, (
            f"docs/codes.md, {section!r}: missing {sorted(codes - set(page.get(section, {})))}, "
            f"not in the code {sorted(set(page.get(section, {})) - codes)}")
    assert set(page) == set(_codes_of_the_code()), "a section of docs/codes.md is not checked against the code"


def test_codes_page_quotes_what_the_visitor_reads() -> None:
    from shared.widget_view import VISITOR_MESSAGES

    page = _codes_page()["Fallback reasons"]
    assert {reason.value: message for reason, message in VISITOR_MESSAGES.items()} == page


# -- code paths the docs name exist -----------------------------------------------------------------

CODE_PATH = re.compile(r"`((?:services|shared|doorman|tests|scripts|deploy|bench|docs)/[\w./-]+?)(?::[\w.]+)?`")


def test_every_path_the_docs_name_exists() -> None:
    """A module moved or renamed leaves no doc pointing at where it was (a file the project makes when it runs,
    git-ignored, such as deploy/.env, counts as named on purpose)."""
    missing = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            for match in CODE_PATH.finditer(line):
                path = match[1].rstrip(".")
                ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False).returncode == 0
                if not (ROOT / path).exists() and not ignored:
                    missing.append(f"{doc.relative_to(ROOT)}:{number}: {path}")
    assert not missing, missing


def test_the_readmes_layout_names_every_module() -> None:
    """The README's Layout is the map of the tree: every module of the services, shared/ and the CLI is on it."""
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    layout = layout.split("```")[1]
    modules = [p for folder in ("services", "shared", "doorman") for p in (ROOT / folder).rglob("*.py")
               if p.name != "__init__.py" and "migrations" not in p.parts]
    missing = [str(p.relative_to(ROOT)) for p in modules if not re.search(rf"\b{re.escape(p.stem)}\b", layout)]
    assert not missing, f"not on the README's Layout: {missing}"
