"""What the numbers were measured on."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

from .procs import ROOT


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def _git() -> dict[str, object]:
    def run(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    dirty = [line[3:] for line in run("status", "--porcelain").splitlines() if not line[3:].startswith("bench/")]
    return {"commit": run("rev-parse", "--short", "HEAD"), "dirty_files_outside_bench": len(dirty)}


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("aiohttp", "aio-pika", "aiormq", "asyncpg", "pydantic", "uvloop", "orjson"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "-"
    return found


def describe() -> dict[str, object]:
    return {
        "cores": os.cpu_count(), "ram_gib": _ram_gib(), "cpu_model": _cpu_model(),
        "python": sys.version.split()[0], "kernel": platform.release(),
        "packages": _versions(), "git": _git(),
    }


def line(m: dict[str, object]) -> str:
    return f"machine: {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['cpu_model']}; Python {m['python']}"
