"""A service tunes Python's cyclic garbage collector once started (shared.service.tune_gc), in its own process."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import gc, json
from shared.service import tune_gc
before = gc.get_threshold()
tune_gc({young})
print(json.dumps({{"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count()}}))
"""


def _tuned(young: int) -> dict[str, list[int] | int]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(young=young)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_what_exists_at_start_is_frozen_and_young_collections_wait_longer() -> None:
    tuned = _tuned(50_000)
    assert tuned["before"] == [700, 10, 10]
    assert tuned["after"] == [50_000, 10, 10]
    assert tuned["frozen"] > 1000  # the modules imported so far, at least


def test_zero_keeps_pythons_defaults() -> None:
    assert _tuned(0) == {"before": [700, 10, 10], "after": [700, 10, 10], "frozen": 0}
