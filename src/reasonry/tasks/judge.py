"""`reasonry check --judge`: ask a model, through the cached executor, whether each checked reasoning states the
final answer and whether it supports the response. Its requests belong to the checked run (column `judge`, model
label `judge:<checked model>`), so re-checking reuses every stored verdict."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from reasonry.config import ModelSpec, SamplingParams
from reasonry.engines.registry import load_engine
from reasonry.prompts.library import load_template
from reasonry.quality.checks import question_text, reasoning_of
from reasonry.quality.flags import Flag
from reasonry.quality.judge import judge_variables, parse_verdicts
from reasonry.store import Store
from reasonry.tasks.execute import Counts, Planned, Reporter, run_planned
from reasonry.tasks.followup import parse_spec, prompt_request

JUDGE_COLUMN = "judge"


@dataclass
class JudgeConfig:
    """The judge model and how it is asked (greedy and short by default: it answers two lines)."""

    spec: ModelSpec | str
    template: str = "check-judge"
    params: SamplingParams = field(default_factory=lambda: SamplingParams(temperature=0.0, max_new_tokens=160))
    chat: bool = True
    refresh: bool = False
    engine_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Judged:
    """One checked result the judge is asked about."""

    key: str
    model: str
    record: dict[str, Any]


def judge_results(store: Store, run_id: str, items: Sequence[Judged], config: JudgeConfig,
                  reporter: Reporter | None = None) -> tuple[dict[str, list[Flag]], Counts]:
    """Judge verdict flags by result key, and the executor's counts."""
    spec = parse_spec(config.spec, "--judge")
    template = load_template(config.template, produces="response")
    wanted = [item for item in items if (reasoning_of(item.record) or "").strip()]
    with load_engine(spec, **config.engine_options) as engine:
        if reporter:
            reporter.start(f"judge ({spec.label})", len(wanted))

        def planned() -> Iterator[Planned]:
            for item in wanted:
                record = item.record
                prompt = template.render(**judge_variables(record, reasoning_of(record), question_text(record)))
                request = prompt_request(engine, prompt, config.params, config.chat,
                                         record.get("sample_index") or 0)
                yield Planned(record["row_index"], f"judge:{item.model}", request, produces="response",
                              column=JUDGE_COLUMN)

        plan = list(planned())
        counts = run_planned(store, run_id, engine, spec, plan, refresh=config.refresh, reporter=reporter)
        if reporter:
            reporter.finish()
    verdicts: dict[str, list[Flag]] = {}
    for item, planned_item in zip(wanted, plan, strict=True):
        result = store.get_result(planned_item.request.key)
        if result is None or result.error is not None:
            continue
        has_response = bool((item.record.get("response") or "").strip())
        verdicts[item.key] = [v.to_flag() for v in parse_verdicts(result.text, has_response=has_response)]
    return verdicts, counts
