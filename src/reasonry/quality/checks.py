"""The checks of one result (`check_one`), of one stored record (`check_record`: the one rule `reasonry
check`, the report and the export all use) and the per-model `length` outliers.

`check_one` returns at most one `Flag` per flag name and never `length`: that needs the whole population of a
model's results, so callers run `add_length_flags` over each model's records.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from reasonry.quality.flags import CheckConfig, Flag
from reasonry.quality.language import _check_language
from reasonry.quality.leakage import _check_leakage
from reasonry.quality.repetition import _check_repetition
from reasonry.quality.truncation import _check_truncated
from reasonry.store.records import RunRecord


def check_one(
    reasoning: str | None,
    response: str | None,
    *,
    question: str = "",
    reference: str | None = None,
    finish_reason: str | None = None,
    expected_section: bool = True,
    config: CheckConfig = CheckConfig(),
) -> list[Flag]:
    """Flags of one result, at most one per name, never `length` (see `length_outliers`).

    `expected_section`: the output format asks for a reasoning section (and a response section when
    `response` is not None); an empty one means the model stopped early or ignored the format.
    Pass `response=None` when the task produces no response section.
    """
    reasoning = reasoning or ""
    flags: list[Flag | None] = []
    if not reasoning.strip():
        flags.append(Flag("empty", "the reasoning is empty"))
    flags.append(_check_truncated(reasoning, response, finish_reason, expected_section))
    if reasoning.strip():
        flags.append(_check_language(reasoning, config))
        flags.append(_check_repetition(reasoning, config))
        cut_off = (finish_reason or "").lower() == "length" and not (response or "").strip()
        flags.append(_check_leakage(reasoning, response, question or "", reference, config, cut_off))
    return [f for f in flags if f is not None]


def length_outliers(lengths: Sequence[int], config: CheckConfig = CheckConfig()) -> list[int]:
    """Indexes of lengths whose robust z-score exceeds `config.length_z`; none below `length_min_items`.

    z = 0.6745 * (x - median) / MAD; when more than half the lengths are equal (MAD = 0) the mean
    absolute deviation (scaled by 1.2533) stands in for it.
    """
    if len(lengths) < max(config.length_min_items, 2):
        return []
    median = statistics.median(lengths)
    deviations = [abs(x - median) for x in lengths]
    scale = statistics.median(deviations) / 0.6745
    if scale == 0:
        scale = 1.2533 * statistics.fmean(deviations)
    if scale == 0:
        return []
    return [i for i, d in enumerate(deviations) if d / scale > config.length_z]


reasoning_of = RunRecord.reasoning_of  # the generated reasoning, else the one given (special mode)


def question_text(record: Mapping[str, Any]) -> str:
    """Question and context: restating either of them is not leakage."""
    context = record.get("input") or ""
    return (record.get("question") or "") + (f"\n{context}" if context else "")


def check_record(record: Mapping[str, Any], config: CheckConfig, produces: str | None = None) -> list[Flag]:
    """Flags of one stored result (no `length`: see `length_flags`): the one rule every reader applies.

    `produces` is what the request's template asks the model to write (`record["produces"]` when not given):
    "response" means a vanilla or chat prompt, where an empty reasoning is by design: only the response is checked
    (empty, cut off at the token limit).
    """
    reasoning = reasoning_of(record)
    produces = produces or record.get("produces")
    if produces == "response" and not (reasoning or "").strip():
        response = record.get("response") or ""
        flags = [Flag("empty", "the response is empty")] if not response.strip() else []
        cut = _check_truncated("", response, record.get("finish_reason"), expected_section=False)
        return flags + ([cut] if cut else [])
    response = record.get("response")
    if produces == "reasoning" and response is None:
        response = ""  # the template asks for a response after the reasoning: a missing section counts
    return check_one(
        reasoning,
        response,
        question=question_text(record),
        reference=record.get("reference"),
        finish_reason=record.get("finish_reason"),
        config=config,
    )


def length_flags(items: Sequence[tuple[str, str | None]], config: CheckConfig) -> dict[int, Flag]:
    """`length` flags by index into `items` ((model, reasoning) pairs), outliers within each model."""
    by_model: dict[str, list[int]] = defaultdict(list)
    for i, (model, _) in enumerate(items):
        by_model[model].append(i)
    found: dict[int, Flag] = {}
    for indexes in by_model.values():
        lengths = [len(items[i][1] or "") for i in indexes]
        median = statistics.median(lengths) if lengths else 0
        for j in length_outliers(lengths, config):
            reason = f"reasoning length {lengths[j]} chars is an outlier for this model (median {median:g})"
            found[indexes[j]] = Flag("length", reason)
    return found
