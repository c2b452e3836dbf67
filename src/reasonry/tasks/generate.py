"""The `generate` task: question rows -> prompts -> requests for each model -> stored results -> output file."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasonry.config import ExecutorOptions, ModelSpec, SamplingParams, parse_model_spec
from reasonry.engines import registry
from reasonry.engines.base import Engine, Request, request_key
from reasonry.engines.registry import LazyEngine
from reasonry.errors import ConfigError, InputError
from reasonry.io.readers import Row, RowSource, open_rows
from reasonry.io.writers import check_output_path
from reasonry.prompts.library import PromptTemplate, load_template, role_text
from reasonry.store import Store
from reasonry.tasks.execute import Counts, Planned, Reporter, execute, summarize
from reasonry.tasks.output import write_run_output

THINK_PREFILL = "<think>\n{reasoning}\n</think>\n\n"


@dataclass
class GenerateConfig:
    """Everything about how prompts are built and sampled (not where the rows come from)."""

    template: str = "phi2"
    role: str | None = None
    system: str | None = None
    chat: bool = False
    params: SamplingParams = field(default_factory=SamplingParams)
    samples: int = 1
    refresh: bool = False
    language: str = "English"
    n: int = 5
    engine_options: dict[str, Any] = field(default_factory=dict)  # engine keyword arguments (config.HFOptions…)
    executor: ExecutorOptions = field(default_factory=ExecutorOptions)

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ConfigError("--samples must be >= 1")


@dataclass
class Prompter:
    """Renders one row into a request for one model."""

    template: PromptTemplate
    config: GenerateConfig
    source_name: str

    def variables(self, row: Row) -> dict[str, Any]:
        values: dict[str, Any] = {
            "instruction": row.question, "question": row.question, "input": row.input,
            "system": role_text(self.config.role, self.config.system), "role": self.config.role or "assistant",
            "reference": row.reference or "", "row": row.extra, "n": self.config.n,
            "language": self.config.language, "str_output_aff": row.input or row.question,
        }
        if row.reasoning is not None and row.reasoning != "":
            values["reasoning"] = row.reasoning
        return values

    def needs_reasoning(self) -> bool:
        return self.template.needs_reasoning

    def build(self, row: Row, spec: ModelSpec, engine: Engine, sample: int) -> tuple[Request, str | None]:
        params = self.config.params
        error = None
        prompt = messages = prefill = None
        if self.needs_reasoning() and not row.reasoning:
            error = (f"{self.source_name} row {row.index + 1}: template {self.template.name} needs a reasoning "
                     "but the reasoning cell is empty")
        elif self.config.chat:
            messages, prefill = self._messages(row)
            prompt = engine.render_chat(messages, prefill)
            if prompt is not None:  # rendered locally: the prompt text is the request
                messages = None
        else:
            prompt = self.template.render(**self.variables(row))
        key = request_key(spec, prompt, messages, prefill, params, sample)
        if error:
            key = request_key(spec, f"error:{error}", None, None, params, sample)
        request = Request(key=key, params=params, prompt=prompt, messages=messages, prefill=prefill,
                          sample_index=sample)
        return request, error

    def _messages(self, row: Row) -> tuple[list[dict[str, str]], str | None]:
        messages = []
        if self.config.role or self.config.system:
            messages.append({"role": "system", "content": role_text(self.config.role, self.config.system)})
        content = row.question + (f"\n\n{row.input}" if row.input else "")
        messages.append({"role": "user", "content": content})
        prefill = None
        if self.needs_reasoning() and row.reasoning:
            prefill = THINK_PREFILL.format(reasoning=row.reasoning)
        return messages, prefill

    @property
    def produces(self) -> str:
        return "response" if self.config.chat else self.template.produces


def plan(source: RowSource, prompter: Prompter, label: str, engine: Engine, samples: int) -> Iterator[Planned]:
    for row in source:
        for sample in range(samples):
            request, error = prompter.build(row, engine.spec, engine, sample)
            yield Planned(row.index, label, request, prompter.produces, error=error, row=row)


def unique_labels(specs: Sequence[ModelSpec]) -> list[str]:
    labels: list[str] = []
    for spec in specs:
        label = spec.label
        while label in labels:
            label = f"{label}@{spec.kind}" if "@" not in label else label + "'"
        labels.append(label)
    return labels


def generate(
    input_path: str | Path, models: Sequence[str | ModelSpec], *, out: str | Path | None = None,
    db: str | Path = "reasonry.db", config: GenerateConfig | None = None, reporter: Reporter | None = None,
    encoding: str | None = None, sheet: str | int | None = None, id_col: str | None = None,
    question_col: str | None = None, input_col: str | None = None, reasoning_col: str | None = None,
    reference_col: str | None = None, store: Store | None = None,
) -> dict[str, Any]:
    """Generate for every row of `input_path` with every model; returns the run summary.

    Python API: `reasonry.generate("questions.json", ["hf:./model"], out="out.xlsx")`.
    """
    config = config or GenerateConfig()
    specs = [m if isinstance(m, ModelSpec) else parse_model_spec(m) for m in models]
    if not specs:
        raise InputError("give at least one --model")
    out_path = check_output_path(out) if out is not None else None
    template = load_template(config.template)
    role_text(config.role, config.system)
    source = open_rows(input_path, encoding=encoding, sheet=sheet, id_col=id_col, question_col=question_col,
                       input_col=input_col, reasoning_col=reasoning_col, reference_col=reference_col)
    if template.needs_reasoning and source.reasoning_col is None:
        raise InputError(f"{source.path}: template {template.name} needs a reasoning column; columns are: "
                         f"{', '.join(source.columns)} (choose one with --reasoning-col)")
    own_store = store is None
    store = store or Store(db)
    labels = unique_labels(specs)
    run_config = {
        "template": template.name, "template_source": template.source, "role": config.role, "system": config.system,
        "chat": config.chat, "params": config.params.to_dict(), "samples": config.samples,
        "id_col": source.id_col, "question_col": source.question_col, "input_col": source.input_col,
        "reasoning_col": source.reasoning_col, "reference_col": source.reference_col,
        "extra_columns": [c for c in source.columns if c not in {source.id_col, source.question_col, source.input_col,
                                                                 source.reasoning_col, source.reference_col}],
        "translations": [],
    }
    run_id = store.create_run("generate", source=str(source.path), config=run_config,
                              models=[(label, str(spec)) for label, spec in zip(labels, specs, strict=True)])
    prompter = Prompter(template, config, source.path.name)
    total = Counts()
    rows = 0
    status = "failed"
    try:
        for index, (spec, label) in enumerate(zip(specs, labels, strict=True)):
            with open_engine(spec, config) as engine:
                if reporter:
                    reporter.start(label, source.total * config.samples if source.total is not None else None)
                planned = plan(source, prompter, label, engine, config.samples)
                counts = execute(store, run_id, engine, spec, planned, refresh=config.refresh, reporter=reporter,
                                 on_chunk=(lambda chunk: _store_inputs(store, run_id, chunk)) if index == 0 else None)
                rows = rows or counts.requests // config.samples
                total.add(counts)
                if reporter:
                    reporter.finish()
        status = "done"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        summary = summarize(run_id, total, rows, out_path, store.path)
        store.finish_run(run_id, status, summary)
        if status != "done" and own_store:
            store.close()
    if out_path is not None:
        write_run_output(store, run_id, out_path)
    if own_store:
        store.close()
    return summary


def open_engine(spec: ModelSpec, config: GenerateConfig) -> Engine:
    """The engine for one model, loaded (here or on Ray) only when a request is not cached."""
    return LazyEngine(spec, lambda s, **o: registry.open_engine(s, o, config.executor), config.engine_options)


def _store_inputs(store: Store, run_id: str, chunk: list[Planned]) -> None:
    rows = {p.row_index: p.row for p in chunk if p.row is not None}
    store.add_inputs(run_id, [rows[i] for i in sorted(rows)])
