"""Read question files of every supported format as a stream of `Row`s.

`open_rows` checks the file and its columns at once (before any model work starts) and returns a
`RowSource`; iterating it streams the rows. Every problem with the file surfaces as an `InputError`
whose one-line message names the file, where possible the line or row, and what to do about it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasonry.errors import InputError, warn_input
from reasonry.io.encodings import check_encoding_name, unreadable
from reasonry.io.tables import SUPPORTED_SUFFIXES, Table, open_table
from reasonry.io.values import INT_TEXT, Scalar, a_kind, cell_text, plain

__all__ = ["DEFAULT_COLUMNS", "ROLE_FLAGS", "SUPPORTED_SUFFIXES", "Row", "RowSource", "open_rows"]


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

_MAX_LISTED = 40
_FLOAT_TEXT = re.compile(r"-?(?:0|[1-9]\d*)\.\d+(?:[eE][-+]?\d+)?")


@dataclass
class Row:
    index: int
    id: str
    question: str
    input: str
    reasoning: str | None
    reference: str | None
    extra: dict[str, Any] = field(default_factory=dict)


class RowSource:
    """The rows of one question file; iterate it (as often as needed) to stream `Row`s."""

    def __init__(self, path: Path, label: str, table: Table, roles: dict[str, str | None]) -> None:
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
            warn_input(f"{self._label} {unit} {blank[0]}{more}: blank question (column '{self.question_col}'); "
                       "the model gets an empty question there")
        if repeats:
            ident, number, first = repeats[0]
            more = f"; {len(repeats)} rows repeat an earlier id" if len(repeats) > 1 else ""
            warn_input(f"{self._label} {unit} {number}: id '{ident}' (column '{self.id_col}') repeats {unit} {first}"
                       f"{more}; each row is still kept, but ids no longer identify rows")

    def _row(self, index: int, number: int, cells: dict[str, Any]) -> Row:
        where = f"{self._label} {self._table.unit} {number}"
        ident = cell_text(cells.get(self.id_col)) if self.id_col else None
        return Row(
            index=index,
            id=ident or str(index + 1),
            question=_question_text(cells.get(self.question_col), where, self.question_col),
            input=(cell_text(cells.get(self.input_col)) or "") if self.input_col else "",
            reasoning=(cell_text(cells.get(self.reasoning_col)) or None) if self.reasoning_col else None,
            reference=(cell_text(cells.get(self.reference_col)) or None) if self.reference_col else None,
            extra=self._extra(cells),
        )

    def _extra(self, cells: dict[str, Any]) -> dict[str, Any]:
        convert = _cell_from_text if self._table.text_cells else plain
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
        check_encoding_name(encoding)
    try:
        table = open_table(file, label, encoding, sheet)
    except OSError as error:  # permissions, a file vanishing, ...
        raise unreadable(label, error) from None
    explicit = {
        "id": id_col,
        "question": question_col,
        "input": input_col,
        "reasoning": reasoning_col,
        "reference": reference_col,
    }
    return RowSource(file, label, table, _resolve_roles(table.columns, label, explicit))


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


# ---------------------------------------------------------------- cells


def _question_text(value: Any, where: str, column: str) -> str:
    if isinstance(value, dict | list | tuple) or getattr(value, "ndim", 0) > 0:
        raise InputError(
            f"{where}: column '{column}' holds {a_kind(value)}, not text; pick a text column with --question-col"
        )
    return cell_text(value) or ""


def _cell_from_text(value: Any) -> Scalar:
    """A CSV cell: empty is None, integer and decimal numbers become numbers, the rest stays text."""
    if not isinstance(value, str):
        return plain(value)
    if value == "":
        return None
    if INT_TEXT.fullmatch(value):
        return int(value)
    if _FLOAT_TEXT.fullmatch(value):
        return float(value)
    return value
