"""Sampling profiles of the services under load (py-spy, speedscope format) and their summaries.

``record`` runs one ``py-spy record --nonblocking`` per process (sampling only: the process is not
paused); ``summarise`` reads a speedscope file back and says where the CPU went: by package, and the
top functions by self and by inclusive time. Idle time (waiting in epoll) is not sampled, so the
shares are shares of the CPU the process used.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from .procs import ROOT


def py_spy() -> str | None:
    venv = ROOT / ".venv" / "bin" / "py-spy"
    return str(venv) if venv.exists() else shutil.which("py-spy")


async def record(pids: dict[str, int], seconds: float, out_dir: Path, prefix: str, rate: int = 200) -> dict[str, Path]:
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    out_dir.mkdir(parents=True, exist_ok=True)
    procs, files = [], {}
    for name, pid in pids.items():
        path = out_dir / f"profile-{prefix}-{name}.speedscope.json"
        files[name] = path
        procs.append(await asyncio.create_subprocess_exec(
            exe, "record", "--pid", str(pid), "--rate", str(rate), "--duration", str(int(seconds)),
            "--format", "speedscope", "--output", str(path), "--nonblocking",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE))
    for p in procs:
        _, err = await asyncio.wait_for(p.communicate(), seconds + 60)
        if p.returncode:
            raise RuntimeError(f"py-spy failed: {err.decode()[-500:]}")
    return files


_SITE = re.compile(r"site-packages/([A-Za-z0-9_]+)")
_STDLIB = re.compile(r"lib/python3\.\d+/([A-Za-z0-9_]+)")


def bucket(path: str) -> str:
    """Which package a frame's file belongs to: a site-package, one of Doorman's folders, or the stdlib module."""
    if m := _SITE.search(path):
        return m.group(1)
    rel = path.replace(str(ROOT) + "/", "")
    if rel.split("/", 1)[0] in ("shared", "services", "doorman", "bench") and "/" in rel:
        parts = rel.split("/")
        return "/".join(parts[:2]) if parts[0] == "services" else parts[0]
    if m := _STDLIB.search(path):
        return f"stdlib:{m.group(1)}"
    return "other"


def _own(frame: dict[str, Any]) -> bool:
    """A frame of Doorman's own code (shared/, services/), where a change would land."""
    rel = (frame.get("file") or "").replace(str(ROOT) + "/", "")
    return rel.startswith(("shared/", "services/"))


def _short(frame: dict[str, Any]) -> str:
    path = frame.get("file") or "?"
    rel = path.replace(str(ROOT) + "/", "")
    if m := re.search(r"site-packages/(.*)", rel):
        rel = m.group(1)
    elif m := re.search(r"lib/python3\.\d+/(.*)", rel):
        rel = m.group(1)
    return f"{frame.get('name')} ({rel})"


def summarise(path: Path, top: int = 15) -> dict[str, Any]:
    doc = json.loads(path.read_text())
    frames = doc["shared"]["frames"]
    self_counts: Counter[str] = Counter()
    total_counts: Counter[str] = Counter()
    own_counts: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    samples = 0
    for profile in doc["profiles"]:
        for stack, weight in zip(profile["samples"], profile["weights"]):
            if not stack:
                continue
            samples += weight
            leaf = frames[stack[-1]]
            self_counts[_short(leaf)] += weight
            packages[bucket(leaf.get("file") or "")] += weight
            for name in {_short(frames[i]) for i in stack}:
                total_counts[name] += weight
            for name in {_short(frames[i]) for i in stack if _own(frames[i])}:
                own_counts[name] += weight
    pct = lambda c: round(100 * c / samples, 1) if samples else 0.0  # noqa: E731
    inclusive = [(n, c) for n, c in total_counts.most_common() if c < 0.97 * samples]
    return {
        "file": str(path.resolve().relative_to(ROOT)), "samples": round(samples, 2),
        "by_package_pct": {k: pct(v) for k, v in packages.most_common(12)},
        "top_self_pct": {k: pct(v) for k, v in self_counts.most_common(top)},
        "top_inclusive_pct": {k: pct(v) for k, v in inclusive[:top]},
        "doorman_code_inclusive_pct": {k: pct(v) for k, v in own_counts.most_common(top)},
    }


def render(summary: dict[str, Any]) -> str:
    lines = [f"{summary['file']}  ({summary['samples']:.1f} s of samples, idle excluded)", "  by package (self): " + ", ".join(
        f"{k} {v}%" for k, v in summary["by_package_pct"].items())]
    lines.append("  top self:")
    lines += [f"    {v:5.1f}%  {k}" for k, v in summary["top_self_pct"].items()]
    lines.append("  Doorman's code, inclusive (the function and what it calls):")
    lines += [f"    {v:5.1f}%  {k}" for k, v in summary["doorman_code_inclusive_pct"].items()]
    return "\n".join(lines)
