"""Bad input in every input family: one line naming file, row and column; exit 2; no traceback; no output file."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_helpers import run_cli, run_subprocess
from openpyxl import Workbook

UNREACHABLE = "openai:m@http://127.0.0.1:9/v1"  # no request is ever sent: the input fails first


def _json(path: Path) -> None:
    path.write_text(json.dumps([{"question": ["a", "list"]}, {"question": "fine"}]), encoding="utf-8")


def _jsonl(path: Path) -> None:
    path.write_text('{"question": "fine"}\n{"question": "b",}\n', encoding="utf-8")


def _csv(path: Path) -> None:
    path.write_bytes(b"question,input\nwhat\x00is this,x\n")


def _tsv(path: Path) -> None:
    path.write_bytes(b"question\tinput\nfine\tx\x00y\n")


def _xlsx(path: Path) -> None:
    book = Workbook()
    book.active.append(["prompt", "topic"])
    book.active.append(["fine", "math"])
    book.save(path)


def _parquet(path: Path) -> None:
    pq.write_table(pa.table({"question": [["a", "list"]]}), path)


def _dataset(path: Path) -> None:
    from datasets import Dataset

    Dataset.from_dict({"question": [{"nested": "object"}], "input": ["x"]}).save_to_disk(str(path))


FAMILIES = [
    ("q.json", _json, "q.json record 1: column 'question' holds a list"),
    ("q.jsonl", _jsonl, "q.jsonl line 2: invalid JSON"),
    ("q.csv", _csv, "q.csv row 2 column 'question': holds a NUL byte"),
    ("q.tsv", _tsv, "q.tsv row 2 column 'input': holds a NUL byte"),
    ("q.xlsx", _xlsx, "q.xlsx: no 'question' or 'instruction' column; name the question column with --question-col; "
                      "columns are: prompt, topic"),
    ("q.parquet", _parquet, "q.parquet row 1: column 'question' holds a list"),
    ("saved", _dataset, "saved row 1: column 'question' holds an object"),
]


@pytest.mark.parametrize(("name", "make", "needle"), FAMILIES, ids=[name for name, _, _ in FAMILIES])
def test_every_input_family_fails_in_one_line(tmp_path, capsys, monkeypatch, name, make, needle):
    make(tmp_path / name)
    capsys.readouterr()
    out = tmp_path / "out.xlsx"
    result = run_cli(["generate", str(tmp_path / name), "--model", UNREACHABLE, "--db", str(tmp_path / "r.db"),
                      "--out", str(out)], capsys, monkeypatch)
    assert result.code == 2, result.err
    lines = [line for line in result.err.splitlines() if line.strip() and not line.startswith("m: ")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], result.err
    assert "Traceback" not in result.err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("out", ".out"))) == []


def test_a_failing_input_leaves_an_earlier_output_as_it_was(tmp_path):
    _csv(tmp_path / "q.csv")
    out = tmp_path / "out.csv"
    out.write_text("seq,question\n1,kept\n", encoding="utf-8")
    result = run_subprocess(["generate", str(tmp_path / "q.csv"), "--model", UNREACHABLE, "--out", str(out),
                             "--db", str(tmp_path / "r.db")])
    assert result.code == 2 and "Traceback" not in result.err
    assert "q.csv row 2 column 'question': holds a NUL byte" in result.err
    assert out.read_text(encoding="utf-8") == "seq,question\n1,kept\n"


def test_warnings_are_one_line_each(tmp_path):
    path = tmp_path / "q.csv"
    path.write_bytes("seq,question\n1,crème\n1,\n".encode("latin-1"))
    result = run_subprocess(["generate", str(path), "--model", UNREACHABLE, "--db", str(tmp_path / "r.db"),
                             "--timeout", "1", "--json"])
    warnings = [line for line in result.err.splitlines() if line.startswith("warning: ")]
    assert [w.split(": ")[1] for w in warnings] == [str(path)] + [str(path) + " row 3"] * 2, result.err
    assert "read as cp1252" in warnings[0] and "blank question" in warnings[1] and "repeats row 2" in warnings[2]
    assert "InputWarning" not in result.err and "warnings.warn" not in result.err
