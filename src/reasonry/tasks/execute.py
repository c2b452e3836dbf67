"""Run planned requests through an engine with the store in between: cached, deduplicated, resumable."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from reasonry.config import ModelSpec
from reasonry.engines.base import Engine, Request, Result
from reasonry.extract import split_output
from reasonry.requests import PromptTooLarge, error_request
from reasonry.store import Store, Usage

CHUNK = 512
FLUSH_SECONDS = 0.25
FLUSH_ITEMS = 256


@dataclass
class Planned:
    """One request of a run: where its result belongs (row, model, sample, column) and how to read it."""

    row_index: int
    model: str
    request: Request
    produces: str = "reasoning"
    column: str = ""
    error: str | None = None  # set when the row cannot become a prompt; recorded without calling the model
    row: Any = None  # the input row, stored with the run when given


def planned_or_error(row_index: int, model: str, build: Callable[[], Request], *, spec: ModelSpec, params: Any,
                     tag: str, where: str, produces: str = "reasoning", column: str = "", sample_index: int = 0,
                     row: Any = None) -> Planned:
    """The planned request `build()` makes; a row whose prompt is too large becomes that row's error instead.

    `tag` makes the error placeholder's key unique; `where` ("row 3") starts the error message.
    """
    try:
        request = build()
    except PromptTooLarge as exc:
        message = str(exc) if str(exc).startswith(where) else f"{where}: {exc}"
        return Planned(row_index, model, error_request(spec, params, tag, sample_index), produces, column,
                       error=message, row=row)
    return Planned(row_index, model, request, produces, column, row=row)


@dataclass
class Counts:
    requests: int = 0
    generated: int = 0
    cached: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def add(self, other: Counts) -> None:
        for name in ("requests", "generated", "cached", "failed", "prompt_tokens", "completion_tokens", "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors += other.errors[: max(0, 5 - len(self.errors))]


def summarize(run_id: str, counts: Counts, rows: int, out: Path | None, db: Path, **extra: Any) -> dict[str, Any]:
    """The summary every task prints and stores with its run."""
    tokens_per_s = counts.completion_tokens / counts.seconds if counts.seconds else 0.0
    return {
        "run_id": run_id, "rows": rows, "requests": counts.requests, "generated": counts.generated,
        "cached": counts.cached, "failed": counts.failed, "prompt_tokens": counts.prompt_tokens,
        "completion_tokens": counts.completion_tokens, "seconds": round(counts.seconds, 3),
        "tokens_per_s": round(tokens_per_s, 1), "output": str(out) if out else None, "db": str(db),
        "errors": counts.errors, **extra,
    }


class Reporter:
    """Progress hooks; the CLI passes a rich implementation, the library a silent one."""

    def start(self, label: str, total: int | None) -> None: ...

    def cached(self, n: int) -> None: ...

    def result(self, result: Result) -> None: ...

    def finish(self) -> None: ...


def parse_result(result: Result, produces: str) -> dict:
    """Result -> row for the results table, with reasoning and response split out."""
    if result.error is not None:
        reasoning, response = None, None
    elif result.reasoning:
        reasoning, response = result.reasoning, result.text.strip()
    else:
        reasoning, response = split_output(result.text, produces)
    return {
        "key": result.key, "text": result.text, "raw_text": result.raw_text or result.text,
        "reasoning": reasoning, "response": response, "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens, "finish_reason": result.finish_reason,
        "latency_s": round(result.latency_s, 4), "error": result.error,
    }


def run_planned(store: Store, run_id: str, engine: Engine, spec: ModelSpec, planned: Iterable[Planned], *,
            refresh: bool = False, reporter: Reporter | None = None,
            on_chunk: Callable[[list[Planned]], None] | None = None,
            read: Callable[[Result, str], dict] | None = None, ledger_label: str | None = None) -> Counts:
    """Register every planned request with the run, generate those without a stored result, store results.

    `read` turns a result into the stored fields (a Task's `format_output`; by default `parse_result`). The usage
    ledger books each request under its planned model, or under `ledger_label` (a follow-up task's own engine).
    """
    read = read or parse_result
    reporter = reporter or Reporter()
    counts = Counts()
    in_flight: dict[str, Planned] = {}  # sent to the engine, result not back yet
    started = time.perf_counter()

    def pending() -> Iterator[Request]:
        iterator = iter(planned)
        while chunk := list(islice(iterator, CHUNK)):
            if on_chunk:
                on_chunk(chunk)
            store.add_requests(
                run_id,
                [(p.row_index, p.model, p.request.sample_index, p.request.key, p.column) for p in chunk],
                [(p.request, spec.kind, spec.model, spec.adapter, p.produces) for p in chunk],
            )
            counts.requests += len(chunk)
            keys = [p.request.key for p in chunk]
            done = set() if refresh else store.done_keys(keys)
            fresh = 0
            for item in chunk:
                key = item.request.key
                if item.error is not None:
                    rejected.append(Result(key=key, error=item.error, finish_reason="error"))
                    refused[key] = item
                    fresh += 1
                    continue
                if key in done or key in in_flight or key in unflushed:  # stored, in flight, or just finished
                    continue
                in_flight[key] = item
                fresh += 1
                yield item.request
            counts.cached += len(chunk) - fresh
            reporter.cached(len(chunk) - fresh)
            if len(chunk) > fresh:
                store.add_usage(run_id, ledger_label or chunk[0].model, Usage(cached=len(chunk) - fresh))

    buffer: list[dict] = []
    usage: dict[str, Usage] = {}
    unflushed: set[str] = set()  # finished keys not yet visible to done_keys
    rejected: list[Result] = []
    refused: dict[str, Planned] = {}  # rows that never became a request (their error is recorded without a call)
    last_flush = time.monotonic()

    def flush() -> None:
        nonlocal buffer, usage, last_flush
        now = time.monotonic()
        sent = sum(u.requests for u in usage.values()) or 1
        with store.transaction():  # results and the ledger together: a kill never counts a result twice
            store.put_results(buffer)
            for label, entry in usage.items():
                entry.engine_seconds = (now - last_flush) * entry.requests / sent
                store.add_usage(run_id, label, entry)
        buffer, usage, last_flush = [], {}, now
        unflushed.clear()

    try:
        for result in _with_rejected(engine.generate(pending()), rejected):
            sent = in_flight.pop(result.key, None)
            buffer.append(read(result, sent.produces if sent else "reasoning"))
            if result.error is None:
                unflushed.add(result.key)
            _count(counts, result, sent.row_index if sent else None)  # a refused row's error names its row
            item = sent or refused.get(result.key)
            label = ledger_label or (item.model if item else spec.label)
            usage.setdefault(label, Usage()).count(result, sent=result.key not in refused)
            reporter.result(result)
            if len(buffer) >= FLUSH_ITEMS or time.monotonic() - last_flush > FLUSH_SECONDS:
                flush()
    finally:
        if buffer:
            flush()
        counts.seconds = time.perf_counter() - started
    return counts


def _with_rejected(results: Iterator[Result], rejected: list[Result]) -> Iterator[Result]:
    for result in results:
        yield result
        while rejected:
            yield rejected.pop()
    while rejected:
        yield rejected.pop()


def _count(counts: Counts, result: Result, row_index: int | None = None) -> None:
    if result.error is not None:
        counts.failed += 1
        if len(counts.errors) < 5:
            where = f"row {row_index + 1}: " if row_index is not None else ""
            counts.errors.append(where + result.error)
    else:
        counts.generated += 1
    counts.prompt_tokens += result.prompt_tokens
    counts.completion_tokens += result.completion_tokens
