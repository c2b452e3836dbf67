"""Run progress on stderr: a rich bar on a terminal, plain lines every few seconds elsewhere (logs, notebooks)."""

from __future__ import annotations

import os
import threading
import time
import warnings
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

from reasonry.engines.base import Result
from reasonry.tasks.execute import Reporter

LINE_SECONDS = float(os.environ.get("REASONRY_PROGRESS_SECONDS", "5"))


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}" if value < 1 else f"{value:,.1f}"


class ProgressReporter(Reporter):
    """done/total, requests/s, tokens/s, ETA and failures: a bar (`bar`), lines (`lines`) or nothing (`off`)."""

    def __init__(self, console: Console, mode: str | None = None, every: float = LINE_SECONDS) -> None:
        self.console = console
        self.mode = mode or ("bar" if console.is_terminal else "lines")
        self.every = every
        self.progress: Progress | None = None
        self._showwarning: Any = None
        self.lock = threading.Lock()
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self, label: str, total: int | None) -> None:
        self.close()
        self.label, self.total = label, total
        self.started = self.last_line = time.monotonic()
        self.done = self.generated = self.tokens = self.failed = 0
        if self.mode == "lines":
            self._line(f"{label}: {total if total is not None else '?'} requests")
            self._stop = threading.Event()
            self._ticker = threading.Thread(target=self._tick, name="reasonry-progress", daemon=True)
            self._ticker.start()
        elif self.mode == "bar":
            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), TextColumn("{task.fields[failed]}"),
                console=self.console, transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task(label, total=total, rate="", failed="")
            self._showwarning, warnings.showwarning = warnings.showwarning, self._warning

    def _tick(self) -> None:
        """A line every `every` seconds even while no request finishes (long generations, model loading)."""
        while not self._stop.wait(self.every):
            self._maybe_line()

    def _warning(self, message: Any, category: type[Warning], *_: Any, **__: Any) -> None:
        """Library warnings (transformers' FutureWarnings) print above the bar instead of through it."""
        self.console.print(Text(f"warning: {category.__name__}: {message}", style="yellow"), soft_wrap=True)

    def cached(self, n: int) -> None:
        self.done += n
        if self.progress and n:
            self.progress.advance(self.task, n)
        self._maybe_line()

    def result(self, result: Result) -> None:
        self.done += 1
        self.generated += 1
        self.tokens += result.completion_tokens
        self.failed += result.error is not None
        if self.progress:
            rate, tok = self._rates()
            self.progress.update(self.task, advance=1, rate=f"{rate:,.1f} req/s {tok:,.0f} tok/s",
                                 failed=f"[red]{self.failed} failed[/]" if self.failed else "")
        self._maybe_line()

    def _rates(self) -> tuple[float, float]:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return self.generated / elapsed, self.tokens / elapsed

    def status_line(self) -> str:
        rate, tok = self._rates()
        total = self.total if self.total is not None else "?"
        parts = [f"{self.label}: {self.done}/{total}"]
        if self.total:
            parts[0] += f" ({100 * self.done // self.total}%)"
        parts += [f"{_rate(rate)} req/s", f"{_rate(tok)} tok/s"]
        if self.total is not None and rate > 0:
            parts.append(f"ETA {_duration((self.total - self.done) / rate)}")
        parts.append(f"{self.failed} failed")
        return " · ".join(parts)

    def _maybe_line(self) -> None:
        with self.lock:
            if self.mode != "lines" or time.monotonic() - self.last_line < self.every:
                return
            self.last_line = time.monotonic()
        self._line(self.status_line())

    def _line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def finish(self) -> None:
        if self.mode == "lines" and self.close():
            self._line(self.status_line() + f" · done in {_duration(time.monotonic() - self.started)}")
        self.close()

    def close(self) -> bool:
        """Stop the bar or the line ticker (also when the run failed); True when something was running."""
        running = self.progress is not None or self._ticker is not None
        if self.progress:
            self.progress.stop()
            self.progress = None
            warnings.showwarning = self._showwarning
        if self._ticker is not None:
            self._stop.set()
            self._ticker.join()
            self._ticker = None
        return running

    def __enter__(self) -> ProgressReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def reporter(console: Console, quiet: bool = False) -> ProgressReporter:
    """The CLI's reporter: `quiet` (--json on a terminal) shows no bar; lines still go to stderr off a terminal."""
    mode = "off" if quiet and console.is_terminal else None
    return ProgressReporter(console, mode)
