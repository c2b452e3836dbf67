"""Writers: every format round-trips, xlsx is readable as is, writes are atomic and stream."""

from __future__ import annotations

import json
import math
import tempfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from openpyxl import load_workbook

from reasonry.errors import InputError
from reasonry.io.writers import (
    OUTPUT_SUFFIXES,
    XLSX_CELL_LIMIT,
    XLSX_TRUNCATED,
    check_output_path,
    write_table,
)

COLUMNS = ["id", "question", "score", "ok", "note"]
ROWS: list[dict[str, Any]] = [
    {"id": "1", "question": "日本の首都は？", "score": 3, "ok": True, "note": None},
    {"id": "2", "question": "2+2?", "score": 4, "ok": False, "note": "four", "ignored": "x"},
]
LONG = "A reasoning step that goes on and on. " * 5


def read_back(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path, encoding="utf-8-sig", dtype={"id": str})
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True, dtype={"id": str})
    if path.suffix == ".json":
        return pd.DataFrame(json.loads(path.read_text(encoding="utf-8")))
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_excel(path, dtype={"id": str})


@pytest.mark.parametrize("suffix", OUTPUT_SUFFIXES)
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"out{suffix}"
    assert write_table(path, COLUMNS, iter(ROWS)) == 2
    frame = read_back(path)
    assert list(frame.columns) == COLUMNS
    assert frame["id"].tolist() == ["1", "2"]
    assert frame["question"].tolist() == ["日本の首都は？", "2+2?"]
    assert frame["score"].tolist() == [3, 4]
    assert frame["ok"].tolist() == [True, False]
    assert pd.isna(frame["note"][0]) and frame["note"][1] == "four"
    assert not list(tmp_path.glob(".*"))


def test_csv_has_a_bom_and_json_formats(tmp_path: Path) -> None:
    write_table(tmp_path / "o.csv", COLUMNS, ROWS)
    assert (tmp_path / "o.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    write_table(tmp_path / "o.jsonl", COLUMNS, ROWS)
    first = (tmp_path / "o.jsonl").read_text(encoding="utf-8").splitlines()[0]
    assert "日本の首都は？" in first
    assert json.loads(first) == {
        "id": "1",
        "question": "日本の首都は？",
        "score": 3,
        "ok": True,
        "note": None,
    }
    write_table(tmp_path / "o.json", COLUMNS, ROWS)
    assert json.loads((tmp_path / "o.json").read_text(encoding="utf-8"))[1]["note"] == "four"


def test_json_values_nested_and_not_finite(tmp_path: Path) -> None:
    rows = [{"a": [1, {"b": math.nan}], "c": math.inf, "d": {1, 2}}]
    for suffix in (".json", ".jsonl"):
        write_table(tmp_path / f"o{suffix}", ["a", "c", "d"], rows)
        text = (tmp_path / f"o{suffix}").read_text(encoding="utf-8")
        record = json.loads(text)[0] if suffix == ".json" else json.loads(text)
        assert record == {"a": [1, {"b": None}], "c": None, "d": [1, 2]}


@pytest.mark.parametrize("suffix", OUTPUT_SUFFIXES)
def test_no_rows_writes_the_header(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"o{suffix}"
    assert write_table(path, ["a", "b"], iter([])) == 0
    if suffix in (".json", ".jsonl"):
        assert path.read_text().strip() in ("[]", "")
    else:
        assert list(read_back(path).columns) == ["a", "b"]


def test_non_scalar_values_are_json_text_in_tables(tmp_path: Path) -> None:
    rows = [{"votes": ["a", "b"], "meta": {"k": "値"}}]
    for suffix in (".csv", ".parquet", ".xlsx"):
        write_table(tmp_path / f"o{suffix}", ["votes", "meta"], rows)
        frame = read_back(tmp_path / f"o{suffix}")
        assert frame.iloc[0].tolist() == ['["a", "b"]', '{"k": "値"}']


# ---------------------------------------------------------------- xlsx


def test_xlsx_is_readable_as_is(tmp_path: Path) -> None:
    path = tmp_path / "o.xlsx"
    rows = [
        {"id": n, "question": "短い", "reasoning": LONG, "answer": "42", "comment": "x", "model": "qwen"}
        for n in range(300)
    ]
    columns = ["id", "question", "reasoning", "answer", "comment", "model"]
    write_table(path, columns, rows, sheet_name="run 1", wrap_columns=["comment"])
    book = load_workbook(path)
    sheet = book["run 1"]
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == "A1:F301"
    assert all(cell.font.bold for cell in sheet[1])
    widths = {letter: sheet.column_dimensions[letter].width for letter in "ABCDEF"}
    assert 8 <= widths["A"] <= 14 and 8 <= widths["D"] <= 14 and 8 <= widths["F"] <= 14
    assert widths["C"] == widths["E"] == 60
    assert widths["B"] == 10  # header "question" is 8 wide, the CJK values 4 + 4
    assert sheet["C2"].alignment.wrap_text and sheet["C2"].alignment.vertical == "top"
    assert sheet["E2"].alignment.wrap_text  # asked for by wrap_columns
    assert not sheet["D2"].alignment.wrap_text
    assert sheet.max_row == 301 and sheet["C301"].value == LONG


def test_xlsx_cjk_counts_double(tmp_path: Path) -> None:
    path = tmp_path / "o.xlsx"
    write_table(path, ["a", "b"], [{"a": "日本語日本語", "b": "abcdefabcdef"}])
    sheet = load_workbook(path).active
    assert sheet.column_dimensions["A"].width == 14 and sheet.column_dimensions["B"].width == 14


def test_xlsx_values_are_made_safe(tmp_path: Path) -> None:
    path = tmp_path / "o.xlsx"
    huge = "x" * (XLSX_CELL_LIMIT + 10)
    rows = [{"f": "=SUM(A1:A3)", "err": "#N/A", "ctrl": "bell\x07here", "huge": huge, "nan": math.nan}]
    write_table(path, list(rows[0]), rows)
    sheet = load_workbook(path).active
    formula, error, control, cut, nan = (cell for cell in sheet[2])
    assert (formula.value, formula.data_type) == ("=SUM(A1:A3)", "s")
    assert (error.value, error.data_type) == ("#N/A", "s")
    assert control.value == "bellhere"
    assert len(cut.value) == XLSX_CELL_LIMIT and cut.value.endswith(XLSX_TRUNCATED)
    assert nan.value is None


# ---------------------------------------------------------------- atomic writes


def failing_rows(after: int) -> Iterator[dict[str, Any]]:
    for n in range(after):
        yield {"id": str(n), "question": "q", "score": n, "ok": True, "note": LONG}
    raise RuntimeError("model crashed")


@pytest.mark.parametrize("suffix", OUTPUT_SUFFIXES)
@pytest.mark.parametrize("after", [5, 25_000])
def test_failure_mid_stream_leaves_nothing(tmp_path: Path, suffix: str, after: int) -> None:
    path = tmp_path / f"o{suffix}"
    with pytest.raises(RuntimeError, match="model crashed"):
        write_table(path, COLUMNS, failing_rows(after))
    assert list(tmp_path.iterdir()) == []


def test_failed_xlsx_leaves_no_openpyxl_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system_temp = tmp_path / "system-temp"
    system_temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_temp))
    with pytest.raises(RuntimeError):
        write_table(tmp_path / "o.xlsx", COLUMNS, failing_rows(300))
    assert list(system_temp.iterdir()) == []
    assert [path.name for path in tmp_path.iterdir()] == ["system-temp"]


