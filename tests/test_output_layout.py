"""The output file a person reads: column order, cell types, adjacency and widths, read back with openpyxl."""

from __future__ import annotations

import csv
import json
from contextlib import closing
from pathlib import Path

import openpyxl
import pytest
from cli_helpers import cli_json
from conftest import write_questions

from reasonry.store import Store
from reasonry.tasks.output import write_run_output

ROWS = [
    {"seq": 1, "question": "Find the square root of 156.", "input": "", "topic": "math"},
    {"seq": 2, "question": "Name a prime number larger than ten.", "input": "", "topic": "math"},
    {"seq": 3, "question": "Write a letter to invite a birthday party.", "input": "", "topic": "writing"},
]
FAST = ["--max-new-tokens", "12", "--json"]


@pytest.fixture(scope="module")
def checked_run(tiny_model: Path, other_tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> tuple[Path, str]:
    """Two models, their reasoning translated to Japanese, quality-checked."""
    folder = tmp_path_factory.mktemp("layout")
    source = write_questions(folder / "q.json", ROWS)
    db = str(folder / "r.db")
    run = cli_json("generate", str(source), "--model", f"hf:{tiny_model}", "--model", f"hf:{other_tiny_model}",
                   "--input-col", "input", "--db", db, *FAST)["run_id"]
    cli_json("translate", run, "--to", "ja", "--model", f"hf:{tiny_model}", "--db", db, *FAST)
    cli_json("check", run, "--db", db, "--json")
    return Path(db), run


def _written(checked_run: tuple[Path, str], path: Path) -> Path:
    db, run = checked_run
    with closing(Store(db)) as store:
        write_run_output(store, run, path)
    return path


def test_side_by_side_xlsx_layout(checked_run, tmp_path):
    sheet = openpyxl.load_workbook(_written(checked_run, tmp_path / "side.xlsx")).active
    header = [cell.value for cell in sheet[1]]
    assert header == [
        "seq", "question", "input",
        "reasoning [tiny]", "reasoning_ja [tiny]", "reasoning [tiny-wide]", "reasoning_ja [tiny-wide]",
        "response [tiny]", "response [tiny-wide]",
        "topic",
        "prompt_tokens [tiny]", "prompt_tokens [tiny-wide]", "completion_tokens [tiny]", "completion_tokens [tiny-wide]", "latency_s [tiny]", "latency_s [tiny-wide]",
        "finish_reason [tiny]", "finish_reason [tiny-wide]", "error [tiny]", "error [tiny-wide]",
        "flags [tiny]", "flags [tiny-wide]",
    ]
    column = {name: position + 1 for position, name in enumerate(header)}
    letter = {name: openpyxl.utils.get_column_letter(position) for name, position in column.items()}
    ids = [sheet.cell(row=r, column=1) for r in range(2, len(ROWS) + 2)]
    assert [cell.value for cell in ids] == [1, 2, 3] and {cell.data_type for cell in ids} == {"n"}
    tokens = sheet.cell(row=2, column=column["completion_tokens [tiny]"])
    assert tokens.data_type == "n" and tokens.value > 0
    assert sheet.freeze_panes == "A2"
    assert sheet.column_dimensions[letter["input"]].width <= 10  # empty: narrow
    assert all(sheet.cell(row=r, column=column["input"]).data_type == "n" for r in range(2, len(ROWS) + 2))
    for name in ("question", "reasoning [tiny]", "reasoning_ja [tiny-wide]"):
        assert sheet.column_dimensions[letter[name]].width >= 40
        assert sheet.cell(row=2, column=column[name]).alignment.wrap_text
    for name in ("completion_tokens [tiny]", "latency_s [tiny-wide]", "finish_reason [tiny]"):
        assert sheet.column_dimensions[letter[name]].width <= 20
    assert all(isinstance(sheet.cell(row=r, column=column["flags [tiny]"]).value, str | type(None))
               for r in range(2, len(ROWS) + 2))


def test_long_csv_and_jsonl_keep_the_same_order_and_integer_ids(checked_run, tmp_path):
    with _written(checked_run, tmp_path / "long.csv").open(encoding="utf-8-sig", newline="") as file:
        header = next(csv.reader(file))
    assert header == ["seq", "question", "input", "reasoning", "reasoning_ja", "response", "model", "topic",
                      "prompt_tokens", "completion_tokens", "latency_s", "finish_reason", "error", "flags"]
    lines = _written(checked_run, tmp_path / "long.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["seq"] for r in records] == [1, 1, 2, 2, 3, 3]
    assert all(r["reasoning_ja"] is not None for r in records)


def test_the_reference_column_goes_out_under_its_own_name(tiny_model: Path, tmp_path: Path) -> None:
    source = write_questions(tmp_path / "q.json", [{"seq": 1, "question": "What is 2+3?", "answer": "5"},
                                                   {"seq": 2, "question": "What is 2*3?", "answer": "6"}])
    out = tmp_path / "out.csv"
    cli_json("generate", str(source), "--model", f"hf:{tiny_model}", "--reference-col", "answer",
             "--db", str(tmp_path / "r.db"), "--out", str(out), *FAST)
    with out.open(encoding="utf-8-sig", newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0])[:3] == ["seq", "question", "answer"] and [r["answer"] for r in rows] == ["5", "6"]


def test_an_ensemble_of_a_sampled_run_has_one_column_set(tiny_model: Path, tmp_path: Path) -> None:
    source = write_questions(tmp_path / "q.json", ROWS[:2])
    db = str(tmp_path / "r.db")
    run = cli_json("generate", str(source), "--model", f"hf:{tiny_model}", "--samples", "2", "--temperature", "0.7",
                   "--db", db, *FAST)["run_id"]
    cli_json("ensemble", run, "--aggregator", f"hf:{tiny_model}", "--db", db, *FAST)
    with closing(Store(db)) as store:
        write_run_output(store, run, tmp_path / "wide.xlsx")
        usage = store.run_usage(run)
    assert list(usage) == ["tiny"] and usage["tiny"]["requests"] == 2 * 2 + 2  # the aggregator's calls: its own
    header = [c.value for c in openpyxl.load_workbook(tmp_path / "wide.xlsx").active[1]]
    assert "reasoning [tiny #1]" in header and "reasoning [tiny #2]" in header
    assert "reasoning [ensemble]" in header and not [h for h in header if "ensemble #" in h]
