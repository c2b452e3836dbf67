"""Shared CLI pieces: consoles, progress, the run summary and its exit code, printing a row's exact prompt."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from reasonry.cli.progress import ProgressReporter, reporter
from reasonry.config import ModelSpec
from reasonry.errors import EXIT_FAILED_ROWS, InputError, warn_input

console = Console(stderr=True, soft_wrap=True)  # messages are never hard-wrapped: logs and pastes keep them whole
stdout = Console()


def make_reporter(as_json: bool = False) -> ProgressReporter:
    return reporter(console, quiet=as_json)


def print_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        stdout.print_json(json.dumps(summary, ensure_ascii=False))
        return
    table = Table(title=f"run {summary['run_id']}", show_header=False)
    for key in ("rows", "requests", "generated", "cached", "failed", "completion_tokens", "seconds", "tokens_per_s",
                "output", "db"):
        if key in summary:
            table.add_row(key, escape(str(summary[key])))
    console.print(table)
    for error in summary.get("errors", [])[:3]:
        console.print(f"[red]error:[/] {escape(str(error))}", soft_wrap=True)


def finish(summary: dict[str, Any], as_json: bool) -> None:
    """Print a run's summary; a run that finished with failed rows exits EXIT_FAILED_ROWS (3)."""
    print_summary(summary, as_json)
    failed = summary.get("failed") or 0
    if failed:
        if not as_json:
            console.print(f"[yellow]{failed} request(s) failed[/]: rerun the same command to retry them once "
                          f"the cause is fixed (exit code {EXIT_FAILED_ROWS})", highlight=False)
        raise typer.Exit(EXIT_FAILED_ROWS)


def print_prompt(input_path: Path, spec: ModelSpec, config: Any, row_number: int, columns: dict[str, Any]) -> None:
    """Write the exact prompt `generate` sends for one data row (1 = first) to stdout, byte for byte."""
    from reasonry.engines.registry import LazyEngine, open_engine
    from reasonry.io.readers import open_rows
    from reasonry.prompts.library import load_template
    from reasonry.tasks.generate import Prompter

    if row_number < 1:
        raise InputError("--show-prompt must be >= 1 (the first data row is 1)")
    source = open_rows(input_path, **columns)
    row = next((r for r in source if r.index == row_number - 1), None)
    if row is None:
        raise InputError(f"--show-prompt {row_number}: {source.path.name} has fewer data rows")
    if not row.question.strip():  # the reader warns once it has read every row; this one stops early
        warn_input(f"{source.path.name} data row {row_number}: blank question (column '{source.question_col}'); "
                   "the model gets an empty question there")
    engine = LazyEngine(spec, lambda s, **o: open_engine(s, o), config.engine_options)
    with engine:
        request, error = Prompter(load_template(config.template), config, source.path.name).build(row, spec, engine, 0)
    if error:
        raise InputError(error)
    if request.prompt is not None:
        sys.stdout.write(request.prompt)
    else:
        sys.stdout.write(json.dumps({"messages": request.messages, "prefill": request.prefill}, ensure_ascii=False,
                                    indent=1) + "\n")
