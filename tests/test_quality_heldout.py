"""Leakage, language, repetition and truncation scored on data the rules were not tuned on (heldout.jsonl), next
to the tuning sets (labelled.jsonl, tuning.jsonl). `pytest -s` prints the table docs/quality.md reports."""

from __future__ import annotations

from typing import Any

import pytest

from reasonry.quality import Flag
from tests.quality_scores import flags_of, load_rows, misses, score

SETS = {"tuning": ["labelled.jsonl", "tuning.jsonl"], "held-out": ["heldout.jsonl"]}


@pytest.fixture(scope="module")
def predictions() -> dict[str, list[tuple[dict[str, Any], list[Flag]]]]:
    return {name: [(row, flags_of(row)) for file in files for row in load_rows(file)] for name, files in SETS.items()}


def test_heldout_set_covers_what_the_issue_lists() -> None:
    rows = load_rows("heldout.jsonl")
    notes = " ".join(row["note"] for row in rows)
    for kind in ("surface form", "implicit commitment", "rejected premise", "yes/no", "wrong answer",
                 "reasoning-only", "method-only", "intermediate", "candidates"):
        assert kind in notes, kind
    for language in ("en", "ja"):
        labels = [r["labels"]["leakage"] for r in rows if r["expected_language"] == language]
        assert len(labels) >= 30 and 0.25 <= sum(labels) / len(labels) <= 0.75
    assert any(r["response"] is None and not r.get("reference") and r["labels"]["leakage"] for r in rows)
    tuning = {(r["question"], r["reasoning"]) for file in SETS["tuning"] for r in load_rows(file)}
    assert not tuning & {(r["question"], r["reasoning"]) for r in rows}  # never tuned on


@pytest.mark.parametrize("language", ["en", "ja"])
def test_leakage_holds_on_heldout_data(predictions: dict, language: str) -> None:
    for name, predicted in predictions.items():
        print(f"\n[quality] {score(predicted, 'leakage', language).line(f'leakage {name} {language}')}")
    print(f"[quality] held-out misses: {misses(predictions['held-out'], 'leakage')}")
    assert score(predictions["held-out"], "leakage", language).f1 >= 0.85
    assert score(predictions["tuning"], "leakage", language).f1 >= 0.95


@pytest.mark.parametrize(("flag", "floor"), [("language", 0.85), ("repetition", 0.7), ("truncated", 0.95)])
def test_other_checks_hold_on_heldout_data(predictions: dict, flag: str, floor: float) -> None:
    for name, predicted in predictions.items():
        found = score(predicted, flag)
        if found.n:
            print(f"\n[quality] {found.line(f'{flag} {name}')}; wrong: {misses(predicted, flag)}")
    held_out = score(predictions["held-out"], flag)
    assert held_out.n >= 20 and held_out.tp + held_out.fn >= 3
    assert held_out.precision >= 0.9 and held_out.f1 >= floor  # docs/quality.md has the measured values
