"""The dependency ranges resolve with the pip a fresh virtualenv comes with (the one bundled with the
machines' Python 3.11: 23.2), not only after `make` upgrades pip. Resolution only (``--dry-run``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = getattr(sys, "_base_executable", sys.executable)  # the interpreter itself, not this venv's


def test_a_fresh_virtualenvs_own_pip_resolves_every_extra(tmp_path: Path) -> None:
    made = subprocess.run([PYTHON, "-m", "venv", str(tmp_path / "venv")], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot make a virtualenv here: {made.stderr.strip()[-200:]}")
    pip = tmp_path / "venv" / "bin" / "pip"
    version = subprocess.run([str(pip), "--version"], capture_output=True, text=True, check=True).stdout
    resolved = subprocess.run(
        [str(pip), "install", "--dry-run", "--quiet", "--no-input", "-e", f"{ROOT}[test,bench]"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert resolved.returncode == 0, f"{version}\n" + "\n".join(
        line for line in resolved.stderr.splitlines() if "is ignored" not in line)[-2000:]
