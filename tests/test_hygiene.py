"""Near-duplicates (`dedup`) and benchmark contamination (`decontaminate`) over files and runs, and export
leaving the marked results out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fault_server import FaultServer
from typer.testing import CliRunner

from reasonry.cli import app
from reasonry.errors import InputError
from reasonry.export import ExportOptions, export_dataset
from reasonry.hygiene import decontaminate, dedup
from reasonry.store import Store
from reasonry.tasks.generate import GenerateConfig, generate

LONG = ("A farmer has seventeen sheep and all but nine of them run away through a gap in the old stone wall "
        "behind the barn; how many sheep does the farmer still have in the field at the end of the day, and how "
        "many would be left if three of the runaways came back home before the evening milking started")
QUESTIONS = [
    LONG,                                                            # 1 kept
    "What is the boiling point of water at sea level in degrees Celsius, and why does it change on a mountain?",
    LONG.upper().replace(";", ",") + "?",                           # 3 duplicate of 1 (case, punctuation)
    "Name three primary colours used in painting and explain how mixing them gives the secondary colours.",
    LONG.replace("old stone wall", "old wooden wall"),               # 5 duplicate of 1 (one word changed)
    "what is the boiling point of water at sea level in degrees celsius and why does it change on a mountain",
    "Why is the sky blue during the day but red and orange at sunset, in terms a child can follow?",
]
BENCH_QUESTION = ("Janet owns ducks that lay sixteen eggs per day and she eats three for breakfast every morning and "
                  "bakes muffins for her friends every day with four")
BENCH = [BENCH_QUESTION, "Completely different benchmark question about trains leaving two stations at noon."]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    rows = [{"seq": f"q{i + 1}", "question": q, "source": "s"} for i, q in enumerate(QUESTIONS)]
    rows.append({"seq": "q8", "question": "Please solve: " + BENCH_QUESTION + " dollars at the market.",
                 "source": "t"})
    # 12 of 13 words of the benchmark in a row: below the default 13-gram, above --ngram 8.
    rows.append({"seq": "q9", "question": " ".join(BENCH_QUESTION.split()[:12]) + " apples", "source": "t"})
    return write_jsonl(tmp_path / "data.jsonl", rows)


@pytest.fixture
def bench(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "bench.jsonl", [{"problem": q} for q in BENCH])


def test_dedup_file_keeps_the_first_of_each_cluster(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "kept.jsonl"
    result = CliRunner().invoke(app, ["dedup", str(data), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["duplicates"] == 3 and summary["clusters"] == 2 and summary["rows"] == 9
    kept = read_jsonl(out)
    assert [r["seq"] for r in kept] == ["q1", "q2", "q4", "q7", "q8", "q9"]
    assert kept[0] == {"seq": "q1", "question": LONG, "source": "s"}  # the input's own columns
    clusters = read_jsonl(data.with_name("data.duplicates.jsonl"))
    by_kept = {c["kept"]["key"]: sorted(d["key"] for d in c["duplicates"]) for c in clusters}
    assert by_kept == {"q1": ["q3", "q5"], "q2": ["q6"]}
    assert clusters[0]["kept"]["text"].startswith("A farmer")

    strict = dedup(data, threshold=0.95, report=tmp_path / "strict.jsonl")
    assert strict["duplicates"] == 2  # the changed word no longer counts


def test_kept_rows_keep_a_numeric_id_a_number(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "n.jsonl", [{"seq": i + 1, "question": q} for i, q in enumerate(QUESTIONS[:3])])
    out = tmp_path / "kept.jsonl"
    result = CliRunner().invoke(app, ["dedup", str(data), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert [r["seq"] for r in read_jsonl(out)] == [1, 2]


def test_decontaminate_file_flags_the_matching_span(data: Path, bench: Path, tmp_path: Path) -> None:
    out = tmp_path / "clean.csv"
    summary = decontaminate(data, bench, out=out, against_columns={"question_col": "problem"})
    assert summary["contaminated"] == 1 and summary["benchmark_rows"] == 2
    [flag] = read_jsonl(data.with_name("data.contaminated.jsonl"))
    assert flag["key"] == "q8" and flag["bench_id"] == "1"
    assert flag["span"] == BENCH_QUESTION and flag["words"] == len(BENCH_QUESTION.split())
    assert "q8" not in out.read_text(encoding="utf-8") and "q9" in out.read_text(encoding="utf-8")

    looser = decontaminate(data, bench, ngram=8, report=tmp_path / "r8.jsonl",
                           against_columns={"question_col": "problem"})
    assert looser["contaminated"] == 2


def test_run_marks_are_left_out_by_export(data: Path, bench: Path, tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    with FaultServer() as server:
        config = GenerateConfig(template="alpaca-reasoning", samples=2, chat=True)  # reasoning and a response
        run = generate(data, [f"openai:a@{server.url}"], db=db, config=config)
    run_id = run["run_id"]
    store = Store(db)
    try:
        with pytest.raises(InputError, match="never checked by `reasonry dedup"):
            export_dataset(store, tmp_path / "x.jsonl", run_id=run_id, options=ExportOptions(
                format="alpaca", exclude_marks=("duplicate",)))
        assert not (tmp_path / "x.jsonl").exists()
    finally:
        store.close()

    found = dedup(run_id, db=db, report=tmp_path / "d.jsonl")
    assert found["rows"] == 18 and found["duplicates"] == 6  # both samples of rows 3, 5 and 6
    flagged = decontaminate("last", bench, db=db, report=tmp_path / "c.jsonl",
                            against_columns={"question_col": "problem"})
    assert flagged["contaminated"] == 2

    store = Store(db)
    try:
        every = export_dataset(store, tmp_path / "all.jsonl", run_id=run_id, options=ExportOptions(format="alpaca"))
        clean = export_dataset(store, tmp_path / "clean.jsonl", run_id=run_id, options=ExportOptions(
            format="alpaca", exclude_marks=("duplicate", "contaminated")))
    finally:
        store.close()
    assert every["records"] == 18 and clean["records"] == 10 and clean["dropped"] == {"hygiene": 8}
    instructions = {r["instruction"] for r in read_jsonl(tmp_path / "clean.jsonl")}
    assert LONG in instructions and not any(i.startswith("Please solve") for i in instructions)

    again = dedup(run_id, db=db, report=tmp_path / "d.jsonl", threshold=0.95)  # replaces, never adds up
    assert again["duplicates"] == 4
    cli = CliRunner().invoke(app, ["export", run_id, "--db", str(db), "--out", str(tmp_path / "c2.jsonl"),
                                   "--format", "alpaca", "--exclude-duplicates", "--json"])
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.output)["records"] == 14


@pytest.mark.parametrize("args", [
    ["decontaminate", "{data}", "--against", "{tmp}/missing.jsonl", "--out", "{tmp}/o.jsonl"],
    ["dedup", "{data}", "--threshold", "0", "--out", "{tmp}/o.jsonl"],
    ["dedup", "{data}", "--out", "{data}"],
    ["dedup", "{data}", "--field", "reasoning", "--out", "{tmp}/o.jsonl"],
    ["dedup", "no-such-run", "--db", "{tmp}/none.db", "--report", "{tmp}/o.jsonl"],
    ["dedup", "{tmp}/nope.jsonl", "--report", "{tmp}/o.jsonl"],
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(data: Path, tmp_path: Path, args: list[str]) -> None:
    before = data.read_bytes()
    argv = [a.format(data=data, tmp=tmp_path) for a in args]
    done = subprocess.run([sys.executable, "-m", "reasonry", *argv], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "nope.jsonl: no such file" in done.stderr or "nope" not in " ".join(argv)
    assert not (tmp_path / "o.jsonl").exists() and not data.with_name("data.duplicates.jsonl").exists()
    assert data.read_bytes() == before


def test_dedup_over_reasonings_of_a_file(tmp_path: Path) -> None:
    same = ("First I count the sheep that ran away, then I subtract them from the seventeen the farmer had, "
            "which leaves nine sheep in the field at the end of the day.")
    rows = [{"question": "Q one?", "reasoning": same},
            {"question": "Q two, different?", "reasoning": "Water boils at one hundred degrees at sea level " * 3},
            {"question": "Q three?", "reasoning": same.replace("end of the day", "end of the evening")},
            {"question": "Q one?", "reasoning": "A new line of thought about the question entirely, step by step."}]
    data = write_jsonl(tmp_path / "r.jsonl", rows)
    by_reasoning = dedup(data, field="reasoning", report=tmp_path / "a.jsonl")
    by_question = dedup(data, field="question", report=tmp_path / "b.jsonl")
    assert by_reasoning["duplicates"] == 1 and by_question["duplicates"] == 1
    [cluster] = read_jsonl(tmp_path / "a.jsonl")
    assert cluster["kept"]["key"] == "1" and [d["key"] for d in cluster["duplicates"]] == ["3"]
    [cluster] = read_jsonl(tmp_path / "b.jsonl")
    assert [d["key"] for d in cluster["duplicates"]] == ["4"]
