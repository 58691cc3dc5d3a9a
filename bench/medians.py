"""``python -m bench.medians RUN.json RUN.json RUN.json``: the targets over several full runs, judged by their median.

The direct reference alone moves by up to 30 % between runs of this shared box, so a target counts as met when
the median of (at least) three runs meets it. Prints one Markdown table: each run's figure, the median, the
target and whether the median meets it (docs/performance.md keeps the last one).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .client import CLIENT_PATHS
from .report import PATH_NAMES

Target = tuple[str, str, Callable[[dict[str, Any]], float | None], str, float, bool]  # test, measure, read, shown, bound, at_least


def _get(r: dict[str, Any], *keys: str) -> float | None:
    for k in keys:
        if not isinstance(r, dict) or k not in r or r[k] is None:
            return None
        r = r[k]
    return float(r)  # type: ignore[arg-type]


def targets() -> list[Target]:
    out: list[Target] = [
        ("1", "gateway POST alone / plain aiohttp", lambda r: _get(r, "post", "ratio_alone"), ">= 0.4", 0.4, True),
        ("2", "opens resolved end to end per s", lambda r: _get(r, "e2e", "saturation", "per_second"), ">= 1,300", 1300, True),
        ("2", "end to end / direct reference (same run)", lambda r: _get(r, "ratios", "e2e_vs_direct"), ">= 0.75", 0.75, True),
        ("2", "open to outcome at 300 opens/s, p99 ms", lambda r: _get(r, "e2e", "fixed", "p99_ms"), "<= 50", 50, False),
        ("4", "contacts backlog drain / raw upsert", lambda r: _get(r, "drain", "ratio"), ">= 0.3", 0.3, True),
        ("6", "gateway RSS holding 10,000 streams, MB", lambda r: _get(r, "streams", "gateway_rss_peak_mb"), "<= 150", 150, False),
    ]
    for path in CLIENT_PATHS:
        name = PATH_NAMES[path]
        out += [
            ("8", f"overload, {name}: time to an answer p99 ms",
             lambda r, p=path: _get(r, "overload", p, "time_to_answer", "p99_ms"), "<= 2,000", 2000, False),
            ("8", f"overload, {name}: verified goodput / saturation",
             lambda r, p=path: _get(r, "ratios", "overload_goodput_vs_e2e", p), ">= 0.8", 0.8, True),
            ("8", f"overload, {name}: sessions resolved late",
             lambda r, p=path: _get(r, "overload", p, "late"), "= 0", 0, False),
        ]
    return out


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if abs(x) >= 100 or x.is_integer() else f"{x:.2f}"


def table(runs: Sequence[dict[str, Any]]) -> str:
    heads = ["#", "measure", *(f"run {i}" for i in range(1, len(runs) + 1)), "median", "target", "met"]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for test, measure, read, shown, bound, at_least in targets():
        values = [read(r) for r in runs]
        present = [v for v in values if v is not None]
        median = statistics.median(present) if present else None
        met = "-" if median is None else ("yes" if (median >= bound if at_least else median <= bound) else "**missed**")
        lines.append("| " + " | ".join([test, measure, *map(_fmt, values), _fmt(median), shown, met]) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str]) -> None:
    if not argv:
        raise SystemExit("usage: python -m bench.medians RUN.json [RUN.json ...]")
    print(table([json.loads(Path(a).read_text()) for a in argv]))


if __name__ == "__main__":
    main(sys.argv[1:])
