"""Each tier holds only what its network position allows: the layer rules are the import-linter contracts in
pyproject.toml (no service imports another; shared/ imports no service), the gateway makes no HTTP client of its
own, and shared/ holds only what at least two of the gateway, the verifier, the contacts service and the CLI use."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import grimp
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[2]
# What making an outbound HTTP call takes: aiohttp's client, or the verifier's guarded one (services.verifier.outbound).
HTTP_CLIENTS = {"ClientSession", "TCPConnector", "request", "OutboundClient", "outbound_client"}


def test_the_import_contracts_hold() -> None:
    cwd = os.getcwd()
    os.chdir(ROOT)  # import-linter reads pyproject.toml from the working directory
    try:
        assert lint_imports(no_cache=True, no_logo=True) == 0, "an import contract is broken (see the output above)"
    finally:
        os.chdir(cwd)


def test_the_gateway_makes_no_http_client() -> None:
    used = []
    for path in sorted((ROOT / "services" / "gateway").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("aiohttp"):
                used += [f"{path.name}: from {node.module} import {a.name}" for a in node.names if a.name in HTTP_CLIENTS]
            elif name in HTTP_CLIENTS and (name != "request" or _on_aiohttp(node)):
                used.append(f"{path.name}:{node.lineno}: {name}")
    assert used == []


def _on_aiohttp(node: ast.AST) -> bool:
    """``aiohttp.request(...)``, not a handler's ``request`` argument."""
    return isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "aiohttp"


USERS = {"gateway": "services.gateway", "verifier": "services.verifier", "contacts": "services.contacts",
         "cli": "doorman"}


def shared_users(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    """Which of :data:`USERS` each module of shared/ serves: those that import it, and those served by a module of
    shared/ that imports it (a rule that a shared module uses is shared too)."""
    def user(importer: str) -> str | None:
        return next((name for name, package in USERS.items()
                     if importer == package or importer.startswith(package + ".")), None)

    modules = sorted(m for m in graph.modules if m.startswith("shared."))
    users = {m: {u for i in graph.find_modules_that_directly_import(m) if (u := user(i))} for m in modules}
    changed = True
    while changed:
        changed = False
        for m in modules:
            via = set().union(*(users[i] for i in graph.find_modules_that_directly_import(m) if i in users))
            if not via <= users[m]:
                users[m] |= via
                changed = True
    return users


def test_shared_holds_only_what_two_users_share() -> None:
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        graph = grimp.build_graph("services", "shared", "doorman", cache_dir=None)
    finally:
        os.chdir(cwd)
    users = shared_users(graph)
    assert len(users) > 20, "the import graph was not read"
    one_users = {module: sorted(served) for module, served in users.items() if len(served) < 2}
    assert one_users == {}, "move these into the one that uses them"


def test_the_shared_rule_sees_a_module_of_one_user() -> None:
    """The check above on a graph made here: a module one service imports is caught, one that a shared module used
    by two imports is not."""
    graph = grimp.ImportGraph()
    for module in ("services.gateway.app", "services.verifier.main", "shared.common", "shared.rule",
                   "shared.own", "doorman.cli"):
        graph.add_module(module)
    graph.add_import(importer="services.gateway.app", imported="shared.common")
    graph.add_import(importer="doorman.cli", imported="shared.common")
    graph.add_import(importer="shared.common", imported="shared.rule")
    graph.add_import(importer="services.verifier.main", imported="shared.own")
    users = shared_users(graph)
    assert users == {"shared.common": {"gateway", "cli"}, "shared.rule": {"gateway", "cli"}, "shared.own": {"verifier"}}
