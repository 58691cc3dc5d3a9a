"""Each tier holds only what its network position allows (STYLE 16): the layer rules are the
import-linter contracts in pyproject.toml, and the gateway makes no HTTP client of its own."""

from __future__ import annotations

import ast
import os
from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[2]
# What making an outbound HTTP call takes: aiohttp's client, or Doorman's guarded one (services.verifier.outbound).
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
