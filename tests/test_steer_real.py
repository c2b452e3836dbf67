"""Steering on the real SmolLM2-135M-Instruct (chat template, greedy): continue inside <think>, a thinking budget,
and a batch edit over a generate run. Needs the `smollm2_path` fixture (tests/conftest.py, `reasonry models fetch`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reasonry.config import SamplingParams, parse_model_spec
from reasonry.store import Store
from reasonry.tasks.steer import Budget, Steerer
from reasonry.tasks.steer_formats import steer_format

GREEDY = SamplingParams(temperature=0, max_new_tokens=24)
PEARS = "Henri has 3 apples, Jack has 4 pears and Jill has 5 books. How many fruits are there in total?"
PREFIX = "Books are not fruit. The fruits are 3 apples and 4 pears, so"


@pytest.fixture(scope="module")
def smol(smollm2_path: Path):
    from reasonry.engines.registry import load_engine

    with load_engine(parse_model_spec(f"hf:{smollm2_path}")) as engine:
        yield engine


def test_continue_inside_think_and_budget(smol, tmp_path: Path) -> None:
    steerer = Steerer(Store(tmp_path / "s.db"), {"smol": smol}, chat=True, params=GREEDY)
    request = steerer.request("smol", "continue", PEARS, "", PREFIX)
    assert request.prompt.endswith("<|im_start|>assistant\n<think>\n" + PREFIX)  # prefilled inside <think>
    version = steerer.run("smol", PEARS, mode="continue", reasoning=PREFIX)
    assert version.reasoning.startswith(PREFIX) and len(version.reasoning) > len(PREFIX)
    budgeted = steerer.run("smol", PEARS, budget=Budget(6, close=" So the answer is"))
    assert budgeted.params["reasoning_tokens"] <= 6 and budgeted.params["budget_hit"]
    assert budgeted.reasoning.endswith("So the answer is") and budgeted.response


def test_batch_prefix_over_a_generate_run(smol, smollm2_path: Path, tmp_path: Path) -> None:
    from reasonry.tasks.generate import GenerateConfig, generate
    from reasonry.tasks.steer_batch import Edit, steer_batch

    questions = tmp_path / "q.jsonl"
    questions.write_text("\n".join(json.dumps({"seq": i, "question": q}) for i, q in enumerate(
        [PEARS, "Tom has 2 oranges and 6 books. How many fruits does Tom have?"], 1)), encoding="utf-8")
    store = Store(tmp_path / "run.db")
    run = generate(questions, [f"hf:{smollm2_path}"], store=store,
                   config=GenerateConfig(template="alpaca-reasoning", chat=True, params=GREEDY))
    report = steer_batch(store, run["run_id"], smol, Edit("prefix", "Books are not fruit. "),
                         fmt=steer_format(chat=True), params=GREEDY)
    assert report.edited == 2 and all(row.reasoning.startswith("Books are not fruit.") for row in report.per_row)
    assert all(row.response for row in report.per_row)
    assert report.headline().startswith("the edit changed")
