"""The `ensemble` task: an aggregator model merges the reasonings of a run's models into one (Mixture-of-Agents).

The merged reasoning is stored in the same run under the model label `ensemble`, so every output shows it as
one more model column. Shared helpers for tasks that read a finished run (translate) live here too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any

from reasonry.config import ExecutorOptions, ModelSpec, SamplingParams, parse_model_spec
from reasonry.engines.base import Engine, Request, Result, request_key
from reasonry.engines.registry import open_engine
from reasonry.errors import ConfigError, InputError
from reasonry.extract import THINK_CLOSE
from reasonry.io.writers import check_output_path
from reasonry.prompts.library import PromptTemplate, load_template
from reasonry.store import Store
from reasonry.tasks.execute import Planned, Reporter, execute, summarize
from reasonry.tasks.output import write_run_output

ENSEMBLE_LABEL = "ensemble"
@dataclass
class FollowUpConfig:
    """Sampling and engine settings of a task that runs on a finished run (ensemble, translate)."""

    params: SamplingParams = field(default_factory=lambda: SamplingParams(max_new_tokens=512))
    chat: bool = False
    refresh: bool = False
    engine_options: dict[str, Any] = field(default_factory=dict)
    executor: ExecutorOptions = field(default_factory=ExecutorOptions)


def load_task_template(name_or_path: str, produces: str) -> PromptTemplate:
    """A built-in (`ensemble`, `translate`) or a user's .j2 file, read as producing `produces`."""
    return load_template(name_or_path, produces=produces)


def parse_spec(text: str | ModelSpec, flag: str, base_url: str | None = None) -> ModelSpec:
    if isinstance(text, ModelSpec):
        return text
    try:
        return parse_model_spec(text, base_url=base_url)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("--model", flag, 1)) from None


def check_has_results(store: Store, run_id: str, labels: Sequence[str]) -> None:
    if not labels:
        raise InputError(f"run {run_id} has no models to read; run `reasonry generate` first")
    marks = ",".join("?" * len(labels))
    row = store.conn.execute(
        "SELECT 1 FROM run_requests q JOIN results r ON r.key=q.request_key WHERE q.run_id=? AND q.column=''"
        f" AND r.error IS NULL AND q.model IN ({marks}) LIMIT 1", (run_id, *labels)).fetchone()
    if row is None:
        raise InputError(f"run {run_id} has no results yet (models: {', '.join(labels)}); run or resume "
                         "`reasonry generate` for it first")


def count_requests(store: Store, run_id: str, labels: Sequence[str]) -> int:
    marks = ",".join("?" * len(labels))
    row = store.conn.execute(
        f"SELECT COUNT(*) FROM run_requests WHERE run_id=? AND column='' AND model IN ({marks})",
        (run_id, *labels)).fetchone()
    return int(row[0])


def grouped_records(store_path: Path, run_id: str, labels: Sequence[str]) -> Iterator[list[dict[str, Any]]]:
    """The run's main results, a list per row. A second connection reads a snapshot while results are written."""
    reader = Store(store_path)
    try:
        records = reader.run_records(run_id, models=list(labels))
        for _, group in groupby(records, key=lambda r: r["row_index"]):
            yield list(group)
    finally:
        reader.close()


def build_request(spec: ModelSpec, engine: Engine, prompt: str, params: SamplingParams, chat: bool,
                  sample_index: int = 0) -> Request:
    """A prompt as raw text, or as one user message when `chat` (rendered locally by engines that can)."""
    messages = None
    if chat:
        messages = [{"role": "user", "content": prompt}]
        rendered = engine.render_chat(messages)
        prompt, messages = (rendered, None) if rendered is not None else (None, messages)  # type: ignore[assignment]
    key = request_key(engine.spec, prompt, messages, None, params, sample_index)
    return Request(key=key, params=params, prompt=prompt, messages=messages, sample_index=sample_index)


def error_request(spec: ModelSpec, params: SamplingParams, where: str, sample_index: int = 0) -> Request:
    """A placeholder for a row that cannot become a prompt; its key is unique to the place."""
    key = request_key(spec, f"error:{where}", None, None, params, sample_index)
    return Request(key=key, params=params, prompt=None, sample_index=sample_index)


