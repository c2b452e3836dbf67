"""Excel review round trip: a run out to a workbook a person edits, and the edits back in as steering versions.

    export_review(store, "last", "review.xlsx")
    summary = import_review(store, "review.xlsx", sft="accepted.jsonl", dpo="pairs.jsonl", engine=engine, fmt=fmt)

The workbook has one row per result: question, input, reasoning, response, flags (locked), and the editable
`edited_reasoning`, `verdict` (accept / reject / edit, an Excel list) and `note`; the keys that tie a row back to
its result sit in locked columns at the right. Import reads columns by header (any order Excel leaves), records
each reviewed row as steering versions (thread `review:RUN/ROW/MODEL`), regenerates the response of edited
reasonings when an engine is given, and writes accepted rows as SFT records and edited ones as DPO pairs.
"""

from __future__ import annotations

import os
import tempfile
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

from reasonry.config import SamplingParams
from reasonry.engines.base import Engine
from reasonry.errors import InputError
from reasonry.extract import split_output
from reasonry.quality.checks import reasoning_of
from reasonry.store import Store
from reasonry.tasks.check import load_flags
from reasonry.tasks.steer import Version, make_request, record_version
from reasonry.tasks.steer_formats import SteerFormat

SHOWN = ("row_id", "model", "question", "input", "reasoning", "response", "flags")
EDITABLE = ("edited_reasoning", "verdict", "note")
KEYS = ("run_id", "row_index", "request_key")
COLUMNS = SHOWN + EDITABLE + KEYS
VERDICTS = ("accept", "reject", "edit")
WIDTHS = {"row_id": 8, "model": 14, "question": 40, "input": 20, "reasoning": 60, "response": 50, "flags": 14,
          "edited_reasoning": 60, "verdict": 10, "note": 24, "run_id": 12, "row_index": 6, "request_key": 12}


def export_review(store: Store, run: str, out: str | Path, *, models: list[str] | None = None) -> dict[str, Any]:
    """Write the review workbook of a run's finished results (atomically); returns a summary."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill, Protection
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.datavalidation import DataValidation

    from reasonry.io.writers import _xlsx_value  # Excel-safe text (control characters, the cell limit)

    path = Path(out)
    if path.suffix.lower() != ".xlsx":
        raise InputError(f"--out {out}: a review workbook must end in .xlsx")
    run_id = store.resolve_run(run)
    records = [r for r in store.run_records(run_id, models=models) if not r.get("error") and r.get("text") is not None]
    if not records:
        raise InputError(f"run {run_id} has no finished results to review")
    flags = load_flags(store, (r["request_key"] for r in records))
    book = Workbook()
    sheet = book.active
    sheet.title = "review"
    sheet.append(list(COLUMNS))
    for record in records:
        sheet.append([_xlsx_value(value) for value in [
            str(record["row_id"]), record["model"], record["question"], record["input"] or "",
            (reasoning_of(record) or "").strip(), (record.get("response") or "").strip(),
            ", ".join(f.name for f in flags.get(record["request_key"], [])), None, None, None,
            run_id, record["row_index"], record["request_key"]]])
    editable = {COLUMNS.index(name) + 1 for name in EDITABLE}
    header_font, fill = Font(bold=True), PatternFill("solid", fgColor="FFF2CC")
    for index, name in enumerate(COLUMNS, start=1):
        letter = get_column_letter(index)
        sheet.column_dimensions[letter].width = WIDTHS[name]
        sheet.cell(1, index).font = header_font
        for row in range(2, len(records) + 2):
            cell = sheet.cell(row, index)
            cell.alignment = Alignment(wrap_text=name in ("question", "reasoning", "response", "edited_reasoning",
                                                          "note"), vertical="top")
            if index in editable:
                cell.protection = Protection(locked=False)
                cell.fill = fill
    last = len(records) + 1
    validation = DataValidation(type="list", formula1='"' + ",".join(VERDICTS) + '"', allow_blank=True,
                                showErrorMessage=True, errorTitle="verdict", error="accept, reject or edit")
    verdict_letter = get_column_letter(COLUMNS.index("verdict") + 1)
    validation.add(f"{verdict_letter}2:{verdict_letter}{last}")
    sheet.add_data_validation(validation)
    sheet.freeze_panes = "C2"
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(COLUMNS))}{last}"
    sheet.protection.sheet = True  # only the yellow columns can be typed in
    sheet.protection.autoFilter = False
    sheet.protection.sort = False
    sheet.protection.formatColumns = False
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(suffix=".xlsx", dir=path.parent, prefix=f".{path.name}.")
    os.close(handle)
    try:
        book.save(temp)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return {"out": str(path), "run_id": run_id, "rows": len(records)}


def clean_text(value: Any) -> str:
    """A cell as text: NFC, Windows line ends and Excel's _x000D_ escapes undone, trailing blanks dropped."""
    if value is None:
        return ""
    text = str(value) if not isinstance(value, float) or not value.is_integer() else str(int(value))
    text = text.replace("_x000D_", "").replace("\r\n", "\n").replace("\r", "\n")
    return unicodedata.normalize("NFC", text).strip()


