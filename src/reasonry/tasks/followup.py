"""What tasks that run on a finished run share (ensemble, translate): settings, reading the run, building requests."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any

from reasonry.config import ExecutorOptions, ModelSpec, SamplingParams, parse_model_spec
from reasonry.engines.base import Engine, Request
from reasonry.engines.registry import open_engine
from reasonry.errors import ConfigError, InputError
from reasonry.io.writers import check_not_input, check_output_path
from reasonry.prompts.library import PromptTemplate, load_template
from reasonry.requests import build_request
from reasonry.store import RunRecord, Store
from reasonry.tasks.base import Task
from reasonry.tasks.execute import Counts, Reporter, run_planned, summarize
from reasonry.tasks.lifecycle import open_run
from reasonry.tasks.output import write_run_output


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
    if not store.has_results(run_id, labels):
        raise InputError(f"run {run_id} has no results yet (models: {', '.join(labels)}); run or resume "
                         "`reasonry generate` for it first")


def grouped_records(store_path: Path, run_id: str, labels: Sequence[str]) -> Iterator[list[RunRecord]]:
    """The run's main results, a list per row. A second connection reads a snapshot while results are written."""
    reader = Store(store_path)
    try:
        records = reader.run_records(run_id, models=list(labels))
        for _, group in groupby(records, key=lambda r: r["row_index"]):
            yield list(group)
    finally:
        reader.close()


def prompt_request(engine: Engine, prompt: str, params: SamplingParams, chat: bool, sample_index: int = 0,
                   where: str = "prompt") -> Request:
    """A prompt as raw text, or as one user message when `chat` (rendered locally by engines that can)."""
    if chat:
        return build_request(engine.spec, params, messages=[{"role": "user", "content": prompt}],
                             sample_index=sample_index, engine=engine, where=where)
    return build_request(engine.spec, params, prompt=prompt, sample_index=sample_index, where=where)


@dataclass
class FollowUp:
    """One follow-up task on a resolved run, as `prepare` describes it to `run_followup`."""

    kind: str  # the task's name in the run's config (`tasks.<kind>`)
    title: str  # the progress line's label
    total: int  # the progress total
    make_task: Callable[[Engine], Task]  # the task, once its engine is open
    rows: Callable[[Task], int]  # the summary's row count
    extra: dict[str, Any]  # the summary's own fields


Prepare = Callable[[Store, str, dict[str, Any], list[str]], FollowUp]


def run_followup(run: str, spec: ModelSpec, config: FollowUpConfig, prepare: Prepare, *, out: str | Path | None,
                 db: str | Path, reporter: Reporter | None, store: Store | None,
                 skip: str | None = None) -> dict[str, Any]:
    """Run a task on every row of a finished run (ensemble, translate) and return its summary.

    The task reads the results of the run's models but `skip`; once they are checked,
    `prepare(store, run_id, run_info, labels)` sets the run up and describes the task. Its results go into the
    same run, and the whole run is written to `out` when given. A store passed in stays open; one opened from
    `db` is closed.
    """
    out_path = check_output_path(out) if out is not None else None
    own_store = store is None
    store = store or Store.existing(db)
    try:
        run_id = store.resolve_run(run, "generate")
        info = store.get_run(run_id)
        if out_path is not None:
            check_not_input(out_path, f"--out {out}", [info.get("source")])
        labels = [m["label"] for m in info["models"] if m["label"] != skip]
        check_has_results(store, run_id, labels)
        job = prepare(store, run_id, info, labels)
        with open_run(store, job.kind, on=run_id) as opened, \
                open_engine(spec, config.engine_options, config.executor) as engine:
            task = job.make_task(engine)
            if reporter:
                reporter.start(job.title, job.total)
            counts = Counts()
            try:
                counts = run_planned(store, run_id, engine, spec, task.plan(grouped_records(store.path, run_id, labels)),
                                     refresh=config.refresh, reporter=reporter, read=task.format_output,
                                     ledger_label=spec.label)
            finally:
                opened.summary = summarize(run_id, counts, job.rows(task), out_path, store.path, **job.extra)
            if reporter:
                reporter.finish()
        if out_path is not None:
            write_run_output(store, run_id, out_path)
        return opened.summary
    finally:
        if own_store:
            store.close()
