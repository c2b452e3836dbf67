"""Open a question file of any supported format as a `Table`: its column names and a record stream."""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonry.errors import InputError, warn_input
from reasonry.io.encodings import decode_error, detect_encoding, one_line, text_lines
from reasonry.io.values import a_kind, cell_text

Record = tuple[int, dict[str, Any]]  # (line / row / record number shown in messages, cells by column)
SUPPORTED_SUFFIXES = (".json", ".jsonl", ".ndjson", ".csv", ".tsv", ".xlsx", ".parquet")
_CHUNK_ROWS = 1000
_JSONL_SCAN_LINES = 1000  # lines read up front to learn a JSONL file's columns


@dataclass
class Table:
    """One opened file, independent of its format."""

    columns: list[str]
    records: Callable[[], Iterator[Record]]
    count: Callable[[], int | None]
    unit: str  # how a record number reads in messages: "line", "row" or "record"
    text_cells: bool = False  # CSV/TSV: every cell is raw text; numbers in extra columns get parsed
    open_schema: bool = False  # JSONL: later records may bring keys that the first ones lack


def header(names: Iterable[Any], label: str) -> list[str]:
    """Column names as text, blank ones named and duplicates numbered as pandas does (with a warning)."""
    result: list[str] = []
    seen: set[str] = set()
    renamed: list[str] = []
    for position, name in enumerate(names):
        text = "" if name is None else cell_text(name) or ""
        text = text.lstrip("\ufeff") if position == 0 else text
        base = text if text.strip() else f"Unnamed: {position}"
        unique, copy = base, 0
        while unique in seen:
            copy += 1
            unique = f"{base}.{copy}"
        if copy and text.strip():
            renamed.append(f"'{base}' (the copy in column {position + 1} is read as '{unique}')")
        seen.add(unique)
        result.append(unique)
    if renamed:
        warn_input(f"{label}: duplicate column name {', '.join(renamed)}; rename the columns to tell them apart")
    return result


