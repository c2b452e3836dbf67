"""Per-model counts and rates of flagged results."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reasonry.quality.flags import FLAG_NAMES, Flag


def _flag_name(flag: Flag | Mapping[str, Any]) -> str:
    return flag.name if isinstance(flag, Flag) else str(flag["name"])


def summarize(flags_per_result: Iterable[tuple[str, Sequence[Flag | Mapping[str, Any]]]]) -> dict[str, dict]:
    """Per model: n results, `counts`/`rates` of results carrying each flag name, and `flagged`/`flagged_rate`
    for results with any flag. Every name in FLAG_NAMES is present (0 when unseen)."""
    models: dict[str, dict[str, Any]] = {}
    for model, flags in flags_per_result:
        entry = models.setdefault(model, {"n": 0, "flagged": 0, "counts": dict.fromkeys(FLAG_NAMES, 0)})
        entry["n"] += 1
        names = {_flag_name(f) for f in flags}
        entry["flagged"] += bool(names)
        for name in names:
            entry["counts"][name] = entry["counts"].get(name, 0) + 1
    for entry in models.values():
        n = entry["n"]
        entry["rates"] = {name: count / n for name, count in entry["counts"].items()}
        entry["flagged_rate"] = entry["flagged"] / n
    return models


def judge_agreement(items: Iterable[tuple[str, bool, Mapping[str, str]]]) -> dict[str, dict[str, Any]]:
    """Per model: how often the rule-based leakage flag and the judge's leakage verdict agree, and the judge's
    consistency verdicts. `items` are (model, rule flagged leakage, {judge kind: verdict}); results the judge
    did not see are left out, "unclear" leakage verdicts are counted apart."""
    models: dict[str, dict[str, Any]] = {}
    for model, rule, verdicts in items:
        if not verdicts:
            continue
        entry = models.setdefault(model, {
            "judged": 0, "compared": 0, "agree": 0, "both": 0, "rule_only": 0, "judge_only": 0, "neither": 0,
            "unclear": 0, "consistency": {"yes": 0, "no": 0, "n/a": 0, "unclear": 0},
        })
        entry["judged"] += 1
        leak = verdicts.get("judge-leakage", "unclear")
        if leak in ("yes", "no"):
            judge = leak == "yes"
            entry["compared"] += 1
            entry["agree"] += rule == judge
            entry[("both" if judge else "rule_only") if rule else ("judge_only" if judge else "neither")] += 1
        else:
            entry["unclear"] += 1
        consistent = verdicts.get("judge-consistency", "unclear")
        entry["consistency"][consistent if consistent in entry["consistency"] else "unclear"] += 1
    for entry in models.values():
        entry["agreement"] = entry["agree"] / entry["compared"] if entry["compared"] else None
    return models