def read_review(path: str | Path) -> list[dict[str, Any]]:
    """The reviewed rows of a workbook (those with a verdict or an edited reasoning), columns found by header."""
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except Exception as exc:  # not a zip, not a workbook
        raise InputError(f"{path}: not an Excel workbook ({type(exc).__name__}); give the .xlsx from "
                         "`reasonry review export`") from None
    sheet = book["review"] if "review" in book.sheetnames else book.worksheets[0]
    rows = sheet.iter_rows(values_only=True)
    header = [clean_text(h).lower() for h in next(rows, ())]
    missing = [name for name in ("model", "question", "reasoning", "verdict", "edited_reasoning", *KEYS) if name not in header]
    if missing:
        raise InputError(f"{path}: column(s) {', '.join(missing)} missing from the header row; export the workbook "
                         "again with `reasonry review export`")
    position = {name: header.index(name) for name in header if name}
    out = []
    for number, values in enumerate(rows, start=2):
        cells = {name: clean_text(values[i]) if i < len(values) else "" for name, i in position.items()}
        verdict = cells.get("verdict", "").lower()
        if verdict and verdict not in VERDICTS:
            raise InputError(f"{path} row {number}, column verdict: {cells['verdict']!r}; use accept, reject or edit")
        if not verdict and cells.get("edited_reasoning"):
            verdict = "edit"
        if verdict == "edit" and not cells.get("edited_reasoning"):
            raise InputError(f"{path} row {number}: verdict edit needs an edited_reasoning")
        if not verdict:
            continue
        try:
            row_index = int(cells["row_index"])
        except ValueError:
            raise InputError(f"{path} row {number}, column row_index: {cells['row_index']!r} is not a number; "
                             "do not edit the key columns") from None
        out.append({**cells, "verdict": verdict, "row_index": row_index, "sheet_row": number})
    return out


def _thread(run_id: str, record: Any) -> str:
    return f"review:{run_id}/{record['row_id']}/{record['model']}"


def _recorded(store: Store, row: dict[str, Any], records: dict[Any, Any],
              file_name: str) -> tuple[Version, Version | None] | None:
    """(original, edited) versions an earlier import of this same workbook row recorded, if any."""
    record = records[(row["run_id"], row["row_index"], row.get("model", ""))]
    versions = [Version.from_row(r) for r in store.version_rows(thread=_thread(row["run_id"], record))]
    for original in versions:
        params = original.params
        if original.parent_id is not None or params.get("review") != file_name or params.get("verdict") != row["verdict"]:
            continue
        if row["verdict"] != "edit":
            return original, None
        edits = [v for v in versions if v.parent_id == original.id and v.reasoning == row["edited_reasoning"]]
        edits.sort(key=lambda v: not v.params.get("regenerated"))  # a regenerated response first
        return original, edits[0] if edits else None
    return None


