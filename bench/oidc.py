"""Test 2's OpenID Connect variant: a real OpenID Provider and signed-in visitors.

The provider is the tests' pinned one (panva's ``oidc-provider``, tests/oidc_provider/), run by Node.js as a
child of the harness (role ``provider``), so a phase's CPU meter counts it. Visitors sign in there before the
timed phase, through its real authorization-code flow (tests/openid_provider.py's ``login``); Doorman then
checks each open's access token at the provider's userinfo endpoint. The harness installs nothing: without
Node.js or the provider's packages (``npm ci`` in tests/oidc_provider) the variant is skipped.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tests.openid_provider import BOT_CLIENT, HERE, OpenIDProvider

from .procs import Child

ROLE = "provider"
SIGN_IN_CONCURRENCY = 8  # logins at once: the provider is one Node.js process on the same cores


def missing() -> str | None:
    """Why the provider cannot run here, or None when it can."""
    if shutil.which("node") is None:
        return "Node.js is not on PATH"
    if not (HERE / "node_modules" / "oidc-provider").is_dir():
        return "tests/oidc_provider has no node_modules (run `npm ci` there)"
    return None


def ready(output: str) -> dict[str, Any] | None:
    """The line provider.js prints once it listens (``{"issuer": ..., "clients": [...], "redirect_uri": ...}``),
    if its output has it yet."""
    for line in output.splitlines():
        if not line.startswith("{"):
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and "issuer" in doc:
            return doc
    return None


@asynccontextmanager
async def running(env: dict[str, str], log_dir: Path, timeout: float = 30.0) -> AsyncIterator[tuple[Child, OpenIDProvider]]:
    """The provider on a free port of 127.0.0.1, started and ready; stopped after. Its store keeps every token
    (``MEMORY_STORE=unbounded``): the library's development store forgets all but its latest 1,000 entries, some
    150 sign-ins."""
    node = shutil.which("node")
    assert node is not None, missing()
    child = Child(ROLE, [node, str(HERE / "provider.js")], {**env, "MEMORY_STORE": "unbounded"},
                  log_dir / f"{ROLE}-{time.monotonic_ns()}.log")
    await child.start()
    try:
        deadline = time.monotonic() + timeout
        while (doc := ready(child.log.read_text(errors="replace"))) is None:
            if not child.alive:
                raise RuntimeError(f"the OpenID Provider exited; see {child.log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the OpenID Provider did not start in {timeout:g} s; see {child.log}")
            await asyncio.sleep(0.1)
        assert child.proc is not None
        yield child, OpenIDProvider(doc["issuer"], {c["client_id"]: c["client_secret"] for c in doc["clients"]},
                                    doc["redirect_uri"], child.proc)
    finally:
        await child.stop()


async def access_tokens(op: OpenIDProvider, users: Sequence[str], concurrency: int = SIGN_IN_CONCURRENCY) -> list[str]:
    """Each user signs in to the bot's client (login and consent, code, token endpoint); their access tokens, in order."""
    slots = asyncio.Semaphore(concurrency)

    async def one(user: str) -> str:
        async with slots:
            return await op.login(user, BOT_CLIENT)

    return list(await asyncio.gather(*(one(u) for u in users)))


def open_bodies(bots: Sequence[str], tokens: Sequence[str]) -> list[bytes]:
    """Widget-open bodies for the (bot, visitor) pairs the callback variant's ``i % bots``, ``i % visitors``
    walk through: visitor ``n`` opens with ``tokens[n]`` whichever bot it opens."""
    return [json.dumps({"bot_id": bots[i % len(bots)], "access_token": tokens[i % len(tokens)]}).encode()
            for i in range(math.lcm(len(bots), len(tokens)))]
