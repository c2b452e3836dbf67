"""Shared CLI pieces: consoles, the rich progress reporter, option groups."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from reasonry.engines.base import Result
from reasonry.tasks.execute import Reporter

console = Console(stderr=True)
stdout = Console()


class RichReporter(Reporter):
    """rows done/total, rows/s, tokens/s, ETA, failures."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and sys.stderr.isatty() or enabled == "force"
        self.progress: Progress | None = None

    def start(self, label: str, total: int | None) -> None:
        self.started = time.perf_counter()
        self.tokens = 0
        self.failed = 0
        self.done = 0
        if not self.enabled:
            console.print(f"[bold]{label}[/]: {total if total is not None else '?'} requests")
            return
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), TextColumn("{task.fields[failed]}"),
            console=console, transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(label, total=total, rate="", failed="")

    def cached(self, n: int) -> None:
        self.done += n
        if self.progress and n:
            self.progress.advance(self.task, n)

    def result(self, result: Result) -> None:
        self.done += 1
        self.tokens += result.completion_tokens
        self.failed += result.error is not None
        if self.progress:
            elapsed = max(time.perf_counter() - self.started, 1e-6)
            self.progress.update(
                self.task, advance=1,
                rate=f"{self.done / elapsed:,.1f} req/s {self.tokens / elapsed:,.0f} tok/s",
                failed=f"[red]{self.failed} failed[/]" if self.failed else "",
            )

    def finish(self) -> None:
        if self.progress:
            self.progress.stop()
            self.progress = None


def print_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        stdout.print_json(json.dumps(summary, ensure_ascii=False))
        return
    table = Table(title=f"run {summary['run_id']}", show_header=False)
    for key in ("rows", "requests", "generated", "cached", "failed", "completion_tokens", "seconds", "tokens_per_s",
                "output", "db"):
        if key in summary:
            table.add_row(key, str(summary[key]))
    console.print(table)
    for error in summary.get("errors", [])[:3]:
        console.print(f"[red]error:[/] {error}")