class ContentAsReasoning(Engine):
    """Wraps the aggregator so its own thinking (reasoning_content or a <think> block) is not taken for the
    merged reasoning: the answer's content is what the ensemble stores."""

    def __init__(self, engine: Engine) -> None:
        self.inner = engine
        self.spec = engine.spec

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        for result in self.inner.generate(requests):
            if result.reasoning is not None or THINK_CLOSE in result.text:
                result.text = result.text.split(THINK_CLOSE, 1)[-1].lstrip()
                result.reasoning = None
            yield result


def plan_ensemble(rows: Iterable[list[dict[str, Any]]], template: PromptTemplate, spec: ModelSpec,
                  engine: Engine, config: FollowUpConfig, run_id: str, seen: list[int]) -> Iterator[Planned]:
    for records in rows:
        first = records[0]
        seen[0] += 1
        candidates = [
            {"number": n, "model": r["model"], "sample": r["sample_index"] + 1, "reasoning": r["reasoning"].strip()}
            for n, r in enumerate((r for r in records if r["error"] is None and (r["reasoning"] or "").strip()),
                                  start=1)
        ]
        if not candidates:
            where = f"{run_id}:{first['row_index']}:ensemble"
            yield Planned(first["row_index"], ENSEMBLE_LABEL, error_request(spec, config.params, where),
                          produces="reasoning",
                          error=f"row {first['row_id']}: no model produced a reasoning to merge")
            continue
        prompt = template.render(question=first["question"], instruction=first["question"], input=first["input"],
                                 candidates=candidates, n=len(candidates), reference=first["reference"] or "",
                                 row=first["extra"])
        request = build_request(spec, engine, prompt, config.params, config.chat)
        yield Planned(first["row_index"], ENSEMBLE_LABEL, request, produces="reasoning")


def ensemble(run: str, aggregator: str | ModelSpec, *, template: str = "ensemble", out: str | Path | None = None,
             db: str | Path = "reasonry.db", config: FollowUpConfig | None = None,
             reporter: Reporter | None = None, store: Store | None = None) -> dict[str, Any]:
    """Merge every row's candidate reasonings with `aggregator`; stored as model `ensemble` in the same run.

    Python API: `reasonry.tasks.ensemble.ensemble("last", "openai:qwen@http://localhost:8000/v1")`.
    """
    config = config or FollowUpConfig()
    spec = parse_spec(aggregator, "--aggregator")
    prompt_template = load_task_template(template, "reasoning")
    out_path = check_output_path(out) if out is not None else None
    own_store = store is None
    store = store or open_existing_store(db)
    try:
        run_id = store.resolve_run(run)
        labels = [m["label"] for m in store.get_run(run_id)["models"] if m["label"] != ENSEMBLE_LABEL]
        check_has_results(store, run_id, labels)
        rows = [0]
        with open_engine(spec, config.engine_options, config.executor) as engine:
            store.add_run_model(run_id, ENSEMBLE_LABEL, str(spec))
            if reporter:
                reporter.start(f"{ENSEMBLE_LABEL} ({spec.label})", count_rows(store, run_id))
            planned = plan_ensemble(grouped_records(store.path, run_id, labels), prompt_template, spec, engine,
                                    config, run_id, rows)
            counts = execute(store, run_id, ContentAsReasoning(engine), spec, planned, refresh=config.refresh,
                             reporter=reporter)
            if reporter:
                reporter.finish()
        if out_path is not None:
            write_run_output(store, run_id, out_path)
        return summarize(run_id, counts, rows[0], out_path, store.path, model=ENSEMBLE_LABEL,
                         candidates=labels)
    finally:
        if own_store:
            store.close()


def count_rows(store: Store, run_id: str) -> int:
    return int(store.conn.execute("SELECT COUNT(*) FROM run_inputs WHERE run_id=?", (run_id,)).fetchone()[0])


def open_existing_store(db: str | Path) -> Store:
    return Store.existing(db)