def test_failure_leaves_an_existing_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "o.jsonl"
    path.write_text("old\n")
    with pytest.raises(RuntimeError):
        write_table(path, COLUMNS, failing_rows(3))
    assert path.read_text() == "old\n"
    assert list(tmp_path.iterdir()) == [path]


def test_success_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    path.write_text("old\n")
    write_table(path, COLUMNS, ROWS)
    assert len(read_back(path)) == 2


# ---------------------------------------------------------------- output path


def test_check_output_path_refuses_a_missing_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as caught:
        check_output_path("results/x.xlsx")
    assert str(caught.value) == "--out results/x.xlsx: folder 'results' does not exist; create it first"
    with pytest.raises(InputError, match="folder 'results' does not exist"):
        write_table("results/x.jsonl", ["a"], [])


def test_check_output_path_refuses_unknown_formats_and_folders(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        check_output_path(tmp_path / "x.txt")
    assert "unknown output format '.txt'; use one of .xlsx, .jsonl, .json, .csv, .parquet" in str(
        caught.value
    )
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        check_output_path(tmp_path / "dir.csv")
    assert check_output_path(tmp_path / "X.XLSX") == tmp_path / "X.XLSX"


# ---------------------------------------------------------------- parquet types


def test_parquet_widens_a_column_whose_type_changes_after_the_first_batch(tmp_path: Path) -> None:
    path = tmp_path / "o.parquet"

    def rows() -> Iterator[dict[str, Any]]:
        for n in range(25_000):
            late = n >= 15_000
            yield {"n": n, "score": 0.5 if late else 1, "label": "text" if late else 7, "empty": None}

    assert write_table(path, ["n", "score", "label", "empty"], rows()) == 25_000
    frame = pd.read_parquet(path)
    assert frame["n"].tolist() == list(range(25_000))
    assert frame["score"].iloc[0] == 1.0 and frame["score"].iloc[-1] == 0.5
    assert frame["label"].iloc[0] == "7" and frame["label"].iloc[-1] == "text"
    assert frame["empty"].isna().all()
    assert not list(tmp_path.glob(".*"))


# ---------------------------------------------------------------- streaming


def big_rows(count: int) -> Iterator[dict[str, Any]]:
    for n in range(count):
        yield {"id": str(n), "question": f"{n:08d}" + "q" * 600, "score": n}


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv"])
def test_large_writes_stream(tmp_path: Path, suffix: str) -> None:
    count = 100_000
    write_table(tmp_path / f"warm-up{suffix}", ["id"], [{"id": "1"}])  # imports happen outside the measure
    tracemalloc.start()
    try:
        tenth = list(big_rows(count // 10))
        held_tenth, _ = tracemalloc.get_traced_memory()
        del tenth
        tracemalloc.reset_peak()
        written = write_table(tmp_path / f"o{suffix}", ["id", "question", "score"], big_rows(count))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert written == count
    assert peak < 3 * held_tenth  # holding all rows would take 10 * held_tenth
