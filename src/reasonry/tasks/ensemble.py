"""The `ensemble` task: an aggregator model merges the reasonings of a run's models into one (Mixture-of-Agents).

The merged reasoning is stored in the same run under the model label `ensemble`, so every output shows it as
one more model column.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonry.config import ModelSpec
from reasonry.engines.base import Engine, Request, Result
from reasonry.errors import warn_input
from reasonry.prompts.formats import THINK_CLOSE
from reasonry.prompts.library import PromptTemplate
from reasonry.requests import error_request
from reasonry.store import RunRecord, Store
from reasonry.tasks.base import Task
from reasonry.tasks.execute import Planned, Reporter, planned_or_error
from reasonry.tasks.followup import (
    FollowUp,
    FollowUpConfig,
    load_task_template,
    parse_spec,
    prompt_request,
    run_followup,
)

ENSEMBLE_LABEL = "ensemble"


@dataclass
class EnsembleTask(Task):
    """A row's records (every model's reasonings) -> one request that merges them."""

    template: PromptTemplate
    engine: Engine
    config: FollowUpConfig
    run_id: str
    rows: int = 0

    def format_input(self, records: list[RunRecord]) -> Iterator[Planned]:
        first = records[0]
        self.rows += 1
        candidates = [
            {"number": n, "model": r["model"], "sample": r["sample_index"] + 1, "reasoning": r["reasoning"].strip()}
            for n, r in enumerate((r for r in records if r["error"] is None and (r["reasoning"] or "").strip()),
                                  start=1)
        ]
        where, tag = f"row {first['row_id']}", f"{self.run_id}:{first['row_index']}:ensemble"
        spec, params = self.engine.spec, self.config.params
        if not candidates:
            yield Planned(first["row_index"], ENSEMBLE_LABEL, error_request(spec, params, tag), produces="reasoning",
                          error=f"{where}: no model produced a reasoning to merge")
            return

        def build() -> Request:
            prompt = self.template.render(
                question=first["question"], instruction=first["question"], input=first["input"],
                candidates=candidates, n=len(candidates), reference=first["reference"] or "", row=first["extra"])
            return prompt_request(self.engine, prompt, params, self.config.chat, where=where)

        yield planned_or_error(first["row_index"], ENSEMBLE_LABEL, build, spec=spec, params=params, tag=tag,
                               where=where, produces="reasoning")

    def format_output(self, result: Result, produces: str) -> dict[str, Any]:
        """The aggregator's own thinking (reasoning_content or a <think> block) is not the merged reasoning:
        its answer's content is what the ensemble stores."""
        if result.reasoning is not None or THINK_CLOSE in result.text:
            result.text = result.text.split(THINK_CLOSE, 1)[-1].lstrip()
            result.reasoning = None
        return super().format_output(result, produces)


def ensemble(run: str, aggregator: str | ModelSpec, *, template: str = "ensemble", out: str | Path | None = None,
             db: str | Path = "reasonry.db", config: FollowUpConfig | None = None,
             reporter: Reporter | None = None, store: Store | None = None) -> dict[str, Any]:
    """Merge every row's candidate reasonings with `aggregator`; stored as model `ensemble` in the same run.

    Python API: `reasonry.tasks.ensemble.ensemble("last", "openai:qwen@http://localhost:8000/v1")`.
    """
    config = config or FollowUpConfig()
    spec = parse_spec(aggregator, "--aggregator")
    prompt_template = load_task_template(template, "reasoning")

    def prepare(store: Store, run_id: str, info: dict[str, Any], labels: list[str]) -> FollowUp:
        if len(labels) == 1 and int(info["config"].get("samples", 1)) == 1:
            warn_input(f"run {run_id} has one reasoning per row ({labels[0]}, 1 sample): the ensemble rewrites it "
                       "rather than merging several; generate with more --model or --samples for candidates")

        def make_task(engine: Engine) -> Task:
            store.add_run_model(run_id, ENSEMBLE_LABEL, str(spec))
            return EnsembleTask(prompt_template, engine, config, run_id)

        return FollowUp(ENSEMBLE_LABEL, f"{ENSEMBLE_LABEL} ({spec.label})", store.count_inputs(run_id), make_task,
                        rows=lambda task: task.rows, extra={"model": ENSEMBLE_LABEL, "candidates": labels})

    return run_followup(run, spec, config, prepare, out=out, db=db, reporter=reporter, store=store,
                        skip=ENSEMBLE_LABEL)
