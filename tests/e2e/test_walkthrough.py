"""The README's walk-through, run as a reader would run it: its shell block, as written, against a running
stack and the demo customer API, and every sample output it shows (`# -> ...`) checked against what came
back. A sample value written `...` stands for anything (an id, a time, the fields left out)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from doorman.demo_api import make_app
from tests.conftest import ADMIN_TOKEN, Stack

ROOT = Path(__file__).resolve().parents[2]
MAKE_RUN_GATEWAY, MAKE_RUN_DEMO = "http://127.0.0.1:8080", "http://127.0.0.1:8090"


def walkthrough() -> str:
    """The shell block of the README's "Five-minute walk-through"."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Five-minute walk-through", 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.DOTALL).group(1)  # type: ignore[union-attr]


def samples(script: str) -> list[str]:
    """Each sample output: a `# -> ` line and the `#    ` lines that go on with it, without the comment marks."""
    found: list[list[str]] = []
    current: list[str] | None = None
    for line in script.splitlines():
        if line.startswith("# -> "):
            current = [line[5:]]
            found.append(current)
        elif current is not None and (line == "#" or line.startswith("#    ")):
            current.append(line[1:])
        else:
            current = None
    return ["\n".join(sample) for sample in found]


def pattern(expected: list[str]) -> re.Pattern[str]:
    """The outputs, one after the other, whitespace-insensitive; `...` matches anything."""
    parts = [re.escape(" ".join(sample.split())).replace(re.escape("..."), ".*?") for sample in expected]
    return re.compile(r"\s*".join(parts))


def test_the_sample_reader_sees_every_sample() -> None:
    script = "a\n# -> {\"x\": ...,\n#     \"y\": 1}\n#\n#    z\n# 2. next\nb\n# -> 204\n"
    assert samples(script) == ['{"x": ...,\n     "y": 1}\n\n    z', "204"]
    assert pattern(samples(script)).fullmatch('{"x": "abc", "y": 1} z 204')
    assert not pattern(samples(script)).fullmatch('{"x": "abc", "y": 2} z 204')


@pytest.fixture
async def demo_api(stack: Stack) -> AsyncIterator[str]:
    runner = web.AppRunner(make_app(gateway_url=stack.gateway.url), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_the_readme_walkthrough_shows_what_the_api_answers(stack: Stack, demo_api: str, tmp_path: Path) -> None:
    # The same commands, pointed at this test's stack instead of `make run`'s ports and .doorman-dev.env.
    runnable = walkthrough().replace(MAKE_RUN_GATEWAY, stack.gateway.url).replace(MAKE_RUN_DEMO, demo_api)
    (tmp_path / ".doorman-dev.env").write_text(f"DOORMAN_ADMIN_TOKEN={ADMIN_TOKEN}\n")
    expected = samples(runnable)
    assert len(expected) >= 6, "the walk-through shows its outputs as `# -> ...` lines"
    process = await asyncio.create_subprocess_exec(
        "bash", "-euo", "pipefail", "-c", runnable, cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    output = " ".join(out.decode().split())
    assert pattern(expected).fullmatch(output), f"the README's samples:\n{expected}\nwhat came back:\n{output}"
