"""The `check` task: quality flags on every result of a run, stored in the `flags` table per result key.

Every result the checks looked at is recorded in `checked`; a result without rows in `flags` is clean only if
it is there. `runs.config["quality_check"]` records when and how the run was last checked. Re-checking replaces
the flags of the keys it looked at; readers (report, export) check results that were never seen first.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reasonry.errors import ConfigError
from reasonry.quality import FLAG_NAMES, CheckConfig, Flag, summarize
from reasonry.quality.checks import check_record, length_flags, reasoning_of
from reasonry.quality.judge import JUDGE_KINDS, Verdict
from reasonry.quality.summary import judge_agreement
from reasonry.store import Store
from reasonry.tasks.execute import Reporter
from reasonry.tasks.judge import JudgeConfig, Judged, judge_results

CHECK_MARK = "quality_check"


@dataclass
class Checked:
    """One result of a run and its flags."""

    key: str
    model: str
    record: dict[str, Any]
    flags: list[Flag] = field(default_factory=list)
    verdicts: list[Flag] | None = None  # judge verdicts, when a judge was asked this time


def check_config(values: Mapping[str, Any]) -> CheckConfig:
    """A CheckConfig from field=value pairs (strings are converted to the field's type)."""
    fields = {f.name: f for f in dataclasses.fields(CheckConfig)}
    converted: dict[str, Any] = {}
    for name, value in values.items():
        if name not in fields:
            raise ConfigError(f"unknown check setting {name!r}; choose from {', '.join(fields)}")
        converted[name] = _convert(name, value, fields[name].default)
    return CheckConfig(**converted)


def _convert(name: str, value: Any, default: Any) -> Any:
    if value is None or not isinstance(value, str):
        return value
    kind = float if isinstance(default, float) else int if isinstance(default, int) else str
    try:
        return kind(value)
    except ValueError:
        raise ConfigError(f"check setting {name}={value!r}: expected a {kind.__name__}") from None


def _produces(store: Store, keys: Sequence[str]) -> dict[str, str | None]:
    return store.produces_of(keys)


def _is_checkable(record: Mapping[str, Any]) -> bool:
    return not record.get("error") and record.get("text") is not None


def add_length_flags(checked: Sequence[Checked], config: CheckConfig) -> None:
    found = length_flags([(item.model, reasoning_of(item.record)) for item in checked], config)
    for i, flag in found.items():
        checked[i].flags.append(flag)


def save_flags(store: Store, checked: Sequence[Checked]) -> None:
    """Replace the stored flags of every checked key (judge verdicts only where a judge was asked again)."""
    store.replace_flags([item.key for item in checked],
                        [(item.key, f.name, f.reason, f.span, f.start, f.end)
                         for item in checked for f in [*item.flags, *(item.verdicts or [])]],
                        keep=JUDGE_KINDS, judged=[item.key for item in checked if item.verdicts is not None])


def unchecked_keys(store: Store, keys: Iterable[str]) -> set[str]:
    """Keys the checks have never seen (generated after the last check, or outside a partial one)."""
    keys = list(dict.fromkeys(k for k in keys if k))
    return set(keys) - store.checked_keys(keys)


def _stored_flags(store: Store, keys: Iterable[str]) -> dict[str, list[Flag]]:
    keys = list(dict.fromkeys(k for k in keys if k))
    found: dict[str, list[Flag]] = defaultdict(list)
    for row in store.flag_rows(k for k in keys if k):
        found[row["key"]].append(Flag(row["name"], row["reason"], row["span"], row["start"], row["end"]))
    return dict(found)


def load_flags(store: Store, keys: Iterable[str]) -> dict[str, list[Flag]]:
    """Stored rule-based flags by result key (keys without flags are absent)."""
    stored = _stored_flags(store, keys)
    found = {key: [f for f in flags if f.name not in JUDGE_KINDS] for key, flags in stored.items()}
    return {key: flags for key, flags in found.items() if flags}


def load_verdicts(store: Store, keys: Iterable[str]) -> dict[str, dict[str, Verdict]]:
    """Stored judge verdicts by result key, then by kind (`judge-leakage`, `judge-consistency`)."""
    stored = _stored_flags(store, keys)
    found = {key: {f.name: Verdict.from_flag(f) for f in flags if f.name in JUDGE_KINDS}
             for key, flags in stored.items()}
    return {key: verdicts for key, verdicts in found.items() if verdicts}


def agreement(checked: Sequence[Checked], verdicts: dict[str, dict[str, Verdict]]) -> dict[str, dict[str, Any]]:
    """Rule vs judge on leakage, per model (see `judge_agreement`)."""
    return judge_agreement(
        (item.model, any(f.name == "leakage" for f in item.flags),
         {kind: v.verdict for kind, v in verdicts.get(item.key, {}).items()})
        for item in checked)


def is_checked(store: Store, run_id: str) -> bool:
    return CHECK_MARK in store.get_run(run_id)["config"]


def check_run(store: Store, run_id: str, *, config: CheckConfig | None = None,
              models: Sequence[str] | None = None, judge: JudgeConfig | None = None,
              reporter: Reporter | None = None) -> dict[str, Any]:
    """Check every finished result of `run_id`, store the flags, and return a summary per model.

    Results that failed or are not generated yet are skipped (counted in `skipped`). With `judge`, a model is
    asked about every result too; its verdicts are stored beside the flags and the summary's `judge` holds,
    per model, how often it agrees with the rule-based leakage flag (also from verdicts stored earlier).
    """
    config = config or CheckConfig()
    records = list(store.run_records(run_id, models=models))
    usable = [r for r in records if _is_checkable(r)]
    produces = _produces(store, [r["request_key"] for r in usable])
    checked = [
        Checked(r["request_key"], r["model"], r, check_record(r, config, produces.get(r["request_key"])))
        for r in usable
    ]
    add_length_flags(checked, config)
    judge_summary: dict[str, Any] | None = None
    if judge is not None:
        found, counts = judge_results(store, run_id, [Judged(i.key, i.model, i.record) for i in checked], judge,
                                      reporter)
        for item in checked:
            item.verdicts = found.get(item.key, [])
        judge_summary = {"requests": counts.requests, "generated": counts.generated, "cached": counts.cached,
                         "failed": counts.failed, "errors": counts.errors}
    save_flags(store, checked)
    verdicts = load_verdicts(store, [item.key for item in checked])
    changed = {f.name: f.default for f in dataclasses.fields(CheckConfig)}
    settings = {k: v for k, v in dataclasses.asdict(config).items() if v != changed[k]}
    store.update_run_config(run_id, **{CHECK_MARK: {"at": time.time(), "settings": settings}})
    return {
        "run_id": run_id,
        "checked": len(checked),
        "skipped": len(records) - len(checked),
        "flagged": sum(1 for item in checked if item.flags),
        "settings": settings,
        "models": summarize((item.model, item.flags) for item in checked),
        "flag_names": list(FLAG_NAMES),
        "judge": {"models": agreement(checked, verdicts), **(judge_summary or {})} if verdicts else None,
    }


def flagged_examples(store: Store, run_id: str, limit: int = 20) -> list[dict[str, Any]]:
    """Stored flags of a run, one dict per flag (row id, model, sample, name, reason, span), in run order."""
    records = [r for r in store.run_records(run_id) if r.get("request_key")]
    flags = load_flags(store, (r["request_key"] for r in records))
    out: list[dict[str, Any]] = []
    for record in records:
        for flag in flags.get(record["request_key"], []):
            out.append({"row_id": record["row_id"], "model": record["model"], "sample": record["sample_index"],
                        **flag.to_dict()})
            if len(out) >= limit:
                return out
    return out


def records_with_flags(store: Store, run_id: str, *, config: CheckConfig | None = None,
                       models: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The run's records, each with `flags` (a list of rule-based Flag, empty when clean) and `verdicts` (judge
    kind -> Verdict, empty when no judge was asked); checks the run first if it never was checked."""
    records = [r for r in store.run_records(run_id, models=models) if r.get("error") or r.get("text") is not None]
    usable = [r["request_key"] for r in records if _is_checkable(r)]
    if not is_checked(store, run_id) or unchecked_keys(store, usable):
        check_run(store, run_id, config=config)
    flags = load_flags(store, (r["request_key"] for r in records))
    verdicts = load_verdicts(store, (r["request_key"] for r in records))
    for record in records:
        record["flags"] = flags.get(record["request_key"], [])
        record["verdicts"] = verdicts.get(record["request_key"], {})
        record["reasoning"] = reasoning_of(record)
    return records
