"""The openai engine against a real OpenAI-compatible server: `transformers serve` on the tiny fixture models."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import openpyxl
from cli_helpers import cli_json
from conftest import QUESTIONS, write_questions

from reasonry.config import SamplingParams, parse_model_spec
from reasonry.engines.base import Request, Result
from reasonry.engines.openai import OpenAIEngine
from reasonry.store import Store
from reasonry.tasks.output import write_run_output

SHORT = ["--max-new-tokens", "8", "--concurrency", "4", "--timeout", "60", "--json"]






def header(path: Path) -> list[str]:
    sheet = openpyxl.load_workbook(path, read_only=True).active
    return [cell.value for cell in next(sheet.iter_rows(max_row=1))]


def stored(db: Path, run_id: str) -> list[sqlite3.Row]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    rows = conn.execute(
        "SELECT q.model AS label, q.row_index, r.*, rq.prompt, rq.messages FROM run_requests q "
        "JOIN results r ON r.key=q.request_key JOIN requests rq ON rq.key=q.request_key WHERE q.run_id=?",
        (run_id,)).fetchall()
    conn.close()
    return rows


def test_completions_with_two_served_models(served: str, tiny_model: Path, other_tiny_model: Path,
                                            questions_file: Path, tmp_path: Path) -> None:
    db, xlsx = tmp_path / "r.db", tmp_path / "side.xlsx"
    summary = cli_json("generate", str(questions_file), "--model", f"openai:{tiny_model}@{served}",
                      "--model", f"openai:{other_tiny_model}", "--base-url", served, "--db", str(db),
                      "--out", str(xlsx), *SHORT)
    assert summary["requests"] == 2 * len(QUESTIONS) and summary["failed"] == 0
    rows = stored(db, summary["run_id"])
    assert len(rows) == 2 * len(QUESTIONS)
    assert all("<|system|>" in r["prompt"] and r["messages"] is None for r in rows)
    assert all(r["completion_tokens"] > 0 and r["finish_reason"] in ("length", "stop") for r in rows)
    columns = header(xlsx)
    assert "reasoning [tiny]" in columns and "reasoning [tiny-wide]" in columns

    jsonl = tmp_path / "long.jsonl"
    with closing(Store(db)) as store:
        write_run_output(store, summary["run_id"], jsonl)
    lines = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 2 * len(QUESTIONS)
    assert {line["model"] for line in lines} == {"tiny", "tiny-wide"}


def test_chat_path_sends_messages(served: str, tiny_model: Path, questions_file: Path, tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    summary = cli_json("generate", str(questions_file), "--model", f"openai:{tiny_model}@{served}", "--chat",
                      "--role", "logician", "--db", str(db), *SHORT)
    assert summary["generated"] == len(QUESTIONS) and summary["failed"] == 0
    for row in stored(db, summary["run_id"]):
        messages = json.loads(row["messages"])
        assert row["prompt"] is None
        assert [m["role"] for m in messages] == ["system", "user"]
        assert row["error"] is None and row["completion_tokens"] > 0


def test_hf_and_openai_models_in_one_run(served: str, tiny_model: Path, tmp_path: Path) -> None:
    source = write_questions(tmp_path / "q.json", QUESTIONS[:2])
    db, xlsx = tmp_path / "r.db", tmp_path / "both.xlsx"
    summary = cli_json("generate", str(source), "--model", f"hf:{tiny_model}", "--model",
                      f"openai:{tiny_model}@{served}", "--db", str(db), "--out", str(xlsx), *SHORT)
    assert summary["requests"] == 4 and summary["failed"] == 0
    columns = header(xlsx)
    assert "response [tiny]" in columns and "response [tiny@openai]" in columns


def test_stream_from_server(served: str, tiny_model: Path) -> None:
    engine = OpenAIEngine(parse_model_spec(f"openai:{tiny_model}@{served}"))
    request = Request(key="s", params=SamplingParams(max_new_tokens=8, top_k=0, repetition_penalty=1.0),
                      messages=[{"role": "user", "content": "Find the square root of 156."}])
    items = list(engine.stream(request))
    result = items[-1]
    assert isinstance(result, Result) and result.error is None
    assert "".join(items[:-1]) == result.raw_text == result.text
    assert result.completion_tokens == 8


def test_prefill_refused_by_transformers_serve_is_a_row_error(served: str, tiny_model: Path) -> None:
    # transformers serve always adds a generation prompt: it rejects continue_final_message (vLLM accepts it).
    engine = OpenAIEngine(parse_model_spec(f"openai:{tiny_model}@{served}"))
    request = Request(key="p", params=SamplingParams(max_new_tokens=4),
                      messages=[{"role": "user", "content": "q"}], prefill="<think>\ngiven\n</think>\n\n")
    [result] = list(engine.generate([request]))
    assert result.error and "continue_final_message" in result.error and "vLLM" in result.error

