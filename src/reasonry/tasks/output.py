"""Turn a run's stored results into the user's output file: long (a row per model) or side by side.

Column order, in both shapes: the row's id and question (and input), then the texts (reasoning, its
translations, response, its translations; side by side: each model's, next to each other), then the input
file's other columns, then the metadata (tokens, latency, finish reason, error, flags) grouped at the right.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from itertools import groupby
from pathlib import Path
from typing import Any

from reasonry.io.values import id_value
from reasonry.io.writers import check_not_input, write_table
from reasonry.store import RunRecord, Store

TEXT_FIELDS = ("reasoning", "response")
METRICS = ("prompt_tokens", "completion_tokens", "latency_s", "finish_reason", "error")
RESULT_COLUMNS = (*TEXT_FIELDS, "model", *METRICS)
WRAPPED = ("question", "input", *TEXT_FIELDS)
_FLAG_BATCH_ROWS = 500

Slot = tuple[str, int]


def _value(record: dict[str, Any], name: str) -> Any:
    if name == "reasoning":
        return RunRecord.reasoning_of(record)
    return record.get(name)


def text_groups(translations: list[str]) -> list[list[str]]:
    """Each text field with its translations (`reasoning_ja` beside `reasoning`), then any other translations."""
    groups = [[field, *(t for t in translations if t.rsplit("_", 1)[0] == field)] for field in TEXT_FIELDS]
    placed = {name for group in groups for name in group}
    return groups + [[t] for t in translations if t not in placed]


def write_run_output(store: Store, run_id: str, path: str | Path, *, models: list[str] | None = None,
                     wide: bool | None = None) -> int:
    """Write the run to `path` (format by extension). Wide = one column per model and field (xlsx default)."""
    run = store.get_run(run_id)
    check_not_input(Path(path), f"--out {path}", [run.get("source")])
    config = run["config"]
    labels = [m["label"] for m in run["models"] if not models or m["label"] in models]
    samples = int(config.get("samples", 1))
    id_name = config.get("id_col") or "seq"
    has_input = bool(config.get("input_col"))
    translations = list(config.get("translations", []))
    path = Path(path)
    if wide is None:
        wide = path.suffix.lower() == ".xlsx" and (len(labels) > 1 or samples > 1)
    flagged = _is_checked(store, run_id)
    metrics = [*METRICS, *(["flags"] if flagged else [])]
    reserved = {id_name, "question", "input", "sample", "flags", *RESULT_COLUMNS, *translations}
    # An input column named like an output column (a Dolly-style `response`, say) keeps its values under a new name.
    renamed = {c: f"{c} (input)" for c in config.get("extra_columns", []) if c in reserved}
    extras = [renamed.get(c, c) for c in config.get("extra_columns", [])]
    reference = config.get("reference_col")  # the expected answer (--reference-col) goes out under its own name
    reference = f"{reference} (input)" if reference in reserved else reference
    base = [id_name, "question"] + (["input"] if has_input else []) + ([reference] if reference else [])
    groups = text_groups(translations)
    texts = [name for group in groups for name in group]
    records = _renaming(store.run_records(run_id, models=labels, columns=None), renamed, reference)
    grouped = _with_flags(store, _rows(records)) if flagged else _rows(records)
    if wide:
        per_model = {label: samples for label in labels} | store.samples_per_model(run_id)
        slots = {(label, s): _slot_name(label, s, per_model[label]) for label in labels for s in range(per_model[label])}
        columns = base + [_slotted(f, slots[slot]) for group in groups for slot in slots for f in group] + extras \
            + [_slotted(m, slots[slot]) for m in metrics for slot in slots]
        rows: Iterable[dict[str, Any]] = (_wide_row(group, slots, texts, metrics, id_name)
                                          for group in grouped)
    else:
        columns = base + texts + ["model"] + (["sample"] if samples > 1 else []) + extras + metrics
        rows = (row for group in grouped for row in _long_rows(group, id_name, texts, metrics, samples))
    wrap = [c for c in columns if c.split(" [")[0] in WRAPPED or c.split(" [")[0] in translations]
    return write_table(path, columns, rows, wrap_columns=wrap)


def _is_checked(store: Store, run_id: str) -> bool:
    from reasonry.tasks.check import is_checked

    return is_checked(store, run_id)


def _with_flags(store: Store, groups: Iterator[list[dict[str, Any]]]) -> Iterator[list[dict[str, Any]]]:
    """Each record gets `flags`: the names of the stored check flags of its result, comma-separated."""
    from reasonry.tasks.check import load_flags

    while batch := list(itertools.islice(groups, _FLAG_BATCH_ROWS)):
        found = load_flags(store, (r["request_key"] for group in batch for r in group if r["text"] is not None))
        for group in batch:
            for record in group:
                names = sorted({flag.name for flag in found.get(record["request_key"], [])})
                record["flags"] = ", ".join(names) if record["text"] is not None else None
            yield group


def _renaming(records: Iterator[dict[str, Any]], renamed: dict[str, str],
              reference: str | None) -> Iterator[dict[str, Any]]:
    for record in records:
        if renamed:
            record["extra"] = {renamed.get(k, k): v for k, v in record["extra"].items()}
        if reference:
            record["extra"] = {reference: record["reference"], **record["extra"]}
        yield record


def _slot_name(label: str, sample: int, samples: int) -> str:
    return label if samples == 1 else f"{label} #{sample + 1}"


def _slotted(field: str, name: str) -> str:
    return f"{field} [{name}]"


def _rows(records: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for _, group in groupby(records, key=lambda r: r["row_index"]):
        yield list(group)


def _common(record: dict[str, Any], id_name: str) -> dict[str, Any]:
    row = {id_name: id_value(record["row_id"]), "question": record["question"], "input": record["input"]}
    row.update({k: v for k, v in record["extra"].items() if k not in row})
    return row


def _texts(record: dict[str, Any] | None, by_column: dict[str, dict[str, Any]], texts: list[str]
           ) -> dict[str, Any]:
    """The slot's text fields: its own reasoning/response, and the translations stored as extra columns."""
    values: dict[str, Any] = {}
    for name in texts:
        if name in TEXT_FIELDS:
            values[name] = _value(record, name) if record else None
        else:
            translated = by_column.get(name)
            values[name] = translated["response"] if translated else None
    return values


def _long_rows(records: list[dict[str, Any]], id_name: str, texts: list[str], metrics: list[str],
               samples: int) -> Iterator[dict[str, Any]]:
    by_slot = {(r["model"], r["sample_index"], r["column"]): r for r in records}
    for record in records:
        if record["column"]:
            continue
        row = _common(record, id_name)
        columns = {c: r for (m, s, c), r in by_slot.items() if (m, s) == (record["model"], record["sample_index"])}
        row.update(_texts(record, columns, texts))
        row["model"] = record["model"]
        row.update({name: _value(record, name) for name in metrics})
        if samples > 1:
            row["sample"] = record["sample_index"] + 1
        yield row


def _wide_row(records: list[dict[str, Any]], slots: dict[Slot, str], texts: list[str],
              metrics: list[str], id_name: str) -> dict[str, Any]:
    row = _common(records[0], id_name)
    by_slot = {(r["model"], r["sample_index"], r["column"]): r for r in records}
    for slot in slots:
        record = by_slot.get((*slot, ""))
        columns = {c: r for (m, s, c), r in by_slot.items() if (m, s) == slot and c}
        for name, value in _texts(record, columns, texts).items():
            row[_slotted(name, slots[slot])] = value
        for name in metrics:
            row[_slotted(name, slots[slot])] = _value(record, name) if record else None
    return row