def import_review(store: Store, path: str | Path, *, engine: Engine | None = None, fmt: SteerFormat | None = None,
                  label: str | None = None, sft: str | Path | None = None,
                  dpo: str | Path | None = None, params: SamplingParams | None = None) -> dict[str, Any]:
    """Record a reviewed workbook as steering versions; regenerate edited rows' responses when `engine` is given;
    write accepted rows to `sft` and edited rows as preference pairs to `dpo`. Returns a summary."""
    from reasonry.export import BUILDERS, ExportOptions, Pair, _dpo, check_export_path, write_records

    reviewed = read_review(path)
    if not reviewed:
        raise InputError(f"{path}: no row has a verdict (accept / reject / edit) or an edited_reasoning")
    outputs = [check_export_path(p) for p in (sft, dpo) if p is not None]
    records = {}
    for run_id in {row["run_id"] for row in reviewed}:
        store.get_run(run_id)
        records.update({(run_id, r["row_index"], r["model"]): r for r in store.run_records(run_id)})
    for row in reviewed:
        if (row["run_id"], row["row_index"], row.get("model", "")) not in records:
            raise InputError(f"{path} row {row['sheet_row']}: no result for run {row['run_id']} row "
                             f"{row['row_index']} model {row.get('model')!r} in the database; import into the --db "
                             "the workbook was exported from")
    counts: Counter[str] = Counter()
    accepted: list[Version] = []
    pairs: list[tuple[Version, Version]] = []
    earlier = {row["sheet_row"]: _recorded(store, row, records, Path(path).name) for row in reviewed}
    todo = [row for row in reviewed if earlier[row["sheet_row"]] is None or _unregenerated(row, earlier[row["sheet_row"]])]
    responses = _regenerate(todo, engine, fmt, params or SamplingParams()) if engine is not None and todo else {}
    for row in reviewed:
        key = (row["run_id"], row["row_index"], row.get("model", ""))
        record = records[key]
        counts[row["verdict"]] += 1
        found = earlier[row["sheet_row"]]
        if found is not None:  # the same workbook imported again: its versions are reused, not recorded twice
            original, edited = found
            counts["already imported"] += 1
            if row["sheet_row"] in responses:  # imported before without --regenerate: the response is new now
                edited = _record_edit(store, original, record, row, label, responses[row["sheet_row"]])
                counts["regenerated"] += 1
            if row["verdict"] == "accept":
                accepted.append(_accept(store, original))
            elif row["verdict"] == "edit" and edited is not None:
                accepted.append(_accept(store, edited))
                pairs.append((edited, original))
            continue
        source = _source(row, record, Path(path).name)
        original = record_version(
            store, thread=_thread(row["run_id"], record), parent_id=None,
            model=record["model"], mode="reasoning", question=record["question"], input_text=record["input"] or "",
            reasoning=(reasoning_of(record) or "").strip(), response=(record.get("response") or "").strip(),
            raw_text=record.get("raw_text"), params={**source, "verdict": row["verdict"]},
            seconds=record.get("latency_s"), note=row.get("note") or None)
        if row["verdict"] == "accept":
            accepted.append(_accept(store, original))
        elif row["verdict"] == "edit":
            regenerated = responses.get(row["sheet_row"])
            edited = _record_edit(store, original, record, row, label, regenerated)
            accepted.append(_accept(store, edited))
            pairs.append((edited, original))
            counts["regenerated"] += regenerated is not None
    summary: dict[str, Any] = {"file": str(path), "reviewed": len(reviewed), **counts,
                               "versions": [v.id for v in accepted]}
    examples = {v.id: _example(v) for v in accepted + [rejected for _, rejected in pairs]}
    if sft is not None:
        rows = [BUILDERS["alpaca-special"](examples[v.id], ExportOptions()) for v in accepted]
        write_records(outputs[0], list(rows[0]), rows)
        summary["sft"] = {"out": str(outputs[0]), "records": len(rows)}
    if dpo is not None:
        rows = [_dpo(Pair(c.question, c.input, examples[c.id], examples[r.id], c.model), ExportOptions())
                for c, r in pairs]
        if rows:
            write_records(outputs[-1], list(rows[0]), rows)
        summary["dpo"] = {"out": str(outputs[-1]) if rows else None, "records": len(rows)}
    return summary


def _source(row: dict[str, Any], record: dict[str, Any], file_name: str) -> dict[str, Any]:
    return {"run": row["run_id"], "row_index": row["row_index"], "row_id": record["row_id"], "review": file_name,
            "key": record["request_key"]}


def _unregenerated(row: dict[str, Any], found: tuple[Version, Version | None]) -> bool:
    edited = found[1]
    return row["verdict"] == "edit" and edited is not None and not edited.params.get("regenerated")


def _record_edit(store: Store, original: Version, record: dict[str, Any], row: dict[str, Any], label: str | None,
                 regenerated: str | None) -> Version:
    """The edited version of a reviewed row: the edited reasoning, and the regenerated response if there is one."""
    return record_version(
        store, thread=original.thread, parent_id=original.id, model=label or record["model"], mode="special",
        question=record["question"], input_text=record["input"] or "", reasoning=row["edited_reasoning"],
        response=regenerated if regenerated is not None else original.response, raw_text=None,
        params={**_source(row, record, original.params["review"]), "verdict": "edit",
                "regenerated": regenerated is not None},
        seconds=None, edited=True, note=row.get("note") or None)


def _accept(store: Store, version: Version) -> Version:
    from reasonry.tasks.steer import accept

    return accept(store, version.id)


def _example(version: Version) -> Any:
    from reasonry.export import Example

    return Example(str(version.id), version.question, version.input, version.reasoning or "", version.response,
                   version.model, accepted=version.accepted)


def _regenerate(reviewed: list[dict[str, Any]], engine: Engine, fmt: SteerFormat | None,
                params: SamplingParams) -> dict[int, str | None]:
    """Responses for the edited reasonings (special mode), by sheet row."""
    from reasonry.tasks.steer_formats import steer_format

    fmt = fmt or steer_format("alpaca")
    requests = {}
    for row in reviewed:
        if row["verdict"] == "edit":
            call = fmt.build("special", row["question"], row.get("input", ""), row["edited_reasoning"])
            requests[row["sheet_row"]] = make_request(engine, call, params)
    results = {r.key: r for r in engine.generate(list({q.key: q for q in requests.values()}.values()))}
    out: dict[int, str | None] = {}
    for sheet_row, request in requests.items():
        result = results.get(request.key)
        if result is None or result.error is not None:
            raise InputError(f"sheet row {sheet_row}: regeneration failed ({result.error if result else 'no result'})")
        out[sheet_row] = split_output(result.text, "response")[1]
    return out
