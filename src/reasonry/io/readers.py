"""Read question files of every supported format as a stream of `Row`s.

`open_rows` checks the file and its columns at once (before any model work starts) and returns a
`RowSource`; iterating it streams the rows. Every problem with the file surfaces as an `InputError`
whose one-line message names the file, where possible the line or row, and what to do about it.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import json
import math
import re
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasonry.errors import InputError, InputWarning
from reasonry.io.values import INT_TEXT, Scalar, to_scalar

Record = tuple[int, dict[str, Any]]  # (line / row / record number shown in messages, cells by column)

SUPPORTED_SUFFIXES = (".json", ".jsonl", ".ndjson", ".csv", ".tsv", ".xlsx", ".parquet")
ROLE_FLAGS = {
    "id": "--id-col",
    "question": "--question-col",
    "input": "--input-col",
    "reasoning": "--reasoning-col",
    "reference": "--reference-col",
}
DEFAULT_COLUMNS = {
    "id": ("seq",),
    "question": ("question", "instruction"),
    "input": ("input",),
    "reasoning": ("reasoning",),
    "reference": ("reference", "reference_answer"),
}

_CHUNK_ROWS = 1000
_JSONL_SCAN_LINES = 1000  # lines read up front to learn a JSONL file's columns
_SNIFF_BYTES = 64 * 1024
_READ_BLOCK = 1024 * 1024
_MAX_LISTED = 40
_FLOAT_TEXT = re.compile(r"-?(?:0|[1-9]\d*)\.\d+(?:[eE][-+]?\d+)?")
_KANA = re.compile(r"[\u3040-\u30ff]")
_KANJI = re.compile(r"[\u4e00-\u9fff]")
_SHIFT_JIS = {"cp932", "shift_jis", "shift_jisx0213", "shift_jis_2004"}
_WESTERN_LETTERS = frozenset(
    [chr(code) for code in range(0xC0, 0x100) if code not in (0xD7, 0xF7)] + list("ŒœŠšŽžŸƒªº")
)
_WESTERN_SYMBOLS = frozenset("€‚„…†‡ˆ‰‹›‘’“”•–—˜™¡¢£¥§©«®°±´µ¶·»¿")
_MAX_ACCENTED_SHARE = 0.3  # Cyrillic or Greek read as cp1252 is nearly all accented letters
_ENCODING_NOTES = {"cp932": " (Japanese Shift-JIS)", "cp1252": " (Western European, Windows)"}


@dataclass
class Row:
    index: int
    id: str
    question: str
    input: str
    reasoning: str | None
    reference: str | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Table:
    """One opened file, independent of its format."""

    columns: list[str]
    records: Callable[[], Iterator[Record]]
    count: Callable[[], int | None]
    unit: str  # how a record number reads in messages: "line", "row" or "record"
    text_cells: bool = False  # CSV/TSV: every cell is raw text; numbers in extra columns get parsed
    open_schema: bool = False  # JSONL: later records may bring keys that the first ones lack


class RowSource:
    """The rows of one question file; iterate it (as often as needed) to stream `Row`s."""

    def __init__(self, path: Path, label: str, table: _Table, roles: dict[str, str | None]) -> None:
        self.path = path
        self.columns = table.columns
        self.id_col = roles["id"]
        self.question_col: str = roles["question"] or ""
        self.input_col = roles["input"]
        self.reasoning_col = roles["reasoning"]
        self.reference_col = roles["reference"]
        self._label = label
        self._table = table
        self._roles = {name for name in roles.values() if name is not None}
        self._extra_cols = [name for name in self.columns if name not in self._roles]
        self._known = set(self.columns)
        self._total: int | None = None
        self._counted = False

    @property
    def total(self) -> int | None:
        """Number of rows; counted on first use for CSV/TSV/JSONL, None if the file cannot be counted."""
        if not self._counted:
            self._total = self._table.count()
            self._counted = True
        return self._total

    def __iter__(self) -> Iterator[Row]:
        seen: dict[str, int] = {}
        repeats: list[tuple[str, int, int]] = []
        blank: list[int] = []
        for index, (number, cells) in enumerate(self._table.records()):
            row = self._row(index, number, cells)
            if not row.question.strip():
                blank.append(number)
            if self.id_col:
                first = seen.setdefault(row.id, number)
                if first != number:
                    repeats.append((row.id, number, first))
            yield row
        self._warn_rows(blank, repeats)

    def _warn_rows(self, blank: list[int], repeats: list[tuple[str, int, int]]) -> None:
        unit = self._table.unit
        if blank:
            more = f" and {len(blank) - 1} more" if len(blank) > 1 else ""
            warn(f"{self._label} {unit} {blank[0]}{more}: blank question (column '{self.question_col}'); "
                 "the model gets an empty question there")
        if repeats:
            ident, number, first = repeats[0]
            more = f"; {len(repeats)} rows repeat an earlier id" if len(repeats) > 1 else ""
            warn(f"{self._label} {unit} {number}: id '{ident}' (column '{self.id_col}') repeats {unit} {first}"
                 f"{more}; each row is still kept, but ids no longer identify rows")

    def _row(self, index: int, number: int, cells: dict[str, Any]) -> Row:
        where = f"{self._label} {self._table.unit} {number}"
        ident = _text(cells.get(self.id_col)) if self.id_col else None
        return Row(
            index=index,
            id=ident or str(index + 1),
            question=_question_text(cells.get(self.question_col), where, self.question_col),
            input=(_text(cells.get(self.input_col)) or "") if self.input_col else "",
            reasoning=(_text(cells.get(self.reasoning_col)) or None) if self.reasoning_col else None,
            reference=(_text(cells.get(self.reference_col)) or None) if self.reference_col else None,
            extra=self._extra(cells),
        )

    def _extra(self, cells: dict[str, Any]) -> dict[str, Any]:
        convert = _cell_from_text if self._table.text_cells else _plain
        extra = {name: convert(cells.get(name)) for name in self._extra_cols}
        if self._table.open_schema:
            for name, value in cells.items():
                if name not in self._known and name not in self._roles:
                    extra[name] = convert(value)
        return extra


def open_rows(
    path: str | Path,
    *,
    encoding: str | None = None,
    sheet: str | int | None = None,
    id_col: str | None = None,
    question_col: str | None = None,
    input_col: str | None = None,
    reasoning_col: str | None = None,
    reference_col: str | None = None,
) -> RowSource:
    """Open a question file (or a `datasets` folder) and check its columns; raises InputError."""
    file = Path(path)
    label = str(path)
    if encoding is not None:
        _check_encoding_name(encoding)
    try:
        table = _open_table(file, label, encoding, sheet)
    except OSError as error:  # permissions, a file vanishing, ...
        raise _unreadable(label, error) from None
    explicit = {
        "id": id_col,
        "question": question_col,
        "input": input_col,
        "reasoning": reasoning_col,
        "reference": reference_col,
    }
    return RowSource(file, label, table, _resolve_roles(table.columns, label, explicit))


def warn(message: str) -> None:
    """A problem with the input that does not stop the run: shown once, on one line, by the CLI."""
    warnings.warn(message, InputWarning, stacklevel=3)


# ---------------------------------------------------------------- columns


def _resolve_roles(columns: list[str], label: str, explicit: dict[str, str | None]) -> dict[str, str | None]:
    roles: dict[str, str | None] = {}
    for role, name in explicit.items():
        if name is not None:
            if str(name) not in columns:
                raise InputError(
                    f"{label}: no column '{name}' ({ROLE_FLAGS[role]}); columns are: {_listing(columns)}"
                )
            roles[role] = str(name)
    taken = {name for name in roles.values()}
    for role, candidates in DEFAULT_COLUMNS.items():
        if role not in roles:
            roles[role] = next((c for c in candidates if c in columns and c not in taken), None)
    if roles["question"] is None and any(c in taken for c in DEFAULT_COLUMNS["question"]):
        used = next(c for c in DEFAULT_COLUMNS["question"] if c in taken)
        flag = next(ROLE_FLAGS[r] for r, n in roles.items() if n == used)
        raise InputError(f"{label}: column '{used}' is already used by {flag}; name another question column "
                         f"with --question-col; columns are: {_listing(columns)}")
    if roles["question"] is None:
        raise InputError(
            f"{label}: no 'question' or 'instruction' column; name the question column with --question-col; "
            f"columns are: {_listing(columns)}"
        )
    return roles


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _MAX_LISTED else "")


def _header(names: Iterable[Any], label: str) -> list[str]:
    """Column names as text, blank ones named and duplicates numbered as pandas does (with a warning)."""
    result: list[str] = []
    seen: set[str] = set()
    renamed: list[str] = []
    for position, name in enumerate(names):
        text = "" if name is None else _text(name) or ""
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
        warn(f"{label}: duplicate column name {', '.join(renamed)}; rename the columns to tell them apart")
    return result


def _union_keys(records: Iterable[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(key for record in records for key in record))


# ---------------------------------------------------------------- cells


def _plain(value: Any) -> Scalar:
    """Any cell value as a JSON-safe scalar: NaN is an empty cell, an infinity stays as text."""
    value = to_scalar(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return value


def _text(value: Any) -> str | None:
    """A cell as text; integral floats lose their '.0' (an id 1.0 reads '1')."""
    value = _plain(value)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _question_text(value: Any, where: str, column: str) -> str:
    if isinstance(value, dict | list | tuple) or getattr(value, "ndim", 0) > 0:
        raise InputError(
            f"{where}: column '{column}' holds a {_kind(value)}, not text; pick a text column with --question-col"
        )
    return _text(value) or ""


def _cell_from_text(value: Any) -> Scalar:
    """A CSV cell: empty is None, integer and decimal numbers become numbers, the rest stays text."""
    if not isinstance(value, str):
        return _plain(value)
    if value == "":
        return None
    if INT_TEXT.fullmatch(value):
        return int(value)
    if _FLOAT_TEXT.fullmatch(value):
        return float(value)
    return value


def _kind(value: Any) -> str:
    names = {dict: "object", list: "list", tuple: "list", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number" if isinstance(value, int | float) else type(value).__name__)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


# ---------------------------------------------------------------- encodings


def _check_encoding_name(encoding: str) -> None:
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise InputError(
            f"--encoding {encoding}: unknown encoding; use e.g. utf-8, utf-8-sig or cp932"
        ) from None


def _detect_encoding(path: Path, label: str) -> str:
    """utf-8-sig when the whole file is valid UTF-8, else a guess from a sample, announced with a warning.

    Japanese text is cp932; text that reads as Western European in cp1252 is cp1252 (a statistical
    detector often says cp1250 for a short French or German file: "crème" would read "crčme").
    """
    bad_at = _first_utf8_error(path)
    if bad_at is None:
        return "utf-8-sig"
    name = _guess_encoding(_sample(path, bad_at), label)
    warn(f"{label}: not UTF-8; read as {name}{_ENCODING_NOTES.get(name, '')} (a guess); "
         "if some letters look wrong, pass the right --encoding, e.g. --encoding cp1250")
    return name


def _guess_encoding(sample: bytes, label: str) -> str:
    cp932_text = _as_cp932(sample)
    if cp932_text is not None and _KANA.search(cp932_text):
        return "cp932"
    from charset_normalizer import from_bytes

    matches = from_bytes(sample)
    candidates = {codecs.lookup(match.encoding).name for match in matches}
    if cp932_text is not None and _KANJI.search(cp932_text) and candidates & _SHIFT_JIS:
        return "cp932"
    if _reads_as_western(sample):
        return "cp1252"
    best = matches.best()
    if best is None:
        raise InputError(
            f"{label}: cannot tell the text encoding (it is not UTF-8); pass --encoding, e.g. --encoding cp932"
        )
    name = codecs.lookup(best.encoding).name
    return "cp932" if name in _SHIFT_JIS else name


def _reads_as_western(sample: bytes) -> bool:
    """True when the bytes decode as cp1252 into Latin text with a few accented letters and usual symbols."""
    try:
        text = codecs.getincrementaldecoder("cp1252")("strict").decode(sample)
    except UnicodeDecodeError:
        return False
    ascii_letters = accented = 0
    for char in text:
        if char.isascii():
            ascii_letters += char.isalpha()
        elif char in _WESTERN_LETTERS:
            accented += 1
        elif char not in _WESTERN_SYMBOLS and not unicodedata.category(char).startswith("Z"):
            return False
    return accented > 0 and accented <= _MAX_ACCENTED_SHARE * (ascii_letters + accented)


def _first_utf8_error(path: Path) -> int | None:
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0
    with path.open("rb") as file:
        while block := file.read(_READ_BLOCK):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as error:
                return offset + error.start
            offset += len(block)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return offset
    return None


def _sample(path: Path, bad_at: int) -> bytes:
    """The file's head, plus the bytes around the first non-UTF-8 byte when that lies further on."""
    with path.open("rb") as file:
        head = file.read(_SNIFF_BYTES)
        if bad_at < _SNIFF_BYTES:
            return head
        file.seek(max(bad_at - _SNIFF_BYTES // 2, 0))
        return head + b"\n" + file.read(_SNIFF_BYTES)


def _as_cp932(sample: bytes) -> str | None:
    try:
        return codecs.getincrementaldecoder("cp932")("strict").decode(sample)
    except UnicodeDecodeError:
        return None


def _decode_error(label: str, encoding: str, error: UnicodeDecodeError) -> InputError:
    return InputError(
        f"{label}: cannot read the file as {encoding} ({error.reason}); "
        "pass the right --encoding, e.g. --encoding cp932 or --encoding utf-8"
    )


def _text_lines(path: Path, label: str, encoding: str) -> Iterator[str]:
    try:
        file = path.open(encoding=encoding)
    except OSError as error:
        raise _unreadable(label, error) from None
    with file:
        try:
            yield from file
        except UnicodeDecodeError as error:
            raise _decode_error(label, encoding, error) from None


def _unreadable(label: str, error: OSError) -> InputError:
    return InputError(f"{label}: cannot read the file ({error.strerror or _one_line(error)})")


# ---------------------------------------------------------------- formats


def _open_table(path: Path, label: str, encoding: str | None, sheet: str | int | None) -> _Table:
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
    encoding = encoding or _detect_encoding(path, label)
    if suffix == ".json":
        return _json_table(path, label, encoding)
    if suffix in (".jsonl", ".ndjson"):
        return _jsonl_table(path, label, encoding)
    return _csv_table(path, label, encoding, "\t" if suffix == ".tsv" else ",")


def _no_rows(label: str) -> InputError:
    return InputError(f"{label}: no rows (the file has no data below its header)")


# JSON ------------------------------------------------------------------


def _json_table(path: Path, label: str, encoding: str) -> _Table:
    try:
        text = path.read_text(encoding=encoding)
    except UnicodeDecodeError as error:
        raise _decode_error(label, encoding, error) from None
    if not text.strip():
        raise InputError(f"{label}: the file is empty")
    keys = _KeyCheck()
    try:
        data = json.loads(text, object_pairs_hook=keys)
    except json.JSONDecodeError as error:
        raise InputError(
            f"{label} line {error.lineno} column {error.colno}: invalid JSON ({error.msg})"
        ) from None
    if keys.repeated:
        warn(f"{label}: key '{keys.repeated}' appears twice in one object; the last value is used")
    records = _json_records(data, label)
    if not records:
        raise InputError(f"{label}: no rows (the JSON holds no records)")
    return _Table(
        columns=_union_keys(records),
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
                    f"{label} record {number}: expected an object {{...}}, got a {_kind(record)}"
                )
        return data
    shape = 'expected a list of records [{...}] or columns {"col": [...]}'
    if not isinstance(data, dict):
        raise InputError(f"{label}: {shape}, got a {_kind(data)}")
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


# JSONL -----------------------------------------------------------------


def _jsonl_table(path: Path, label: str, encoding: str) -> _Table:
    head = list(itertools.islice(_jsonl_records(path, label, encoding), _JSONL_SCAN_LINES))
    if not head:
        raise InputError(f"{label}: no rows (the file holds only blank lines)")
    return _Table(
        columns=_union_keys(record for _, record in head),
        records=lambda: _jsonl_records(path, label, encoding),
        count=lambda: sum(1 for line in _text_lines(path, label, encoding) if line.strip()),
        unit="line",
        open_schema=True,
    )


class _KeyCheck:
    """object_pairs_hook for json.loads that remembers the first key repeated within one object."""

    def __init__(self) -> None:
        self.repeated: str | None = None

    def __call__(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        data = dict(pairs)
        if len(data) != len(pairs) and self.repeated is None:
            self.repeated = next(key for position, (key, _) in enumerate(pairs)
                                 if any(key == other for other, _ in pairs[:position]))
        return data


def _jsonl_records(path: Path, label: str, encoding: str) -> Iterator[Record]:
    keys = _KeyCheck()
    warned = False
    for number, line in enumerate(_text_lines(path, label, encoding), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, object_pairs_hook=keys)
        except json.JSONDecodeError as error:
            raise InputError(
                f"{label} line {number}: invalid JSON ({error.msg} at column {error.colno})"
            ) from None
        if not isinstance(record, dict):
            raise InputError(f"{label} line {number}: expected a JSON object {{...}}, got a {_kind(record)}")
        if keys.repeated and not warned:
            warned = True
            warn(f"{label} line {number}: key '{keys.repeated}' appears twice in one object; the last value is used")
        yield number, record


# CSV / TSV -------------------------------------------------------------


def _csv_table(path: Path, label: str, encoding: str, sep: str) -> _Table:
    names, has_rows = _csv_head(path, label, encoding, sep)
    if sep == "," and len(names) == 1 and ";" in names[0]:
        sep = ";"  # a "CSV" saved by a European-locale Excel
        names, has_rows = _csv_head(path, label, encoding, sep)
    if not has_rows:
        raise _no_rows(label)
    raw = _csv_raw_header(path, encoding, sep)
    columns = _header(raw if len(raw) == len(names) else names, label)
    return _Table(
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
        raise _decode_error(label, encoding, error) from None
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
        raise _decode_error(label, encoding, error) from None
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
    return InputError(f"{label}: malformed file ({_one_line(error)}); check the quoting and the separator")


# XLSX ------------------------------------------------------------------


def _xlsx_table(path: Path, label: str, sheet: str | int | None) -> _Table:
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as error:  # openpyxl raises many kinds on a damaged file
        raise InputError(
            f"{label}: not a readable .xlsx file ({_one_line(error)}); open it in Excel and save it again"
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
    columns = _header(list(names) + [None] * (width - len(names)), label)
    records = [(number, dict(zip(columns, values, strict=False))) for number, values in data]
    return _Table(columns=columns, records=lambda: iter(records), count=lambda: len(records), unit="row")


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
            f"{label}: not a readable .xlsx file ({_one_line(error)}); open it in Excel and save it again"
        ) from None
    return kept


# Parquet ---------------------------------------------------------------


def _parquet_table(path: Path, label: str) -> _Table:
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(path) as file:
            names = list(file.schema_arrow.names)
            total = file.metadata.num_rows
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ... on a damaged file
        raise InputError(f"{label}: not a readable .parquet file ({_one_line(error)})") from None
    if total == 0:
        raise _no_rows(label)
    columns = _header(names, label)
    return _Table(
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
            f"{label} row {number + 1}: cannot read the parquet data ({_one_line(error)})"
        ) from None


# datasets folder -------------------------------------------------------


def _datasets_table(path: Path, label: str, sheet: str | int | None) -> _Table:
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
        raise InputError(f"{label}: cannot load the saved dataset ({_one_line(error)})") from None
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
    return _Table(
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