def union_keys(records: Iterable[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(key for record in records for key in record))


def open_table(path: Path, label: str, encoding: str | None, sheet: str | int | None) -> Table:
    if not path.exists():
        raise InputError(f"{label}: file not found")
    if path.is_dir():
        return _datasets_table(path, label, sheet)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise InputError(
            f"{label}: unknown file type '{suffix or '(no extension)'}'; supported are "
            f"{', '.join(SUPPORTED_SUFFIXES)} and folders saved with datasets' save_to_disk"
        )
    if sheet is not None and suffix != ".xlsx":
        raise InputError(f"{label}: --sheet applies only to .xlsx files and datasets folders")
    if path.stat().st_size == 0:
        raise InputError(f"{label}: the file is empty")
    if suffix == ".xlsx":
        return _xlsx_table(path, label, sheet)
    if suffix == ".parquet":
        return _parquet_table(path, label)
    encoding = encoding or detect_encoding(path, label)
    if suffix == ".json":
        return _json_table(path, label, encoding)
    if suffix in (".jsonl", ".ndjson"):
        return _jsonl_table(path, label, encoding)
    return _csv_table(path, label, encoding, "\t" if suffix == ".tsv" else ",")


def _no_rows(label: str) -> InputError:
    return InputError(f"{label}: no rows (the file has no data below its header)")


def _json_table(path: Path, label: str, encoding: str) -> Table:
    try:
        text = path.read_text(encoding=encoding)
    except UnicodeDecodeError as error:
        raise decode_error(label, encoding, error) from None
    if not text.strip():
        raise InputError(f"{label}: the file is empty")
    keys = _KeyCheck()
    data = keys.loads(text, label)
    keys.warn_once(label)
    records = _json_records(data, label)
    if not records:
        raise InputError(f"{label}: no rows (the JSON holds no records)")
    return Table(
        columns=union_keys(records),
        records=lambda: enumerate(records, 1),
        count=lambda: len(records),
        unit="record",
    )


def _json_records(data: Any, label: str) -> list[dict[str, Any]]:
    """Records from `[{...}, ...]`, `{"col": {"0": v, ...}}` (DataFrame.to_json) or `{"col": [...]}`."""
    if isinstance(data, list):
        for number, record in enumerate(data, 1):
            if not isinstance(record, dict):
                raise InputError(
                    f"{label} record {number}: expected an object {{...}}, got {a_kind(record)}"
                )
        return data
    shape = 'expected a list of records [{...}] or columns {"col": [...]}'
    if not isinstance(data, dict):
        raise InputError(f"{label}: {shape}, got {a_kind(data)}")
    if not data:
        return []
    columns = list(data.values())
    if all(isinstance(column, dict) for column in columns):
        keys = list(dict.fromkeys(key for column in columns for key in column))
        return [{name: column.get(key) for name, column in data.items()} for key in keys]
    if all(isinstance(column, list) for column in columns):
        lengths = {name: len(column) for name, column in data.items()}
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{name}: {length}" for name, length in lengths.items())
            raise InputError(f"{label}: the columns have different lengths ({detail})")
        return [dict(zip(data, values, strict=True)) for values in zip(*columns, strict=True)]
    raise InputError(f"{label}: {shape}; each column must be a list or an object of rows")


def _jsonl_table(path: Path, label: str, encoding: str) -> Table:
    head = list(itertools.islice(_jsonl_records(path, label, encoding), _JSONL_SCAN_LINES))
    if not head:
        raise InputError(f"{label}: no rows (the file holds only blank lines)")
    return Table(
        columns=union_keys(record for _, record in head),
        records=lambda: _jsonl_records(path, label, encoding),
        count=lambda: sum(1 for line in text_lines(path, label, encoding) if line.strip()),
        unit="line",
        open_schema=True,
    )


class _KeyCheck:
    """Reads a file's JSON (all of it, or a line at a time) and remembers the first key repeated in one object."""

    def __init__(self) -> None:
        self.repeated: str | None = None
        self.warned = False

    def __call__(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        data = dict(pairs)
        if len(data) != len(pairs) and self.repeated is None:
            self.repeated = next(key for position, (key, _) in enumerate(pairs)
                                 if any(key == other for other, _ in pairs[:position]))
        return data

    def loads(self, text: str, label: str, line: int | None = None) -> Any:
        """`text` (a JSONL file's `line`, or a whole JSON file) parsed; invalid JSON is an InputError saying where."""
        try:
            return json.loads(text, object_pairs_hook=self)
        except json.JSONDecodeError as error:
            if line is None:
                raise InputError(f"{label} line {error.lineno} column {error.colno}: invalid JSON ({error.msg})") from None
            raise InputError(f"{label} line {line}: invalid JSON ({error.msg} at column {error.colno})") from None

    def warn_once(self, where: str) -> None:
        """The input warning for the first repeated key, once per file (`where`: the file, or its line)."""
        if self.repeated and not self.warned:
            self.warned = True
            warn_input(f"{where}: key '{self.repeated}' appears twice in one object; the last value is used")


def _jsonl_records(path: Path, label: str, encoding: str) -> Iterator[Record]:
    keys = _KeyCheck()
    for number, line in enumerate(text_lines(path, label, encoding), 1):
        if not line.strip():
            continue
        record = keys.loads(line, label, number)
        if not isinstance(record, dict):
            raise InputError(f"{label} line {number}: expected a JSON object {{...}}, got {a_kind(record)}")
        keys.warn_once(f"{label} line {number}")
        yield number, record


def _csv_table(path: Path, label: str, encoding: str, sep: str) -> Table:
    names, has_rows = _csv_head(path, label, encoding, sep)
    if sep == "," and len(names) == 1 and ";" in names[0]:
        sep = ";"  # a "CSV" saved by a European-locale Excel
        names, has_rows = _csv_head(path, label, encoding, sep)
    if not has_rows:
        raise _no_rows(label)
    raw = _csv_raw_header(path, encoding, sep)
    columns = header(raw if len(raw) == len(names) else names, label)
    return Table(
        columns=columns,
        records=lambda: _csv_records(path, label, encoding, sep, columns),
        count=lambda: _csv_count(path, encoding, sep),
        unit="row",
        text_cells=True,
    )


def _csv_raw_header(path: Path, encoding: str, sep: str) -> list[str]:
    """The header as written (pandas renames repeated names before we see them)."""
    with path.open(encoding=encoding, newline="") as file:
        return next(csv.reader(file, delimiter=sep), [])


def _csv_options(encoding: str, sep: str) -> dict[str, Any]:
    return {"sep": sep, "encoding": encoding, "dtype": str, "keep_default_na": False}


def _csv_head(path: Path, label: str, encoding: str, sep: str) -> tuple[list[Any], bool]:
    import pandas as pd

    try:
        frame = pd.read_csv(path, nrows=1, **_csv_options(encoding, sep))
    except pd.errors.EmptyDataError:
        raise InputError(f"{label}: the file is empty") from None
    except UnicodeDecodeError as error:
        raise decode_error(label, encoding, error) from None
    except (pd.errors.ParserError, ValueError, OSError) as error:
        raise _csv_error(label, error) from None
    if not isinstance(frame.index, pd.RangeIndex):  # pandas took the surplus first cell as an index
        separator = "a tab" if sep == "\t" else f"'{sep}'"
        raise InputError(
            f"{label} row 2: more cells than the header has columns ({len(frame.columns)}); "
            f"put cells that contain {separator} in double quotes"
        )
    return list(frame.columns), len(frame) > 0


def _csv_records(path: Path, label: str, encoding: str, sep: str, columns: list[str]) -> Iterator[Record]:
    import pandas as pd

    number = 1  # the header is row 1, as a spreadsheet shows it
    try:
        with pd.read_csv(path, chunksize=_CHUNK_ROWS, **_csv_options(encoding, sep)) as chunks:
            for chunk in chunks:
                for values in chunk.itertuples(index=False, name=None):
                    number += 1
                    if any("\x00" in value for value in values if isinstance(value, str)):
                        raise _nul_error(label, number, columns, values)
                    yield number, dict(zip(columns, values, strict=False))
    except UnicodeDecodeError as error:
        raise decode_error(label, encoding, error) from None
    except (pd.errors.ParserError, ValueError, OSError) as error:
        raise _csv_error(label, error) from None


def _csv_count(path: Path, encoding: str, sep: str) -> int | None:
    import pandas as pd

    options = _csv_options(encoding, sep) | {"usecols": [0], "chunksize": 100_000}
    try:
        with pd.read_csv(path, **options) as chunks:
            return sum(len(chunk) for chunk in chunks)
    except (pd.errors.ParserError, ValueError, OSError):
        return None  # iterating reports the problem with its row


def _nul_error(label: str, number: int, columns: list[str], values: tuple[Any, ...]) -> InputError:
    column = next(name for name, value in zip(columns, values, strict=False)
                  if isinstance(value, str) and "\x00" in value)
    return InputError(
        f"{label} row {number} column '{column}': holds a NUL byte (\\0), which text never contains; the file "
        "may be UTF-16 or damaged: save it again as UTF-8 CSV, or remove the byte"
    )


def _csv_error(label: str, error: Exception) -> InputError:
    return InputError(f"{label}: malformed file ({one_line(error)}); check the quoting and the separator")


def _xlsx_table(path: Path, label: str, sheet: str | int | None) -> Table:
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as error:  # openpyxl raises many kinds on a damaged file
        raise InputError(
            f"{label}: not a readable .xlsx file ({one_line(error)}); open it in Excel and save it again"
        ) from None
    try:
        sheet_name = _pick_sheet(book.sheetnames, sheet, label)
        worksheet = book[sheet_name]
        worksheet.reset_dimensions()  # the size recorded in the file can be wrong; read every row
        rows = _sheet_rows(worksheet.iter_rows(values_only=True), label)
    finally:
        book.close()
    if not rows:
        raise InputError(f"{label}: sheet '{sheet_name}' is empty")
    (_, names), data = rows[0], rows[1:]
    if not data:
        raise InputError(f"{label}: no rows in sheet '{sheet_name}' (nothing below the header)")
    width = max(len(values) for _, values in rows)
    columns = header(list(names) + [None] * (width - len(names)), label)
    records = [(number, dict(zip(columns, values, strict=False))) for number, values in data]
    return Table(columns=columns, records=lambda: iter(records), count=lambda: len(records), unit="row")


def _pick_sheet(names: list[str], sheet: str | int | None, label: str) -> str:
    if sheet is None:
        return names[0]
    if isinstance(sheet, str) and sheet in names:
        return sheet
    if isinstance(sheet, int) or sheet.isdigit():
        position = int(sheet)
        if 0 <= position < len(names):
            return names[position]
    listed = ", ".join(f"{position}: {name}" for position, name in enumerate(names))
    raise InputError(f"{label}: no sheet '{sheet}' (--sheet); sheets are {listed}")


def _sheet_rows(rows: Iterable[tuple[Any, ...]], label: str) -> list[tuple[int, tuple[Any, ...]]]:
    """Non-blank rows with their spreadsheet row numbers, trailing empty cells dropped."""
    kept: list[tuple[int, tuple[Any, ...]]] = []
    try:
        for number, values in enumerate(rows, 1):
            end = len(values)
            while end and (values[end - 1] is None or values[end - 1] == ""):
                end -= 1
            if end:
                kept.append((number, values[:end]))
    except Exception as error:  # a damaged sheet fails only while it is read
        raise InputError(
            f"{label}: not a readable .xlsx file ({one_line(error)}); open it in Excel and save it again"
        ) from None
    return kept


def _parquet_table(path: Path, label: str) -> Table:
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(path) as file:
            names = list(file.schema_arrow.names)
            total = file.metadata.num_rows
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ... on a damaged file
        raise InputError(f"{label}: not a readable .parquet file ({one_line(error)})") from None
    if total == 0:
        raise _no_rows(label)
    columns = header(names, label)
    return Table(
        columns=columns,
        records=lambda: _parquet_records(path, label, columns),
        count=lambda: total,
        unit="row",
    )


def _parquet_records(path: Path, label: str, columns: list[str]) -> Iterator[Record]:
    import pyarrow.parquet as pq

    number = 0
    try:
        with pq.ParquetFile(path) as file:
            for batch in file.iter_batches(batch_size=_CHUNK_ROWS):
                for values in zip(*(column.to_pylist() for column in batch.columns), strict=True):
                    number += 1
                    yield number, dict(zip(columns, values, strict=True))
    except Exception as error:
        raise InputError(
            f"{label} row {number + 1}: cannot read the parquet data ({one_line(error)})"
        ) from None


def _datasets_table(path: Path, label: str, sheet: str | int | None) -> Table:
    markers = ("dataset_info.json", "state.json", "dataset_dict.json")
    if not any((path / marker).is_file() for marker in markers):
        raise InputError(
            f"{label}: is a folder, not a dataset saved with datasets' save_to_disk "
            f"(no {' or '.join(markers)} in it); give a file or such a folder"
        )
    from datasets import DatasetDict, load_from_disk

    try:
        loaded = load_from_disk(str(path))
    except Exception as error:  # datasets raises FileNotFoundError, ValueError, ... on a damaged folder
        raise InputError(f"{label}: cannot load the saved dataset ({one_line(error)})") from None
    if isinstance(loaded, DatasetDict):
        dataset = loaded[_pick_split(list(loaded), sheet, label)]
    elif sheet is not None:
        raise InputError(
            f"{label}: --sheet picks a split, but this folder holds a single dataset without splits"
        )
    else:
        dataset = loaded
    if len(dataset) == 0:
        raise _no_rows(label)
    return Table(
        columns=list(dataset.column_names),
        records=lambda: _dataset_records(dataset),
        count=lambda: len(dataset),
        unit="row",
    )


def _pick_split(splits: list[str], sheet: str | int | None, label: str) -> str:
    if sheet is None:
        if "train" in splits or len(splits) == 1:
            return "train" if "train" in splits else splits[0]
    elif isinstance(sheet, str) and sheet in splits:
        return sheet
    elif (isinstance(sheet, int) or sheet.isdigit()) and 0 <= int(sheet) < len(splits):
        return splits[int(sheet)]
    wanted = "no 'train' split" if sheet is None else f"no split '{sheet}'"
    raise InputError(f"{label}: {wanted}; name one with --sheet; splits are: {', '.join(splits)}")


def _dataset_records(dataset: Any) -> Iterator[Record]:
    number = 0
    for batch in dataset.iter(batch_size=_CHUNK_ROWS):
        names = list(batch)
        for values in zip(*batch.values(), strict=True):
            number += 1
            yield number, dict(zip(names, values, strict=True))
