"""`reasonry generate` end to end on a tiny real model: outputs, cache, template edits, resume, bad input."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time

import openpyxl
import pandas as pd
import pytest

from tests.cli_helpers import run_cli, run_subprocess

FAST = ["--max-new-tokens", "12", "--batch-size", "8"]


def _gen(args, capsys, monkeypatch, model):
    return run_cli(["generate", *args, "--model", f"hf:{model}", *FAST, "--json"], capsys, monkeypatch)


def test_xlsx_has_seed_columns_and_is_readable(tmp_path, questions_file, tiny_model, tiny_adapter, capsys, monkeypatch):
    out = tmp_path / "reasoning.xlsx"
    result = run_cli(["generate", str(questions_file), "--model", f"hf:{tiny_model}+{tiny_adapter}",
                      "--template", "phi2", "--role", "logician", "--temperature", "0.3", "--top-p", "0.9",
                      "--top-k", "50", "--repetition-penalty", "1.1", "--max-new-tokens", "12",
                      "--db", str(tmp_path / "r.db"), "--out", str(out), "--json"], capsys, monkeypatch)
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert {k: summary[k] for k in ("rows", "requests", "generated", "cached", "failed")} == \
        {"rows": 4, "requests": 4, "generated": 4, "cached": 0, "failed": 0}
    assert summary["output"] == str(out) and summary["run_id"]
    frame = pd.read_excel(out)
    assert list(frame.columns[:3]) == ["seq", "question", "input"]
    for column in ("response", "reasoning", "model", "prompt_tokens", "completion_tokens", "latency_s",
                   "finish_reason", "error", "topic"):
        assert column in frame.columns
    assert frame["seq"].tolist() == [1, 2, 3, 4]
    assert frame["topic"].tolist() == ["math", "nlp", "writing", "logic"]
    assert frame["reasoning"].notna().all()
    sheet = openpyxl.load_workbook(out).active
    assert sheet.freeze_panes == "A2"
    assert sheet.column_dimensions["B"].width >= 30
    assert sheet.cell(row=2, column=2).alignment.wrap_text


def test_rerun_is_all_cache_hits_and_refresh_regenerates(tmp_path, questions_file, tiny_model, capsys, monkeypatch):
    db = ["--db", str(tmp_path / "r.db")]
    first = json.loads(_gen([str(questions_file), *db], capsys, monkeypatch, tiny_model).out)
    second = json.loads(_gen([str(questions_file), *db, "--out", str(tmp_path / "o.jsonl")], capsys, monkeypatch,
                             tiny_model).out)
    assert first["generated"] == 4 and second["generated"] == 0 and second["cached"] == 4
    third = json.loads(_gen([str(questions_file), *db, "--refresh"], capsys, monkeypatch, tiny_model).out)
    assert third["generated"] == 4
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["seq"] for r in rows] == ["1", "2", "3", "4"] or [r["seq"] for r in rows] == [1, 2, 3, 4]


def test_template_edit_recomputes_only_changed_rows(tmp_path, tiny_model, capsys, monkeypatch):
    questions = tmp_path / "q.jsonl"
    questions.write_text("\n".join(json.dumps({"question": f"question {i}", "kind": "a" if i < 2 else "b"})
                                   for i in range(5)), encoding="utf-8")
    template = tmp_path / "t.j2"
    template.write_text("Q: {{ instruction }}\n<|reasoning|>", encoding="utf-8")
    db = ["--db", str(tmp_path / "r.db"), "--template", str(template)]
    assert json.loads(_gen([str(questions), *db], capsys, monkeypatch, tiny_model).out)["generated"] == 5
    template.write_text("{% if row.kind == 'a' %}Question: {% else %}Q: {% endif %}{{ instruction }}\n<|reasoning|>",
                        encoding="utf-8")
    summary = json.loads(_gen([str(questions), *db], capsys, monkeypatch, tiny_model).out)
    assert (summary["generated"], summary["cached"]) == (2, 3)


def test_several_samples_and_models_side_by_side(tmp_path, questions_file, tiny_model, tiny_adapter, capsys, monkeypatch):
    out = tmp_path / "compare.xlsx"
    result = run_cli(["generate", str(questions_file), "--model", f"hf:{tiny_model}",
                      "--model", f"hf:{tiny_model}+{tiny_adapter}", "--samples", "2", *FAST,
                      "--db", str(tmp_path / "r.db"), "--out", str(out), "--json"], capsys, monkeypatch)
    assert result.code == 0, result.err
    assert json.loads(result.out)["requests"] == 16
    frame = pd.read_excel(out)
    assert len(frame) == 4
    assert "reasoning [tiny #1]" in frame.columns and "reasoning [tiny+tiny-lora #2]" in frame.columns
    assert frame["reasoning [tiny #1]"].tolist() != frame["reasoning [tiny #2]"].tolist()
    long = tmp_path / "compare.parquet"
    run_cli(["generate", str(questions_file), "--model", f"hf:{tiny_model}", "--model",
             f"hf:{tiny_model}+{tiny_adapter}", "--samples", "2", *FAST, "--db", str(tmp_path / "r.db"),
             "--out", str(long), "--json"], capsys, monkeypatch)
    table = pd.read_parquet(long)
    assert len(table) == 16 and set(table["model"]) == {"tiny", "tiny+tiny-lora"}


def test_special_mode_uses_given_reasoning(tmp_path, tiny_model, capsys, monkeypatch):
    questions = tmp_path / "q.csv"
    questions.write_text("question,reasoning\nHow many fruits?,Books are not fruit.\nAnd now?,\n", encoding="utf-8")
    out = tmp_path / "o.jsonl"
    result = _gen([str(questions), "--template", "alpaca-special", "--db", str(tmp_path / "r.db"), "--out", str(out)],
                  capsys, monkeypatch, tiny_model)
    assert result.code == 3, result.err  # finished, with one failed row
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows[0]["reasoning"] == "Books are not fruit." and rows[0]["response"] and rows[0]["error"] is None
    assert "row 2" in rows[1]["error"] and "needs a reasoning" in rows[1]["error"]


BAD_INPUTS = [
    ("bad.jsonl", '{"question": "a"}\n{"question": "b",}\n', [], "line 2"),
    ("bad.json", '[{"question": "a"},', [], "bad.json"),
    ("q.txt", "question\nhi\n", [], "q.txt"),
    ("empty.csv", "", [], "empty.csv"),
    ("q.csv", "prompt\nhi\n", [], "columns are: prompt"),
    ("q.csv", "question\nhi\n", ["--question-col", "nope"], "nope"),
]


@pytest.mark.parametrize(("name", "content", "extra", "needle"), BAD_INPUTS)
def test_bad_input_one_line_exit_2_no_output(tmp_path, tiny_model, capsys, monkeypatch, name, content, extra, needle):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    out = tmp_path / "out.xlsx"
    result = run_cli(["generate", str(path), "--model", f"hf:{tiny_model}", *extra, "--db", str(tmp_path / "r.db"),
                      "--out", str(out)], capsys, monkeypatch)
    assert result.code == 2
    assert needle in result.err and "Traceback" not in result.err
    assert not out.exists()


def test_bad_model_adapter_and_out_folder(tmp_path, questions_file, tiny_adapter, other_tiny_model, capsys, monkeypatch):
    cases = [
        (["--model", f"hf:{tmp_path}/missing-model"], "does not exist"),
        (["--model", f"hf:{other_tiny_model}+{tiny_adapter}"], "does not fit base model"),
        (["--model", "gpt4"], "--model 'gpt4'"),
        (["--model", f"hf:{other_tiny_model}", "--out", str(tmp_path / "nofolder" / "o.xlsx")], "does not exist"),
        (["--model", f"hf:{other_tiny_model}", "--out", str(tmp_path / "o.docx")], ".docx"),
        (["--model", f"hf:{other_tiny_model}", "--template", "nope"], "--template"),
    ]
    for args, needle in cases:
        result = run_cli(["generate", str(questions_file), *args, "--db", str(tmp_path / "r.db")], capsys, monkeypatch)
        assert result.code == 2, args
        assert needle in result.err, (args, result.err)
        assert "Traceback" not in result.err
    assert list(tmp_path.glob("o.*")) == []


def test_bad_input_as_a_user_sees_it(tmp_path, tiny_model):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "a"}\nnot json\n', encoding="utf-8")
    result = run_subprocess(["generate", str(path), "--model", f"hf:{tiny_model}", "--out", str(tmp_path / "o.xlsx"),
                             "--db", str(tmp_path / "r.db")])
    assert result.code == 2
    lines = [line for line in result.err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "bad.jsonl" in lines[0] and "line 2" in lines[0]
    assert not (tmp_path / "o.xlsx").exists()


def test_resume_after_kill_9(tmp_path, tiny_model):
    rows = 240
    questions = tmp_path / "q.jsonl"
    questions.write_text("\n".join(json.dumps({"seq": i, "question": f"Question number {i}: why?"})
                                   for i in range(rows)), encoding="utf-8")
    db = tmp_path / "r.db"
    args = [sys.executable, "-m", "reasonry", "generate", str(questions), "--model", f"hf:{tiny_model}",
            "--max-new-tokens", "24", "--batch-size", "4", "--db", str(db), "--json"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done_before = 0
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=1) as conn:
                    done_before = conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
            except sqlite3.OperationalError:
                continue
            if done_before >= 20:
                break
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT COUNT(*) FROM results WHERE error IS NULL").fetchone()[0]
    assert 20 <= stored < rows
    out = tmp_path / "o.jsonl"
    result = run_subprocess(["generate", str(questions), "--model", f"hf:{tiny_model}", "--max-new-tokens", "24",
                             "--batch-size", "4", "--db", str(db), "--json", "--out", str(out)])
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert summary["generated"] == rows - stored and summary["cached"] == stored
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert sorted(int(r["seq"]) for r in lines) == list(range(rows))
    assert all(r["reasoning"] for r in lines)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM results").fetchone()[0] == rows


def test_runs_list_and_show(tmp_path, questions_file, tiny_model, capsys, monkeypatch):
    db = ["--db", str(tmp_path / "r.db")]
    run_id = json.loads(_gen([str(questions_file), *db], capsys, monkeypatch, tiny_model).out)["run_id"]
    listed = run_cli(["runs", *db, "--json"], capsys, monkeypatch)
    assert json.loads(listed.out)[0]["id"] == run_id
    shown = run_cli(["runs", "show", run_id[:15], *db, "--json"], capsys, monkeypatch)
    data = json.loads(shown.out)
    assert data["id"] == run_id and len(data["rows"]) == 4 and data["summary"]["generated"] == 4
    missing = run_cli(["runs", "show", "nope", *db], capsys, monkeypatch)
    assert missing.code == 2 and "not found" in missing.err


def test_python_api(tmp_path, questions_file, tiny_model):
    import reasonry

    summary = reasonry.generate(questions_file, [f"hf:{tiny_model}"], out=tmp_path / "o.csv", db=tmp_path / "r.db",
                                config=reasonry.GenerateConfig(template="alpaca-reasoning",
                                                               params=reasonry.SamplingParams(max_new_tokens=8)))
    assert summary["generated"] == 4
    frame = pd.read_csv(tmp_path / "o.csv", encoding="utf-8-sig")
    assert len(frame) == 4


def test_chat_mode_renders_the_chat_template_and_prefills_think(tmp_path, tiny_model, capsys, monkeypatch):
    questions = tmp_path / "q.csv"
    questions.write_text("question,reasoning\nHow many fruits?,Books are not fruit.\n", encoding="utf-8")
    out = tmp_path / "o.jsonl"
    db = tmp_path / "r.db"
    result = _gen([str(questions), "--chat", "--template", "alpaca-special", "--db", str(db), "--out", str(out)],
                  capsys, monkeypatch, tiny_model)
    assert result.code == 0, result.err
    row = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert row["reasoning"] == "Books are not fruit." and row["error"] is None
    with sqlite3.connect(db) as conn:
        prompt = conn.execute("SELECT prompt FROM requests").fetchone()[0]
    assert prompt == ("<|im_start|>user\nHow many fruits?<|im_end|>\n<|im_start|>assistant\n"
                      "<think>\nBooks are not fruit.\n</think>\n\n")


def test_engine_settings_that_change_outputs_are_part_of_the_cache_key(tmp_path, questions_file, tiny_model, capsys,
                                                                       monkeypatch):
    db = ["--db", str(tmp_path / "r.db")]
    assert json.loads(_gen([str(questions_file), *db], capsys, monkeypatch, tiny_model).out)["generated"] == 4
    same_tokens = json.loads(_gen([str(questions_file), *db, "--batch-size", "2"], capsys, monkeypatch,
                                  tiny_model).out)
    assert same_tokens["cached"] == 4  # the slot count does not change outputs, so it is not in the key
    other_dtype = json.loads(_gen([str(questions_file), *db, "--dtype", "bfloat16"], capsys, monkeypatch,
                                  tiny_model).out)
    assert other_dtype["generated"] == 4


def test_input_columns_named_like_output_columns_are_kept(tmp_path, tiny_model, capsys, monkeypatch):
    questions = tmp_path / "dolly.jsonl"
    questions.write_text("\n".join(json.dumps({"instruction": f"q{i}", "response": f"GOLD{i}", "model": "human"})
                                   for i in range(2)), encoding="utf-8")
    out = tmp_path / "o.jsonl"
    result = _gen([str(questions), "--db", str(tmp_path / "r.db"), "--out", str(out)], capsys, monkeypatch, tiny_model)
    assert result.code == 0, result.err
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["response (input)"] for r in rows] == ["GOLD0", "GOLD1"]
    assert [r["model (input)"] for r in rows] == ["human", "human"]
    assert all(r["model"] == "tiny" for r in rows)


def test_reading_commands_do_not_create_a_database(tmp_path, capsys, monkeypatch):
    missing = tmp_path / "typo.db"
    for args in (["runs", "--db", str(missing)], ["runs", "show", "last", "--db", str(missing)],
                 ["check", "last", "--db", str(missing)]):
        result = run_cli(args, capsys, monkeypatch)
        assert result.code == 2 and "no such database" in result.err
    assert not missing.exists()
