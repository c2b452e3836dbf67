"""The `generate` task: question rows -> prompts -> requests for each model -> stored results -> output file."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasonry.config import ExecutorOptions, ModelSpec, SamplingParams, parse_model_spec
from reasonry.engines import registry
from reasonry.engines.base import Engine, Request
from reasonry.engines.registry import LazyEngine
from reasonry.errors import ConfigError, InputError
from reasonry.io.readers import Row, open_rows
from reasonry.io.writers import check_output_path
from reasonry.prompts.formats import think_prefill, user_content
from reasonry.prompts.library import PromptTemplate, load_template, role_text
from reasonry.requests import PromptTooLarge, build_request, error_request
from reasonry.store import Store
from reasonry.tasks.base import Task
from reasonry.tasks.execute import Counts, Planned, Reporter, run_planned, summarize
from reasonry.tasks.lifecycle import open_run
from reasonry.tasks.output import write_run_output


class EmptyReasoning(InputError):
    """A row without the reasoning its template needs."""


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
    reasoning_budgets: tuple[int, ...] = ()  # a budget sweep: one extra column per budget (tasks/budget_sweep.py)
    budget_close: str = ""

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
        """The row's request and, when the row cannot become a prompt, the one-line reason (no model call)."""
        params = self.config.params
        where = f"{self.source_name} row {row.index + 1}"
        try:
            if self.needs_reasoning() and not row.reasoning:
                raise EmptyReasoning(f"{where}: template {self.template.name} needs a reasoning but the reasoning cell "
                                 "is empty")
            if self.config.chat:
                messages, prefill = self._messages(row)
                return build_request(spec, params, messages=messages, prefill=prefill, sample_index=sample,
                                     engine=engine, where=where), None
            prompt = self.template.render(**self.variables(row))
            return build_request(spec, params, prompt=prompt, sample_index=sample, where=where), None
        except (PromptTooLarge, EmptyReasoning) as exc:
            message = str(exc) if str(exc).startswith(where) else f"{where}: {exc}"
            return error_request(spec, params, message, sample), message

    def _messages(self, row: Row) -> tuple[list[dict[str, str]], str | None]:
        messages = []
        if self.config.role or self.config.system:
            messages.append({"role": "system", "content": role_text(self.config.role, self.config.system)})
        messages.append({"role": "user", "content": user_content(row.question, row.input)})
        prefill = None
        if self.needs_reasoning() and row.reasoning:
            prefill = think_prefill(row.reasoning)
        return messages, prefill

    @property
    def produces(self) -> str:
        return "response" if self.config.chat else self.template.produces


@dataclass
class GenerateTask(Task):
    """A question row -> one request per sample for one model."""

    prompter: Prompter
    label: str
    engine: Engine
    samples: int

    def format_input(self, row: Row) -> Iterator[Planned]:
        for sample in range(self.samples):
            request, error = self.prompter.build(row, self.engine.spec, self.engine, sample)
            yield Planned(row.index, self.label, request, self.prompter.produces, error=error, row=row)


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
    out_path = check_output_path(out, inputs=[input_path]) if out is not None else None
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
    prompter = Prompter(template, config, source.path.name)
    total = Counts()
    rows = 0
    try:
        with open_run(store, "generate", source=str(source.path), config=run_config,
                      models=[(label, str(spec)) for label, spec in zip(labels, specs, strict=True)]) as run:
            run_id = run.run_id
            try:
                for index, (spec, label) in enumerate(zip(specs, labels, strict=True)):
                    with open_engine(spec, config) as engine:
                        if reporter:
                            reporter.start(label, source.total * config.samples if source.total is not None else None)
                        task = GenerateTask(prompter, label, engine, config.samples)
                        counts = run_planned(
                            store, run_id, engine, spec, task.plan(source), refresh=config.refresh, reporter=reporter,
                            on_chunk=(lambda chunk: _store_inputs(store, run_id, chunk)) if index == 0 else None,
                            read=task.format_output)
                        rows = rows or counts.requests // config.samples
                        if config.reasoning_budgets:
                            _sweep(store, run_id, engine, label, config)
                        total.add(counts)
                        if reporter:
                            reporter.finish()
            finally:
                summary = run.summary = summarize(run_id, total, rows, out_path, store.path)
    except BaseException:
        if own_store:
            store.close()
        raise
    if out_path is not None:
        write_run_output(store, run_id, out_path)
    if own_store:
        store.close()
    return summary


def _sweep(store: Store, run_id: str, engine: Engine, label: str, config: GenerateConfig) -> None:
    from reasonry.tasks.budget_sweep import sweep_budgets
    from reasonry.tasks.steer_formats import steer_format

    fmt = steer_format(config.template, chat=config.chat, role=config.role, system=config.system)
    sweep_budgets(store, run_id, engine, label, fmt, config.reasoning_budgets, config.params, close=config.budget_close)


def open_engine(spec: ModelSpec, config: GenerateConfig) -> Engine:
    """The engine for one model, loaded (here or on Ray) only when a request is not cached."""
    return LazyEngine(spec, lambda s, **o: registry.open_engine(s, o, config.executor), config.engine_options)


def _store_inputs(store: Store, run_id: str, chunk: list[Planned]) -> None:
    rows = {p.row_index: p.row for p in chunk if p.row is not None}
    store.add_inputs(run_id, [rows[i] for i in sorted(rows)])
