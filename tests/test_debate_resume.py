"""`kill -9` a real debate mid-run; the same command on the same db finishes the same tree, generating only what is missing."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reasonry.cli import main

NODE_COLUMNS = "id, parent_id, round, kind, party, model, position, request_key, reasoning, text, raw_text, error"


def _args(tiny_model: Path, folder: Path, db: Path) -> list[str]:
    (folder / "q.j2").write_text("Ask {{ n }} questions about: {{ str_output_aff }}\n", encoding="utf-8")
    (folder / "a.j2").write_text("{{ instruction }}\n{{ input }}\n### Response:\n", encoding="utf-8")
    (folder / "r.j2").write_text("{{ str_output_aff }}\n### Rebuttals:\n", encoding="utf-8")
    topics = [{"question": "Why do apples fall?", "answer": "Because of gravity."},
              {"question": "Why is the sky blue?", "answer": ""},
              {"question": "Is LUNA a white cat?", "answer": "Yes."}]
    (folder / "topics.json").write_text(json.dumps(topics), encoding="utf-8")
    return ["debate", str(folder / "topics.json"), "--model-a", f"hf:{tiny_model}", "--rounds", "3", "--breadth", "3",
            "--max-nodes", "30", "--max-new-tokens", "24", "--questions-template", str(folder / "q.j2"),
            "--rebuttal-template", str(folder / "r.j2"), "--answer-template", str(folder / "a.j2"),
            "--no-require-question", "--db", str(db), "--json"]


def _cli(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> dict:
    monkeypatch.setattr(sys, "argv", ["reasonry", *args])
    capsys.readouterr()
    try:
        main()
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _query(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def _results(db: Path) -> int:
    try:
        return _query(db, "SELECT COUNT(*) FROM results")[0][0] if db.exists() else 0
    except sqlite3.OperationalError:  # the schema is not created yet
        return 0


def _kill_mid_run(args: list[str], db: Path, cwd: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", "from reasonry.cli import main; main()", *args], cwd=cwd,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and _results(db) < 8:
        time.sleep(0.02)
    assert process.poll() is None, "the debate finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def test_kill_9_then_rerun_finishes_the_same_tree(tiny_model: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    killed_db, reference_db = tmp_path / "killed.db", tmp_path / "reference.db"
    _kill_mid_run(_args(tiny_model, tmp_path, killed_db), killed_db, tmp_path)
    assert _query(killed_db, "SELECT status FROM runs") == [("running",)]
    nodes_before = _query(killed_db, "SELECT COUNT(*) FROM debate_nodes")[0][0]
    done_before = {key for (key,) in _query(killed_db, "SELECT key FROM results WHERE error IS NULL")}

    resumed = _cli(_args(tiny_model, tmp_path, killed_db), monkeypatch, capsys)
    reference = _cli(_args(tiny_model, tmp_path, reference_db), monkeypatch, capsys)

    assert resumed["run_id"] == reference["run_id"]
    assert _query(killed_db, "SELECT status FROM runs") == [("done",)]
    run_keys = {key for (key,) in _query(killed_db, "SELECT DISTINCT request_key FROM run_requests")}
    assert resumed["generated"] == len(run_keys - done_before) < len(run_keys)
    assert resumed["cached"] + resumed["generated"] == resumed["requests"]

    resumed_nodes = _query(killed_db, f"SELECT {NODE_COLUMNS} FROM debate_nodes ORDER BY id")
    reference_nodes = _query(reference_db, f"SELECT {NODE_COLUMNS} FROM debate_nodes ORDER BY id")
    assert nodes_before < len(resumed_nodes) == resumed["nodes"] == reference["nodes"] == 90
    assert resumed_nodes == reference_nodes
    slots = _query(killed_db, "SELECT COUNT(*) FROM (SELECT DISTINCT parent_id, kind, position FROM debate_nodes)")
    assert slots[0][0] == len(resumed_nodes)
