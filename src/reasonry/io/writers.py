"""Write result tables as .xlsx, .jsonl, .json, .csv or .parquet: streaming, and atomically.

Rows go to a hidden temp file beside the target (`.name.tmp-XXXX`) which replaces the target only
when everything was written; on any failure the temp file is removed and the target is untouched.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import itertools
import json
import os
import secrets
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from reasonry.errors import InputError
from reasonry.io.atomic import atomic_write
from reasonry.io.values import Scalar, finite, json_default, json_safe, to_scalar

Writer = Callable[[Path, list[str], Iterator[dict[str, Any]]], int]

OUTPUT_SUFFIXES = (".xlsx", ".jsonl", ".json", ".csv", ".parquet")

PARQUET_BATCH_ROWS = 10_000
XLSX_MAX_ROWS = 1_048_575  # Excel's 1,048,576 rows, less the header
XLSX_CELL_LIMIT = 32_767
XLSX_TRUNCATED = " …[cut: Excel cells hold at most 32,767 characters]"
_XLSX_SAMPLE_ROWS = 200  # rows looked at to size the columns
_XLSX_LONG_TEXT = 50  # display width above which a column wraps
_XLSX_TEXT_WIDTH = 60
_XLSX_MIN_WIDTH, _XLSX_MAX_WIDTH = 8, 40
_XLSX_HEADER_WIDTH = 18  # a longer column name wraps in the header instead of widening the column
_XLSX_EMPTY_WIDTH = 8
_INT64 = range(-(2**63), 2**63)


def check_output_path(path: str | Path, *, inputs: Iterable[str | Path | None] = ()) -> Path:
    """The output path, refused (InputError) if its format is unknown, its folder is missing or it is one of
    `inputs` (the question file a run was made from: writing there would replace the questions)."""
    out = Path(path)
    label = f"--out {path}"
    check_not_input(out, label, inputs)
    suffix = out.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise InputError(
            f"{label}: unknown output format '{suffix or '(no extension)'}'; use one of {', '.join(OUTPUT_SUFFIXES)}"
        )
    if out.is_dir():
        raise InputError(f"{label}: is a folder; give a file name such as {out / ('results' + suffix)}")
    folder = out.parent
    if not folder.exists():
        raise InputError(f"{label}: folder '{folder}' does not exist; create it first")
    if not folder.is_dir():
        raise InputError(f"{label}: '{folder}' is not a folder")
    return out


def check_not_input(out: Path, label: str, inputs: Iterable[str | Path | None]) -> None:
    for source in inputs:
        if source is not None and Path(source).exists() and out.resolve() == Path(source).resolve():
            raise InputError(f"{label}: is the input file {source}; write to another file")


def write_table(
    path: str | Path,
    columns: list[str],
    rows: Iterable[dict[str, Any]],
    *,
    sheet_name: str = "results",
    wrap_columns: Iterable[str] = (),
) -> int:
    """Stream `rows` (missing keys are empty cells, other keys ignored) to `path`; returns the row count."""
    out = check_output_path(path)
    label = f"--out {path}"
    suffix = out.suffix.lower()
    writer: Writer
    if suffix == ".xlsx":
        writer = functools.partial(_write_xlsx, label=label, sheet_name=sheet_name, wrap=set(wrap_columns))
    elif suffix == ".parquet":
        writer = functools.partial(_write_parquet, label=label)
    else:
        writer = {".jsonl": _write_jsonl, ".json": _write_json, ".csv": _write_csv}[suffix]
    return atomic_write(out, lambda temp: writer(temp, list(columns), iter(rows)), label=label)


# ---------------------------------------------------------------- values


def _json_record(columns: list[str], row: dict[str, Any]) -> str:
    record = {name: row.get(name) for name in columns}
    try:
        return json.dumps(record, ensure_ascii=False, allow_nan=False, default=json_default)
    except ValueError:  # NaN or infinity somewhere
        return json.dumps(json_safe(record), ensure_ascii=False, default=json_default)


# ---------------------------------------------------------------- JSON / JSONL / CSV


def _write_jsonl(temp: Path, columns: list[str], rows: Iterator[dict[str, Any]]) -> int:
    count = 0
    with temp.open("w", encoding="utf-8", newline="\n") as file:
        for row in rows:
            file.write(_json_record(columns, row) + "\n")
            count += 1
    return count


def _write_json(temp: Path, columns: list[str], rows: Iterator[dict[str, Any]]) -> int:
    count = 0
    with temp.open("w", encoding="utf-8", newline="\n") as file:
        file.write("[")
        for row in rows:
            file.write((",\n" if count else "\n") + _json_record(columns, row))
            count += 1
        file.write("\n]\n" if count else "]\n")
    return count


def _write_csv(temp: Path, columns: list[str], rows: Iterator[dict[str, Any]]) -> int:
    count = 0
    with temp.open("w", encoding="utf-8-sig", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([finite(to_scalar(row.get(name))) for name in columns])
            count += 1
    return count


# ---------------------------------------------------------------- Parquet


def _batches(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    while batch := list(itertools.islice(rows, size)):
        yield batch


def _kinds(values: list[Scalar]) -> set[type]:
    kinds = {type(value) for value in values if value is not None}
    if int in kinds and any(type(value) is int and value not in _INT64 for value in values):
        kinds.add(str)  # beyond int64: kept as text
    return kinds


def _arrow_type_name(kinds: set[type]) -> str:
    if kinds == {bool}:
        return "bool"
    if kinds == {int}:
        return "int64"
    if kinds and kinds <= {int, float}:
        return "double"
    return "string"


def _fits(type_name: str, kinds: set[type]) -> bool:
    allowed = {"bool": {bool}, "int64": {int}, "double": {int, float}}
    return type_name == "string" or kinds <= allowed[type_name]


def _widen(type_name: str, kinds: set[type]) -> str:
    return "double" if type_name == "int64" and kinds <= {int, float} else "string"


class _ParquetSink:
    """A ParquetWriter whose column types come from the first batch.

    A later batch that does not fit (a float in an int64 column, text in a number column) widens
    the column: the rows written so far are copied, cast, into a new file, and writing goes on there.
    """

    def __init__(self, temp: Path, label: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._pa, self._pq = pa, pq
        self._temp, self._label = temp, label
        self._file = temp
        self._types: dict[str, str] = {}
        self._writer: Any = None

    def write(self, columns: list[str], batch: list[dict[str, Any]]) -> None:
        data = {name: [finite(to_scalar(row.get(name))) for row in batch] for name in columns}
        kinds = {name: _kinds(values) for name, values in data.items()}
        if self._writer is None:
            self._open({name: _arrow_type_name(kinds[name]) for name in columns})
        wider = {
            name: _widen(kind, kinds[name])
            for name, kind in self._types.items()
            if not _fits(kind, kinds[name])
        }
        if wider:
            self._reopen(self._types | wider)
        self._writer.write_table(self._pa.table(self._arrays(data), schema=self._schema()))

    def close(self, columns: list[str]) -> None:
        if self._writer is None:
            self._open(dict.fromkeys(columns, "string"))
        self._writer.close()
        if self._file != self._temp:
            os.replace(self._file, self._temp)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._file != self._temp:
            self._file.unlink(missing_ok=True)

    def _arrow_type(self, kind: str) -> Any:
        pa = self._pa
        return {"bool": pa.bool_(), "int64": pa.int64(), "double": pa.float64(), "string": pa.string()}[kind]

    def _schema(self) -> Any:
        fields = [
            self._pa.field(name, self._arrow_type(kind), nullable=True) for name, kind in self._types.items()
        ]
        return self._pa.schema(fields)

    def _arrays(self, data: dict[str, list[Scalar]]) -> list[Any]:
        arrays = []
        for name, kind in self._types.items():
            values = data[name]
            if kind == "string":
                values = [
                    value if value is None or isinstance(value, str) else str(value) for value in values
                ]
            arrays.append(self._pa.array(values, type=self._arrow_type(kind)))
        return arrays

    def _open(self, types: dict[str, str]) -> None:
        self._types = types
        self._writer = self._pq.ParquetWriter(self._file, self._schema())

    def _reopen(self, types: dict[str, str]) -> None:
        self._writer.close()
        previous = self._file
        self._file = previous.with_name(f"{self._temp.name}-{secrets.token_hex(2)}")
        try:
            self._open(types)
            with self._pq.ParquetFile(previous) as old:
                for batch in old.iter_batches(batch_size=PARQUET_BATCH_ROWS):
                    self._writer.write_table(self._pa.Table.from_batches([batch]).cast(self._schema()))
        finally:
            if previous != self._temp:
                previous.unlink(missing_ok=True)


def _write_parquet(temp: Path, columns: list[str], rows: Iterator[dict[str, Any]], *, label: str) -> int:
    sink = _ParquetSink(temp, label)
    count = 0
    try:
        for batch in _batches(rows, PARQUET_BATCH_ROWS):
            sink.write(columns, batch)
            count += len(batch)
        sink.close(columns)
    except BaseException:
        sink.abort()
        raise
    return count


# ---------------------------------------------------------------- XLSX


def _display_width(value: Scalar) -> int:
    """Width in Excel character cells of the widest line; CJK characters count double."""
    if value is None:
        return 0
    text = value if isinstance(value, str) else str(value)
    lines = text[:500].splitlines() or [""]
    return max(sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in line) for line in lines)


def _is_long(value: Scalar) -> bool:
    return isinstance(value, str) and ("\n" in value or _display_width(value) > _XLSX_LONG_TEXT)


def _xlsx_layout(
    columns: list[str], sample: list[dict[str, Any]], wrap: set[str]
) -> tuple[list[float], list[bool]]:
    """Column widths and which columns wrap, from the header and the first rows.

    Long text gets a wide wrapped column, an empty column a narrow one; the header wraps, so a long
    name such as `completion_tokens [model]` does not widen a column of short numbers.
    """
    widths: list[float] = []
    wrapped: list[bool] = []
    for name in columns:
        values = [to_scalar(row.get(name)) for row in sample]
        heading = min(_display_width(name), _XLSX_HEADER_WIDTH)
        if all(value is None or value == "" for value in values):
            widths.append(max(min(heading, _XLSX_EMPTY_WIDTH) + 2, _XLSX_MIN_WIDTH))
            wrapped.append(False)
            continue
        long_text = name in wrap or any(_is_long(value) for value in values)
        widest = max([heading, *map(_display_width, values)])
        width = _XLSX_TEXT_WIDTH if long_text else min(max(widest + 2, _XLSX_MIN_WIDTH), _XLSX_MAX_WIDTH)
        widths.append(width)
        wrapped.append(long_text)
    return widths, wrapped


def _xlsx_value(value: Any) -> Scalar:
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    value = finite(to_scalar(value))
    if not isinstance(value, str):
        return value
    value = ILLEGAL_CHARACTERS_RE.sub("", value)
    if not value:
        return None  # an empty cell, not an empty string that Excel counts as filled
    if len(value) > XLSX_CELL_LIMIT:
        value = value[: XLSX_CELL_LIMIT - len(XLSX_TRUNCATED)] + XLSX_TRUNCATED
    return value


def _sheet_title(name: str) -> str:
    title = "".join(char for char in name if char not in "[]:*?/\\")[:31].strip("'")
    return title or "results"


class _XlsxCells:
    """Turns values into what a write-only sheet appends, styling only the cells that need it."""

    def __init__(self, sheet: Any, wrapped: list[bool]) -> None:
        from openpyxl.cell import WriteOnlyCell
        from openpyxl.cell.cell import ERROR_CODES
        from openpyxl.styles import Alignment, Font

        self._sheet, self._wrapped = sheet, wrapped
        self._cell_type, self._error_codes = WriteOnlyCell, ERROR_CODES
        self._wrap = Alignment(wrap_text=True, vertical="top")
        self._top = Alignment(vertical="top")
        self._bold = Font(bold=True)

    def header(self, columns: list[str]) -> list[Any]:
        return [self._styled(name, self._wrap, font=self._bold) for name in columns]

    def row(self, values: list[Any]) -> list[Any]:
        cells: list[Any] = []
        for value, wrapped in zip(values, self._wrapped, strict=True):
            value = _xlsx_value(value)
            if wrapped and value is not None:
                cells.append(self._styled(value, self._wrap))
            elif isinstance(value, str) and (value.startswith("=") or value in self._error_codes):
                cells.append(self._styled(value, self._top))
            else:
                cells.append(value)
        return cells

    def _styled(self, value: Scalar, alignment: Any, font: Any = None) -> Any:
        cell = self._cell_type(self._sheet, value=value)
        if isinstance(value, str):
            cell.data_type = "s"  # text that starts with '=' stays text, not a formula
        cell.alignment = alignment
        if font is not None:
            cell.font = font
        return cell


def _write_xlsx(
    temp: Path,
    columns: list[str],
    rows: Iterator[dict[str, Any]],
    *,
    label: str,
    sheet_name: str,
    wrap: set[str],
) -> int:
    from openpyxl import Workbook
    from openpyxl.utils import get_column_letter

    sample = list(itertools.islice(rows, _XLSX_SAMPLE_ROWS))
    widths, wrapped = _xlsx_layout(columns, sample, wrap)
    book = Workbook(write_only=True)
    sheet = book.create_sheet(_sheet_title(sheet_name))
    for position, width in enumerate(widths, 1):
        sheet.column_dimensions[get_column_letter(position)].width = width
    sheet.freeze_panes = "A2"
    cells = _XlsxCells(sheet, wrapped)
    sheet.append(cells.header(columns))
    count = 0
    try:
        for row in itertools.chain(sample, rows):
            if count == XLSX_MAX_ROWS:
                raise InputError(
                    f"{label}: an .xlsx sheet holds at most {XLSX_MAX_ROWS:,} rows; write .jsonl, .csv or .parquet"
                )
            sheet.append(cells.row([row.get(name) for name in columns]))
            count += 1
    except BaseException:
        with contextlib.suppress(Exception):
            _discard_sheet(sheet)
        raise
    if columns:
        sheet.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{count + 1}"
    book.save(temp)
    return count


def _discard_sheet(sheet: Any) -> None:
    """Close a half-written write-only sheet and delete openpyxl's own temp file for it.

    openpyxl has no public way to abandon a write-only sheet; left alone, its row generator
    fails noisily when garbage-collected and its temp file lingers until the process exits.
    """
    if sheet._rows is not None:
        sheet._rows.close()
    if sheet._writer is not None:
        sheet._writer.close()
        sheet._writer.cleanup()
