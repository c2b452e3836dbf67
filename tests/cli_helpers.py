"""Run the real CLI: in-process (fast) or as a subprocess (for exit codes, stderr and kill -9)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import pytest


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> CliResult:
    from reasonry.cli import main

    monkeypatch.setattr(sys, "argv", ["reasonry", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)


def run_subprocess(args: list[str], cwd: str | None = None, timeout: float = 240) -> CliResult:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "reasonry", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=env)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def cli_json(*args: str) -> dict:
    """Run the CLI in-process with typer's runner; it must succeed; return the JSON summary it printed."""
    import json

    from typer.testing import CliRunner

    from reasonry.cli import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout[result.stdout.index("{"):])
