"""Turn a run's stored results into the user's output file: long (a row per model) or side by side."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import groupby
from pathlib import Path
from typing import Any

from reasonry.io.writers import write_table
from reasonry.store import RunRecord, Store

RESULT_COLUMNS = ("response", "reasoning", "model", "prompt_tokens", "completion_tokens", "latency_s",
                  "finish_reason", "error")
WIDE_METRICS = ("completion_tokens", "latency_s", "finish_reason", "error")
TEXT_COLUMNS = ("question", "input", "response", "reasoning")


def _value(record: dict[str, Any], name: str) -> Any:
    if name == "reasoning":
        return RunRecord.reasoning_of(record)
    return record.get(name)


def write_run_output(store: Store, run_id: str, path: str | Path, *, models: list[str] | None = None,
                     wide: bool | None = None) -> int:
    """Write the run to `path` (format by extension). Wide = one column pair per model (xlsx default)."""
    run = store.get_run(run_id)
    config = run["config"]
    labels = [m["label"] for m in run["models"] if not models or m["label"] in models]
    samples = int(config.get("samples", 1))
    id_name = config.get("id_col") or "seq"
    has_input = bool(config.get("input_col"))
    translations = list(config.get("translations", []))
    reserved = {id_name, "question", "input", "sample", *RESULT_COLUMNS, *translations}
    # An input column named like an output column (a Dolly-style `response`, say) keeps its values under a new name.
    renamed = {c: f"{c} (input)" for c in config.get("extra_columns", []) if c in reserved}
    extras = [renamed.get(c, c) for c in config.get("extra_columns", [])]
    path = Path(path)
    if wide is None:
        wide = path.suffix.lower() == ".xlsx" and (len(labels) > 1 or samples > 1)
    base = [id_name, "question"] + (["input"] if has_input else [])
    grouped = _rows(_renaming(store.run_records(run_id, models=labels, columns=None), renamed))
    if wide:
        slots = [(label, s) for label in labels for s in range(samples)]
        columns = base + extras + [f"{field} [{_slot_name(label, s, samples)}]"
                                   for label, s in slots for field in ("reasoning", "response", *translations, *WIDE_METRICS)]
        rows: Iterable[dict[str, Any]] = (_wide_row(records, base, extras, slots, samples, translations, id_name)
                                          for records in grouped)
    else:
        columns = base + list(RESULT_COLUMNS[:2]) + translations + list(RESULT_COLUMNS[2:]) \
            + (["sample"] if samples > 1 else []) + extras
        rows = (row for records in grouped for row in _long_rows(records, id_name, translations, samples))
    wrap = [c for c in columns if c.split(" [")[0] in TEXT_COLUMNS or c.split(" [")[0] in translations]
    return write_table(path, columns, rows, wrap_columns=wrap)


def _renaming(records: Iterator[dict[str, Any]], renamed: dict[str, str]) -> Iterator[dict[str, Any]]:
    for record in records:
        if renamed:
            record["extra"] = {renamed.get(k, k): v for k, v in record["extra"].items()}
        yield record


def _slot_name(label: str, sample: int, samples: int) -> str:
    return label if samples == 1 else f"{label} #{sample + 1}"


def _rows(records: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for _, group in groupby(records, key=lambda r: r["row_index"]):
        yield list(group)


def _common(record: dict[str, Any], id_name: str) -> dict[str, Any]:
    row = {id_name: record["row_id"], "question": record["question"], "input": record["input"]}
    row.update({k: v for k, v in record["extra"].items() if k not in row})
    return row


def _long_rows(records: list[dict[str, Any]], id_name: str, translations: list[str], samples: int
               ) -> Iterator[dict[str, Any]]:
    extra_cols = {(r["model"], r["sample_index"], r["column"]): r for r in records if r["column"]}
    for record in records:
        if record["column"]:
            continue
        row = _common(record, id_name)
        row.update({name: _value(record, name) for name in RESULT_COLUMNS})
        for column in translations:
            translated = extra_cols.get((record["model"], record["sample_index"], column))
            row[column] = translated["response"] if translated else None
        if samples > 1:
            row["sample"] = record["sample_index"] + 1
        yield row


def _wide_row(records: list[dict[str, Any]], base: list[str], extras: list[str], slots: list[tuple[str, int]],
              samples: int, translations: list[str], id_name: str) -> dict[str, Any]:
    row = _common(records[0], id_name)
    by_slot = {(r["model"], r["sample_index"], r["column"]): r for r in records}
    for label, sample in slots:
        name = _slot_name(label, sample, samples)
        record = by_slot.get((label, sample, ""))
        for field in ("reasoning", "response", *WIDE_METRICS):
            row[f"{field} [{name}]"] = _value(record, field) if record else None
        for column in translations:
            translated = by_slot.get((label, sample, column))
            row[f"{column} [{name}]"] = translated["response"] if translated else None
    return row
