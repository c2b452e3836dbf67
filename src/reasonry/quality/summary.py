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
