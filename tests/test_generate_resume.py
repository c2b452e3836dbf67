"""`kill -9` a real `generate` mid-run; the same command resumes that run under its own id."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.test_debate_resume import _cli, _kill_mid_run, _query


def _args(tiny_model: Path, folder: Path, db: Path) -> list[str]:
    questions = folder / "q.jsonl"
    if not questions.exists():
        questions.write_text("".join(json.dumps({"question": f"Question {i}: why is {i} odd or even?"}) + "\n"
                                     for i in range(40)), encoding="utf-8")
    return ["generate", str(questions), "-m", f"hf:{tiny_model}", "--max-new-tokens", "48", "--batch-size", "2",
            "--db", str(db), "--json"]


def test_kill_9_then_the_same_command_resumes_the_same_run(tiny_model: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "g.db"
    _kill_mid_run(_args(tiny_model, tmp_path, db), db, tmp_path)
    [(killed, status)] = _query(db, "SELECT id, status FROM runs")
    assert status == "running"  # as the killed process left it; shown as interrupted

    resumed = _cli(_args(tiny_model, tmp_path, db), monkeypatch, capsys)
    assert resumed["run_id"] == killed
    assert _query(db, "SELECT id, status FROM runs") == [(killed, "done")]
    assert 0 < resumed["cached"] < 40 and resumed["generated"] + resumed["cached"] == 40

    again = _cli(_args(tiny_model, tmp_path, db), monkeypatch, capsys)  # a finished run is not reopened
    assert again["run_id"] != killed and again["cached"] == 40


def test_a_changed_question_file_starts_a_new_run(tiny_model: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "g.db"
    _kill_mid_run(_args(tiny_model, tmp_path, db), db, tmp_path)
    [(killed,)] = _query(db, "SELECT id FROM runs")
    questions = tmp_path / "q.jsonl"
    questions.write_text(questions.read_text(encoding="utf-8") + json.dumps({"question": "One more?"}) + "\n",
                         encoding="utf-8")
    later = os.stat(questions).st_mtime + 5
    os.utime(questions, (later, later))
    fresh = _cli(_args(tiny_model, tmp_path, db), monkeypatch, capsys)
    assert fresh["run_id"] != killed and fresh["rows"] == 41
