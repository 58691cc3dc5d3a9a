"""The suite waits on conditions, not on the clock (``tests.waits.wait_until``): a fixed sleep is kept only
where time is what a test is about, says so on its line or the line before, and there are few of them."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
MOST = 10
SAYS_SO = "# time is the subject:"


def sleeps(source: str) -> list[int]:
    """Lines of the calls to a ``sleep`` (``asyncio.sleep``, ``time.sleep``, ``sleep``) that wait at all: every
    one but ``sleep(0)``, which only yields to the loop."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        if name != "sleep":
            continue
        if node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value == 0:
            continue
        found.append(node.lineno)
    return sorted(found)


def unexplained(source: str) -> list[int]:
    lines = source.splitlines()
    return [n for n in sleeps(source) if not any(SAYS_SO in lines[i - 1] for i in (n, n - 1) if i >= 1)]


def every_sleep() -> dict[str, list[int]]:
    found = {}
    for path in sorted(TESTS.rglob("*.py")):
        if lines := sleeps(path.read_text()):
            found[str(path.relative_to(TESTS))] = lines
    return found


def test_the_counter_sees_every_kind_of_sleep_and_lets_a_yield_pass() -> None:
    source = """
import asyncio, time
from asyncio import sleep
async def f(pause):
    await asyncio.sleep(0)
    await asyncio.sleep(0.1)
    time.sleep(1)
    await sleep(pause)
    await asyncio.sleep(pause)  # time is the subject: a pause
    # time is the subject: another
    await asyncio.sleep(2)
"""
    assert sleeps(source) == [6, 7, 8, 9, 11]
    assert unexplained(source) == [6, 7, 8]


def test_at_most_ten_fixed_sleeps_in_the_suite() -> None:
    found = every_sleep()
    assert sum(len(lines) for lines in found.values()) <= MOST, found


def test_each_fixed_sleep_says_time_is_its_subject() -> None:
    missing = {name: lines for path in sorted(TESTS.rglob("*.py"))
               if (lines := unexplained(path.read_text())) and (name := str(path.relative_to(TESTS)))}
    assert missing == {}, f"a sleep without {SAYS_SO!r} on its line or the line before; wait with wait_until instead"
