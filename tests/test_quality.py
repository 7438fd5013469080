"""Lint, format and type checks, so that ``pytest`` alone runs every check."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .helpers import REPO_ROOT


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "quart_app", "tests", "bench"],
        ["ruff", "format", "--check", "quart_app", "tests", "bench"],
        ["mypy"],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_quality_check_passes(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", *command],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr
