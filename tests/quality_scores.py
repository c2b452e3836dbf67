"""Precision / recall / F1 of the checks on a labelled JSONL set, per flag and language."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonry.quality import CheckConfig, Flag
from reasonry.quality.checks import check_record

DATA = Path(__file__).parent / "data" / "quality"


def load_rows(name: str) -> list[dict[str, Any]]:
    with (DATA / name).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def flags_of(row: dict[str, Any]) -> list[Flag]:
    """The flags `reasonry check` would store for the row (the labelled rows are records)."""
    config = CheckConfig(expected_language=row["expected_language"])
    return check_record(row, config, row.get("produces"))


@dataclass(frozen=True)
class Score:
    n: int
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / max(self.tp + self.fp, 1)

    @property
    def recall(self) -> float:
        return self.tp / max(self.tp + self.fn, 1)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def line(self, what: str) -> str:
        return (f"{what}: P {self.precision:.2f} R {self.recall:.2f} F1 {self.f1:.2f} "
                f"(n={self.n}, {self.tp + self.fn} positive)")


def score(predictions: list[tuple[dict[str, Any], list[Flag]]], flag: str, language: str | None = None) -> Score:
    pairs = [(any(f.name == flag for f in flags), bool(row["labels"][flag])) for row, flags in predictions
             if flag in row["labels"] and (language is None or row["expected_language"] == language)]
    return Score(len(pairs), sum(p and g for p, g in pairs), sum(p and not g for p, g in pairs),
                 sum(g and not p for p, g in pairs))


def misses(predictions: list[tuple[dict[str, Any], list[Flag]]], flag: str) -> list[str]:
    return [row["id"] for row, flags in predictions
            if flag in row["labels"] and any(f.name == flag for f in flags) != row["labels"][flag]]
