"""The store package: named migrations, chunked key queries, typed records, reading commands create nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from cli_helpers import run_cli

from reasonry.store import MIGRATIONS, RunRecord, Store
from reasonry.store.migrations import statements


def test_an_older_database_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for number, (_name, script) in enumerate(MIGRATIONS[:2], start=1):
        for statement in statements(script):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version={number}")
    conn.execute("INSERT INTO results (key, text, created_at) VALUES ('k', 'kept', 0)")
    conn.commit()
    conn.close()

    store = Store.existing(path)
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert store.get_result("k").text == "kept"  # type: ignore[union-attr]
    store.put_results([{"key": "k", "error": "timeout"}])
    assert store.get_result("k").text == "kept" and store.attempts("k")[0]["error"] == "timeout"  # type: ignore[union-attr]
    store.close()


def test_key_queries_go_past_sqlites_parameter_limit(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.db")
    keys = [f"k{i}" for i in range(2500)]
    store.put_results([{"key": k, "text": "t"} for k in keys[::2]] + [{"key": k, "error": "e"} for k in keys[1::2]])
    assert store.done_keys(keys) == set(keys[::2])
    store.replace_flags(keys, [(k, "length", "long", None, None, None) for k in keys[:1200]])
    assert store.checked_keys(keys) == set(keys)
    assert len(store.flag_rows(keys)) == 1200
    store.close()


def test_run_records_carry_the_reasoning_rule() -> None:
    given = RunRecord({"reasoning": None, "given_reasoning": "from the file"})
    generated = RunRecord({"reasoning": "generated", "given_reasoning": "from the file"})
    assert given.final_reasoning == "from the file" and generated.final_reasoning == "generated"


@pytest.mark.parametrize("args", [["steer", "history"], ["steer", "accept", "1"], ["debate", "show", "last"],
                                  ["debate", "export", "last", "--out", "x.jsonl"]])
def test_reading_commands_never_create_a_database(tmp_path: Path, args: list[str],
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "typo.db"
    monkeypatch.chdir(tmp_path)
    result = run_cli([*args, "--db", str(missing)], capsys, monkeypatch)
    assert result.code == 2 and "no such database" in result.out + result.err
    assert not missing.exists()


def test_a_run_of_another_kind_is_refused_by_name(tmp_path: Path, capsys, monkeypatch) -> None:
    db = tmp_path / "k.db"
    store = Store(db)
    run = store.create_run("generate", source=None, config={})
    store.finish_run(run, "done", {})
    with pytest.raises(Exception, match=f"run {run} is a generate run, not a steer-batch run"):
        store.resolve_run(run[:12], "steer-batch")
    with pytest.raises(Exception, match="no steer-batch runs in"):
        store.resolve_run("last", "steer-batch")
    store.close()
    shown = run_cli(["steer", "batch-show", run, "--db", str(db)], capsys, monkeypatch)
    assert shown.code == 2 and "is a generate run, not a steer-batch run" in shown.err and "Traceback" not in shown.err
    debate = Store(db).create_run("debate", source=None, config={})
    for args in (["export", debate, "--out", str(tmp_path / "x.jsonl")], ["report", debate, "--out",
                 str(tmp_path / "r.html")], ["check", debate], ["export", "--debate", run, "--out",
                 str(tmp_path / "x.jsonl")]):
        refused = run_cli([*args, "--db", str(db)], capsys, monkeypatch)
        assert refused.code == 2 and " run, not a " in refused.err, args
    assert "for a debate use --debate" in run_cli(["export", debate, "--out", str(tmp_path / "x.jsonl"), "--db",
                                                    str(db)], capsys, monkeypatch).err
