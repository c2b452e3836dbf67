"""`reasonry ensemble` and `reasonry translate`: end to end on `transformers serve`, exact prompts on a fault server."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import openpyxl
from cli_helpers import cli_json
from conftest import QUESTIONS
from fault_server import FaultServer, answer_for

from reasonry.prompts.roles import ROLES
from reasonry.tasks.ensemble import ensemble
from reasonry.tasks.generate import GenerateConfig, generate
from reasonry.tasks.translate import translate

SHORT = ["--max-new-tokens", "16", "--concurrency", "4", "--json"]






def cli_error(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "reasonry", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.strip().startswith("error:")
    return done.stderr


def run_rows(db: Path, run_id: str, column: str = "") -> list[sqlite3.Row]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    rows = conn.execute(
        "SELECT q.row_index, q.model, q.column, r.reasoning, r.response, r.error, rq.prompt, rq.messages"
        " FROM run_requests q LEFT JOIN results r ON r.key=q.request_key JOIN requests rq ON rq.key=q.request_key"
        " WHERE q.run_id=? AND q.column=?", (run_id, column)).fetchall()
    conn.close()
    return rows


def test_ensemble_and_translate_end_to_end(served: str, tiny_model: Path, other_tiny_model: Path,
                                          questions_file: Path, tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    run = cli_json("generate", str(questions_file), "--model", f"openai:{tiny_model}@{served}", "--model",
                  f"openai:{other_tiny_model}@{served}", "--db", str(db), *SHORT)
    run_id = run["run_id"]
    merged = cli_json("ensemble", run_id[:12], "--aggregator", f"openai:{tiny_model}@{served}", "--chat",
                     "--db", str(db), *SHORT)
    assert merged["requests"] == len(QUESTIONS) and merged["generated"] + merged["failed"] == len(QUESTIONS)
    assert merged["generated"] >= len(QUESTIONS) - 1  # a row fails only if both tiny models wrote nothing
    ensemble_rows = run_rows(db, run_id)
    assert sorted(r["row_index"] for r in ensemble_rows if r["model"] == "ensemble") == list(range(len(QUESTIONS)))
    for row in ensemble_rows:
        if row["model"] == "ensemble" and row["error"] is None:
            assert json.loads(row["messages"])[0]["content"].count("### Reasoning ") >= 1

    xlsx, jsonl = tmp_path / "all.xlsx", tmp_path / "all.jsonl"
    translated = cli_json("translate", "last", "--to", "ja", "--model", f"openai:{tiny_model}@{served}",
                         "--db", str(db), "--out", str(xlsx), *SHORT)
    assert translated["column"] == "reasoning_ja" and translated["requests"] == 3 * len(QUESTIONS)
    rows = run_rows(db, run_id, "reasoning_ja")
    assert len(rows) == 3 * len(QUESTIONS) and all(r["response"] is not None or r["error"] for r in rows)
    assert translated["generated"] >= 2 * len(QUESTIONS)
    assert all(ROLES["translator"] in r["prompt"] and "Japanese" in r["prompt"] for r in rows if r["prompt"])

    sheet = openpyxl.load_workbook(xlsx, read_only=True).active
    table = list(sheet.iter_rows(values_only=True))
    columns = table[0]
    assert len(table) == 1 + len(QUESTIONS)
    for label in ("tiny", "tiny-wide", "ensemble"):
        assert f"reasoning [{label}]" in columns and f"reasoning_ja [{label}]" in columns

    again = cli_json("translate", run_id, "--to", "ja", "--model", f"openai:{tiny_model}@{served}",
                    "--db", str(db), "--out", str(jsonl), *SHORT)
    assert again["generated"] == 0 and again["cached"] == len([r for r in rows if r["error"] is None])
    lines = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 3 * len(QUESTIONS) and all("reasoning_ja" in line for line in lines)
    assert {line["model"] for line in lines} == {"tiny", "tiny-wide", "ensemble"}
    cached = cli_json("ensemble", run_id, "--aggregator", f"openai:{tiny_model}@{served}", "--chat",
                     "--db", str(db), *SHORT)
    assert cached["generated"] == 0


def test_ensemble_prompt_numbers_candidates_and_skips_failures(tmp_path: Path) -> None:
    source = tmp_path / "q.jsonl"
    questions = ["Is LUNA a white cat?", "How many fruits are left?", "FAULT:r400:99"]
    source.write_text("\n".join(json.dumps({"seq": i, "question": q}) for i, q in enumerate(questions)),
                      encoding="utf-8")
    db, out = tmp_path / "r.db", tmp_path / "out.jsonl"
    with FaultServer() as server:
        models = [f"openai:alpha@{server.url}", f"openai:beta@{server.url}"]
        run = generate(source, models, db=db, config=GenerateConfig(template="alpaca-reasoning"))
        aggregator = f"openai:judge@{server.url}"
        merged = ensemble(run["run_id"], aggregator, db=db)
        assert (merged["generated"], merged["failed"]) == (2, 1)
        translated = translate(run["run_id"], "ja", f"openai:translator@{server.url}", db=db, out=out)
        assert (translated["generated"], translated["failed"]) == (6, 3)
        ensemble_prompts = [b["prompt"] for b in server.bodies if b["model"] == "judge"]

    assert len(ensemble_prompts) == 2
    by_row = {(r["row_index"], r["model"]): r for r in run_rows(db, run["run_id"])}
    for prompt in ensemble_prompts:
        row = 0 if "LUNA" in prompt else 1
        first, second = by_row[(row, "alpha")], by_row[(row, "beta")]
        assert f"### Reasoning 1:\n{first['reasoning']}" in prompt
        assert f"### Reasoning 2:\n{second['reasoning']}" in prompt
        assert "must NOT state the final answer" in prompt and questions[row] in prompt
        assert by_row[(row, "ensemble")]["reasoning"] == answer_for("judge", prompt)
    assert "no model produced a reasoning" in by_row[(2, "ensemble")]["error"]

    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 9
    for line in lines:
        if line["error"] is None:
            assert line["reasoning_ja"].startswith("reasoning ") and line["reasoning_ja"].endswith("by translator")
        else:
            assert line["reasoning_ja"] is None
    translations = run_rows(db, run["run_id"], "reasoning_ja")
    assert sum("has no reasoning to translate" in (r["error"] or "") for r in translations) == 3


def test_clear_errors(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    source = tmp_path / "q.jsonl"
    source.write_text(json.dumps({"seq": 1, "question": "FAULT:r400:99"}), encoding="utf-8")
    with FaultServer() as server:
        run = generate(source, [f"openai:m@{server.url}"], db=db)
        spec = f"openai:m@{server.url}"
        assert "no results yet" in cli_error("ensemble", run["run_id"], "--aggregator", spec, "--db", str(db))
        assert "no results yet" in cli_error("translate", run["run_id"], "--to", "ja", "--model", spec,
                                             "--db", str(db))
    assert "not found" in cli_error("ensemble", "nope", "--aggregator", spec, "--db", str(db))
    assert "--aggregator" in cli_error("ensemble", "last", "--aggregator", "gpt4", "--db", str(db))
    assert "--field" in cli_error("translate", "last", "--to", "ja", "--model", spec, "--field", "input",
                                  "--db", str(db))
    assert "no such database" in cli_error("ensemble", "last", "--aggregator", spec, "--db",
                                           str(tmp_path / "none.db"))
