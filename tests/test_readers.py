"""Readers: every format, column defaults and overrides, cell conversion, and every InputError."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from openpyxl import Workbook

from reasonry.errors import InputError, InputWarning
from reasonry.io.readers import Row, RowSource, open_rows

JAPANESE = ["日本の首都はどこですか？", "富士山の高さは？"]
FRAME = pd.DataFrame(
    {
        "seq": [1, 2],
        "question": ["What is 2+2?", "Capital of France?"],
        "input": ["", "Europe"],
        "topic": ["math", "geo"],
        "points": [3, 5],
    }
)


def rows_of(source: RowSource) -> list[Row]:
    return list(source)


def assert_frame_rows(source: RowSource) -> None:
    rows = rows_of(source)
    assert [row.id for row in rows] == ["1", "2"]
    assert [row.question for row in rows] == ["What is 2+2?", "Capital of France?"]
    assert [row.input for row in rows] == ["", "Europe"]
    assert [row.index for row in rows] == [0, 1]
    assert rows[1].extra == {"topic": "geo", "points": 5}
    assert source.columns == ["seq", "question", "input", "topic", "points"]
    assert source.total == 2


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text(
        "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records), encoding="utf-8"
    )
    return path


def input_error(path: Path | str, **options: Any) -> str:
    with pytest.raises(InputError) as caught:
        rows_of(open_rows(path, **options))
    message = str(caught.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- formats


def test_json_records(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    path.write_text(json.dumps(FRAME.to_dict(orient="records")), encoding="utf-8")
    assert_frame_rows(open_rows(path))


def test_json_columns_as_dataframe_to_json_writes_them(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    FRAME.to_json(path)
    assert json.loads(path.read_text())["seq"] == {"0": 1, "1": 2}
    assert_frame_rows(open_rows(path))


def test_json_column_lists(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    path.write_text(json.dumps(FRAME.to_dict(orient="list")), encoding="utf-8")
    assert_frame_rows(open_rows(path))


def test_jsonl_skips_blank_lines_and_carries_late_keys(tmp_path: Path) -> None:
    path = tmp_path / "q.ndjson"
    lines = [json.dumps(record) for record in FRAME.to_dict(orient="records")]
    path.write_text(
        lines[0] + "\n\n" + lines[1] + "\n" + '{"question": "third", "late": true}\n', encoding="utf-8"
    )
    source = open_rows(path)
    rows = rows_of(source)
    assert [row.question for row in rows] == ["What is 2+2?", "Capital of France?", "third"]
    assert rows[2].id == "3"
    assert rows[2].extra == {"topic": None, "points": None, "late": True}
    assert source.total == 3


def test_jsonl_streams_rows_before_a_later_broken_line(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    good = "".join(json.dumps({"question": f"q{n}"}) + "\n" for n in range(3000))
    path.write_text(good + "{broken\n", encoding="utf-8")
    rows = iter(open_rows(path))
    assert next(rows).question == "q0"
    with pytest.raises(InputError, match=r"q\.jsonl line 3001: invalid JSON"):
        list(rows)


def test_csv_utf8(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    FRAME.to_csv(path, index=False, encoding="utf-8")
    assert_frame_rows(open_rows(path))


def test_csv_utf8_with_bom(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    FRAME.to_csv(path, index=False, encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    source = open_rows(path)
    assert source.columns[0] == "seq"
    assert source.id_col == "seq"
    assert_frame_rows(source)


def test_csv_bom_is_stripped_when_encoding_is_given_as_utf8(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    FRAME.to_csv(path, index=False, encoding="utf-8-sig")
    assert open_rows(path, encoding="utf-8").columns[0] == "seq"


def test_csv_cp932_japanese_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    pd.DataFrame({"seq": [1, 2], "question": JAPANESE, "備考": ["東京", "山"]}).to_csv(
        path, index=False, encoding="cp932"
    )
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")
    rows = rows_of(open_rows(path))
    assert [row.question for row in rows] == JAPANESE
    assert rows[0].extra == {"備考": "東京"}


def test_csv_encoding_override(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    pd.DataFrame({"question": ["Grüße", "café"]}).to_csv(path, index=False, encoding="latin-1")
    assert [row.question for row in open_rows(path, encoding="latin-1")] == ["Grüße", "café"]


def test_csv_multiline_cells_and_semicolons(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('question;input\n"line one\nline two";x\nplain;y\n', encoding="utf-8")
    source = open_rows(path)
    assert source.columns == ["question", "input"]
    assert [row.question for row in source] == ["line one\nline two", "plain"]
    assert source.total == 2


def test_tsv(tmp_path: Path) -> None:
    path = tmp_path / "q.tsv"
    FRAME.to_csv(path, index=False, sep="\t")
    assert_frame_rows(open_rows(path))


def test_csv_streams_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    pd.DataFrame({"question": [f"q{n}" for n in range(2500)]}).to_csv(path, index=False)
    source = open_rows(path)
    rows = rows_of(source)
    assert len(rows) == source.total == 2500
    assert rows[-1].question == "q2499"
    assert rows[-1].id == "2500"


def make_workbook(path: Path) -> Path:
    book = Workbook()
    first = book.active
    first.title = "notes"
    first.append(["question"])
    first.append(["from the first sheet"])
    second = book.create_sheet("data")
    second.append(["seq", "question", "input", "topic", "points"])
    second.append([1, "What is 2+2?", None, "math", 3])
    second.append([None, None, None, None, None])
    second.append([2, "Capital of France?", "Europe", "geo", 5])
    book.save(path)
    return path


@pytest.mark.parametrize("sheet", ["data", 1, "1"])
def test_xlsx_second_sheet_by_name_and_index(tmp_path: Path, sheet: str | int) -> None:
    assert_frame_rows(open_rows(make_workbook(tmp_path / "q.xlsx"), sheet=sheet))


def test_xlsx_first_sheet_by_default(tmp_path: Path) -> None:
    rows = rows_of(open_rows(make_workbook(tmp_path / "q.xlsx")))
    assert [row.question for row in rows] == ["from the first sheet"]


def test_parquet(tmp_path: Path) -> None:
    path = tmp_path / "q.parquet"
    FRAME.to_parquet(path, index=False)
    assert_frame_rows(open_rows(path))


def test_datasets_folder(tmp_path: Path) -> None:
    from datasets import Dataset

    Dataset.from_pandas(FRAME, preserve_index=False).save_to_disk(str(tmp_path / "ds"))
    assert_frame_rows(open_rows(tmp_path / "ds"))


def test_datasets_dict_folder_picks_split(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    other = pd.DataFrame({"question": ["held out"]})
    splits = {"train": Dataset.from_pandas(FRAME, preserve_index=False), "test": Dataset.from_pandas(other)}
    DatasetDict(splits).save_to_disk(str(tmp_path / "dd"))
    assert_frame_rows(open_rows(tmp_path / "dd"))
    assert [row.question for row in open_rows(tmp_path / "dd", sheet="test")] == ["held out"]
    message = input_error(tmp_path / "dd", sheet="validation")
    assert "no split 'validation'" in message and "train, test" in message


def test_datasets_dict_without_train_split_lists_splits(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    data = Dataset.from_pandas(FRAME, preserve_index=False)
    DatasetDict({"dev": data, "test": data}).save_to_disk(str(tmp_path / "dd"))
    message = input_error(tmp_path / "dd")
    assert "no 'train' split" in message and "dev, test" in message and "--sheet" in message


# ---------------------------------------------------------------- columns


def test_column_defaults(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "q.jsonl",
        [
            {
                "seq": 7,
                "instruction": "Q",
                "input": "I",
                "reasoning": "R",
                "reference_answer": "A",
                "answer": "x",
                "output": "y",
            }
        ],
    )
    source = open_rows(path)
    assert (source.id_col, source.question_col, source.input_col) == ("seq", "instruction", "input")
    assert (source.reasoning_col, source.reference_col) == ("reasoning", "reference_answer")
    (row,) = rows_of(source)
    assert row == Row(0, "7", "Q", "I", "R", "A", {"answer": "x", "output": "y"})


def test_question_preferred_over_instruction_and_reference_over_reference_answer(tmp_path: Path) -> None:
    record = {"instruction": "I", "question": "Q", "reference": "R1", "reference_answer": "R2"}
    source = open_rows(write_jsonl(tmp_path / "q.jsonl", [record]))
    assert (source.question_col, source.reference_col) == ("question", "reference")
    assert rows_of(source)[0].extra == {"instruction": "I", "reference_answer": "R2"}


def test_no_optional_columns(tmp_path: Path) -> None:
    source = open_rows(write_jsonl(tmp_path / "q.jsonl", [{"question": "Q", "answer": "A"}]))
    assert (source.id_col, source.input_col, source.reasoning_col, source.reference_col) == (
        None,
        None,
        None,
        None,
    )
    (row,) = rows_of(source)
    assert (row.id, row.input, row.reasoning, row.reference, row.extra) == (
        "1",
        "",
        None,
        None,
        {"answer": "A"},
    )


def test_column_overrides(tmp_path: Path) -> None:
    record = {"key": "k1", "prompt": "P", "question": "not this", "ctx": "C", "why": "W", "answer": "A"}
    path = write_jsonl(tmp_path / "q.jsonl", [record])
    source = open_rows(
        path,
        id_col="key",
        question_col="prompt",
        input_col="ctx",
        reasoning_col="why",
        reference_col="answer",
    )
    (row,) = rows_of(source)
    assert (row.id, row.question, row.input, row.reasoning, row.reference) == ("k1", "P", "C", "W", "A")
    assert row.extra == {"question": "not this"}


def test_explicit_column_is_not_also_taken_by_a_default(tmp_path: Path) -> None:
    source = open_rows(write_jsonl(tmp_path / "q.jsonl", [{"input": "the question"}]), question_col="input")
    assert source.input_col is None
    assert rows_of(source)[0].question == "the question"


# ---------------------------------------------------------------- cells


def test_nan_and_number_cells(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "seq": [1.0, math.nan],
            "question": [math.nan, 42.0],
            "input": [None, 3.5],
            "reasoning": ["", math.nan],
            "reference": [7.0, None],
            "count": [1, 2],
            "score": [0.5, math.nan],
            "flag": [True, False],
            "when": pd.to_datetime(["2024-01-02 03:04:05", "2025-06-07 00:00:00"]),
        }
    )
    path = tmp_path / "q.parquet"
    frame.to_parquet(path, index=False)
    first, second = rows_of(open_rows(path))
    assert (first.id, first.question, first.input, first.reasoning, first.reference) == (
        "1",
        "",
        "",
        None,
        "7",
    )
    assert (second.id, second.question, second.input, second.reasoning, second.reference) == (
        "2",
        "42",
        "3.5",
        None,
        None,
    )
    assert first.extra == {"count": 1, "score": 0.5, "flag": True, "when": "2024-01-02T03:04:05"}
    assert second.extra == {"count": 2, "score": None, "flag": False, "when": "2025-06-07T00:00:00"}
    for value in [*first.extra.values(), *second.extra.values()]:
        assert type(value) in (str, int, float, bool, type(None))


def test_csv_cells_keep_ids_as_written_and_parse_numbers_in_extra(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text(
        "seq,question,reasoning,count,score,code,note\n007,1.0,,12,0.25,0012,\n", encoding="utf-8"
    )
    (row,) = rows_of(open_rows(path))
    assert (row.id, row.question, row.reasoning) == ("007", "1.0", None)
    assert row.extra == {"count": 12, "score": 0.25, "code": "0012", "note": None}


def test_xlsx_cells(tmp_path: Path) -> None:
    path = tmp_path / "q.xlsx"
    book = Workbook()
    sheet = book.active
    sheet.append(["seq", "question", "when", "amount"])
    sheet.append([1.0, 12, dt.datetime(2024, 5, 6, 7, 8), 2.5])
    book.save(path)
    (row,) = rows_of(open_rows(path))
    assert (row.id, row.question) == ("1", "12")
    assert row.extra == {"when": "2024-05-06T07:08:00", "amount": 2.5}


def test_nested_extra_values_become_json_text(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "q.jsonl", [{"question": "Q", "choices": ["a", "b"], "meta": {"k": 1}}])
    assert rows_of(open_rows(path))[0].extra == {"choices": '["a", "b"]', "meta": '{"k": 1}'}


def test_iterating_twice_reads_the_file_again(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    FRAME.to_csv(path, index=False)
    source = open_rows(path)
    assert rows_of(source) == rows_of(source)


# ---------------------------------------------------------------- errors


def test_file_not_found(tmp_path: Path) -> None:
    assert input_error(tmp_path / "missing.csv").endswith("missing.csv: file not found")


def test_unknown_extension_lists_supported(tmp_path: Path) -> None:
    path = tmp_path / "q.txt"
    path.write_text("question\nx\n")
    message = input_error(path)
    assert "q.txt: unknown file type '.txt'" in message
    assert ".jsonl" in message and ".xlsx" in message and ".parquet" in message


@pytest.mark.parametrize("name", ["q.csv", "q.json", "q.jsonl", "q.tsv", "q.xlsx", "q.parquet"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"")
    assert f"{name}: the file is empty" in input_error(tmp_path / name)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("q.csv", "seq,question\n"),
        ("q.json", "[]"),
        ("q.json", "{}"),
        ("q.jsonl", "\n\n"),
        ("q.tsv", "question\n"),
    ],
)
def test_no_rows(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text, encoding="utf-8")
    message = input_error(tmp_path / name)
    assert name in message and "no rows" in message


def test_no_rows_xlsx_and_parquet(tmp_path: Path) -> None:
    book = Workbook()
    book.active.append(["question"])
    book.save(tmp_path / "q.xlsx")
    assert "no rows" in input_error(tmp_path / "q.xlsx")
    pd.DataFrame({"question": pd.Series([], dtype=str)}).to_parquet(tmp_path / "q.parquet")
    assert "q.parquet: no rows" in input_error(tmp_path / "q.parquet")


def test_malformed_json_gives_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    path.write_text('[\n  {"question": "a"},\n  {"question" "b"}\n]\n', encoding="utf-8")
    message = input_error(path)
    assert "q.json line 3 column 15: invalid JSON (Expecting ':' delimiter)" in message


def test_json_of_the_wrong_shape(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    path.write_text('[{"question": "a"}, "b"]', encoding="utf-8")
    assert "q.json record 2: expected an object" in input_error(path)
    path.write_text('{"question": "a"}', encoding="utf-8")
    assert "q.json: expected a list of records" in input_error(path)
    path.write_text('{"question": ["a", "b"], "input": ["c"]}', encoding="utf-8")
    assert "different lengths (question: 2, input: 1)" in input_error(path)


def test_malformed_jsonl_gives_line_number(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    lines = [json.dumps({"question": f"q{n}"}) for n in range(16)] + ['{"question": "x" "y": 1}']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    message = input_error(path)
    assert message.endswith("q.jsonl line 17: invalid JSON (Expecting ',' delimiter at column 18)")


def test_jsonl_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "q.jsonl", [{"question": "a"}, ["not", "an", "object"]])
    assert "q.jsonl line 2: expected a JSON object {...}, got a list" in input_error(path)


def test_missing_column_message(tmp_path: Path) -> None:
    path = tmp_path / "questions.csv"
    path.write_text("seq,instruction,input\n1,a,b\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        open_rows(path, question_col="foo")
    assert (
        str(caught.value) == f"{path}: no column 'foo' (--question-col); columns are: seq, instruction, input"
    )
    with pytest.raises(InputError, match=r"no column 'ref' \(--reference-col\)"):
        open_rows(path, reference_col="ref")


def test_no_question_column(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text("prompt,context\na,b\n", encoding="utf-8")
    message = input_error(path)
    assert "q.csv: no 'question' or 'instruction' column" in message
    assert "--question-col" in message and "columns are: prompt, context" in message


def test_missing_sheet_lists_sheets(tmp_path: Path) -> None:
    path = make_workbook(tmp_path / "q.xlsx")
    assert "q.xlsx: no sheet 'Sheet9' (--sheet); sheets are 0: notes, 1: data" in input_error(
        path, sheet="Sheet9"
    )
    assert "no sheet '5'" in input_error(path, sheet=5)


@pytest.mark.parametrize("name", ["q.xlsx", "q.parquet"])
def test_corrupt_binary_files(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"PK\x03\x04 this is not really a zip or parquet file" * 10)
    message = input_error(path)
    assert f"{name}: not a readable {path.suffix} file" in message


def test_question_cell_that_is_a_list_or_object(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "q.jsonl", [{"question": "fine"}, {"question": {"text": "nested"}}])
    assert "q.jsonl line 2: column 'question' holds an object, not text" in input_error(path)
    path = tmp_path / "q.json"
    path.write_text(json.dumps([{"q": "fine"}, {"q": "fine"}, {"q": ["a"]}]), encoding="utf-8")
    assert "q.json record 3: column 'q' holds a list" in input_error(path, question_col="q")


def test_empty_question_cell_is_not_an_error_but_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text("question,input\nfine,x\n,x\n  ,y\n", encoding="utf-8")
    with pytest.warns(InputWarning, match=r"q.csv row 3 and 1 more: blank question \(column 'question'\)"):
        assert rows_of(open_rows(path))[1].question == ""


def test_undetectable_encoding(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_bytes(b"question\n" + bytes(range(128, 256)) * 40)
    message = input_error(path)
    assert "q.csv: cannot tell the text encoding" in message and "--encoding" in message


def test_wrong_encoding_given(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    pd.DataFrame({"question": JAPANESE}).to_csv(path, index=False, encoding="cp932")
    message = input_error(path, encoding="utf-8")
    assert "q.csv: cannot read the file as utf-8" in message and "--encoding" in message


def test_unknown_encoding_name(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    FRAME.to_csv(path, index=False)
    assert "--encoding klingon: unknown encoding" in input_error(path, encoding="klingon")


def test_malformed_csv(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text("question,input\na,b\nc,d,e,f\n", encoding="utf-8")
    message = input_error(path)
    assert "q.csv: malformed file" in message and "line 3" in message


def test_csv_row_with_a_surplus_cell(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text("question\nhello, world\n", encoding="utf-8")
    assert "q.csv row 2: more cells than the header has columns (1)" in input_error(path)


def test_sheet_given_for_csv(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    FRAME.to_csv(path, index=False)
    assert "--sheet applies only to .xlsx" in input_error(path, sheet="x")


def test_folder_that_is_not_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    assert "plain: is a folder, not a dataset saved with datasets' save_to_disk" in input_error(
        tmp_path / "plain"
    )


def test_a_column_taken_by_another_flag_is_named(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"seq": 1, "question": "q"}\n', encoding="utf-8")
    with pytest.raises(InputError, match="column 'question' is already used by --reasoning-col"):
        open_rows(path, reasoning_col="question")


# ---------------------------------------------------------------- silent before, said now (issue 13 item 8)


def test_one_row_latin1_csv_reads_as_cp1252_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_bytes("question\ncrème brûlée\n".encode("latin-1"))
    with pytest.warns(InputWarning, match=r"q.csv: not UTF-8; read as cp1252 .*--encoding"):
        assert rows_of(open_rows(path))[0].question == "crème brûlée"


@pytest.mark.parametrize("text", ["Grüße aus München, schöne Straße", "Une crème, s'il vous plaît — 5 €"])
def test_western_text_is_cp1252(tmp_path: Path, text: str) -> None:
    path = tmp_path / "q.csv"
    path.write_bytes(f'question\n"{text}"\n'.encode("cp1252"))
    with pytest.warns(InputWarning, match="read as cp1252"):
        assert rows_of(open_rows(path))[0].question == text


@pytest.mark.parametrize(("text", "encoding"), [("Zażółć gęślą jaźń, pchnąć w tę łódź jeża", "cp1250"),
                                                ("Привет, как дела? Это тест.", "cp1251")])
def test_central_european_and_cyrillic_are_not_taken_for_western(tmp_path: Path, text: str, encoding: str) -> None:
    path = tmp_path / "q.csv"
    path.write_bytes(f'question\n"{text}"\n'.encode(encoding))
    with pytest.warns(InputWarning, match=f"read as {encoding}"):
        assert rows_of(open_rows(path))[0].question == text


def test_cp932_guess_is_announced(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    pd.DataFrame({"question": JAPANESE}).to_csv(path, index=False, encoding="cp932")
    with pytest.warns(InputWarning, match=r"read as cp932 \(Japanese Shift-JIS\)"):
        assert [row.question for row in rows_of(open_rows(path))] == JAPANESE


@pytest.mark.parametrize(("name", "sep"), [("q.csv", ","), ("q.tsv", "\t")])
def test_nul_byte_in_a_field_names_row_and_column(tmp_path: Path, name: str, sep: str) -> None:
    path = tmp_path / name
    path.write_bytes(f"question{sep}input\nfine{sep}x\nok{sep}a\x00b\n".encode())
    assert f"{name} row 3 column 'input': holds a NUL byte" in input_error(path)


def test_duplicate_ids_warn_with_both_rows(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "q.jsonl", [{"seq": 1, "question": "a"}, {"seq": 2, "question": "b"},
                                              {"seq": 1, "question": "c"}])
    with pytest.warns(InputWarning, match=r"q.jsonl line 3: id '1' \(column 'seq'\) repeats line 1"):
        assert len(rows_of(open_rows(path))) == 3


def test_duplicate_column_names_warn_in_every_tabular_format(tmp_path: Path) -> None:
    csv_path = tmp_path / "q.csv"
    csv_path.write_text("question,note,note\nq,a,b\n", encoding="utf-8")
    book = Workbook()
    book.active.append(["question", "note", "note"])
    book.active.append(["q", "a", "b"])
    book.save(tmp_path / "q.xlsx")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table([["q"], ["a"], ["b"]], names=["question", "note", "note"]), tmp_path / "q.parquet")
    for name in ("q.csv", "q.xlsx", "q.parquet"):
        with pytest.warns(InputWarning, match=rf"{name}: duplicate column name 'note' .*read as 'note.1'"):
            rows = rows_of(open_rows(tmp_path / name))
        assert rows[0].extra == {"note": "a", "note.1": "b"}, name
    json_path = tmp_path / "q.json"
    json_path.write_text('[{"question": "q", "note": "a", "note": "b"}]', encoding="utf-8")
    with pytest.warns(InputWarning, match="q.json: key 'note' appears twice"):
        rows_of(open_rows(json_path))
    jsonl_path = tmp_path / "q.jsonl"
    jsonl_path.write_text('{"question": "q"}\n{"question": "q", "question": "r"}\n', encoding="utf-8")
    with pytest.warns(InputWarning, match="q.jsonl line 2: key 'question' appears twice"):
        rows_of(open_rows(jsonl_path))
