"""What tasks that run on a finished run share (ensemble, translate): settings, reading the run, building requests."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any

from reasonry.config import ExecutorOptions, ModelSpec, SamplingParams, parse_model_spec
from reasonry.engines.base import Engine, Request
from reasonry.errors import ConfigError, InputError
from reasonry.prompts.library import PromptTemplate, load_template
from reasonry.requests import build_request
from reasonry.store import RunRecord, Store


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
