"""The usage ledger: what a run really generated, per model, kept across reruns without double counting."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from reasonry.ledger import parse_prices, with_costs
from reasonry.store import Store
from tests.cli_helpers import run_cli
from tests.conftest import QUESTIONS, write_questions


def _generate(tmp_path: Path, tiny_model: str, capsys, monkeypatch, *extra: str) -> dict:
    questions = write_questions(tmp_path / "q.json", QUESTIONS)
    result = run_cli(["generate", str(questions), "--model", f"hf:{tiny_model}", "--template", "alpaca-vanilla",
                      "--max-new-tokens", "12", "--db", str(tmp_path / "r.db"), "--json", *extra], capsys, monkeypatch)
    assert result.code == 0, result.err
    return json.loads(result.out)


def _results_tokens(db: Path, run_id: str) -> tuple[int, int]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT SUM(prompt_tokens), SUM(completion_tokens) FROM results WHERE key IN "
            "(SELECT request_key FROM run_requests WHERE run_id=?)", (run_id,)).fetchone()


def test_ledger_counts_what_was_generated_and_not_what_came_from_the_cache(tmp_path, tiny_model, capsys,
                                                                           monkeypatch):
    first = _generate(tmp_path, tiny_model, capsys, monkeypatch)
    store = Store(tmp_path / "r.db")
    (model, usage), = store.run_usage(first["run_id"]).items()
    prompt_tokens, completion_tokens = _results_tokens(tmp_path / "r.db", first["run_id"])
    assert usage["requests"] == len(QUESTIONS) and usage["cached"] == 0 and usage["failures"] == 0
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (prompt_tokens, completion_tokens) != (0, 0)
    assert usage["engine_seconds"] > 0

    again = _generate(tmp_path, tiny_model, capsys, monkeypatch)  # everything cached: nothing billed
    rerun = store.run_usage(again["run_id"])[model]
    assert rerun["requests"] == 0 and rerun["prompt_tokens"] == rerun["completion_tokens"] == 0
    assert rerun["cached"] == len(QUESTIONS)
    assert store.run_usage(first["run_id"])[model] == usage  # the first run's ledger is untouched

    refreshed = _generate(tmp_path, tiny_model, capsys, monkeypatch, "--refresh")  # really generated again
    assert store.run_usage(refreshed["run_id"])[model]["requests"] == len(QUESTIONS)

    shown = run_cli(["runs", "show", first["run_id"], "--db", str(tmp_path / "r.db"), "--price", f"{model}=1/2"],
                    capsys, monkeypatch)
    assert shown.code == 0 and "usage" in shown.out and "$" in shown.out
    as_json = run_cli(["runs", "show", first["run_id"], "--db", str(tmp_path / "r.db"), "--json",
                       "--price", "*=1/2"], capsys, monkeypatch)
    cost = json.loads(as_json.out)["usage"][model]["cost"]
    assert cost == pytest.approx((prompt_tokens * 1 + completion_tokens * 2) / 1e6)

    report = tmp_path / "report.html"
    reported = run_cli(["report", first["run_id"], "--db", str(tmp_path / "r.db"), "--out", str(report),
                        "--price", f"{model}=1/2"], capsys, monkeypatch)
    assert reported.code == 0, reported.err
    page = report.read_text(encoding="utf-8")
    assert "Usage (what this run generated" in page and f"<td>{usage['completion_tokens']:,}</td>" in page
    assert f"${cost:.4f}" in page

    folder = tmp_path / "ds"
    exported = run_cli(["export", first["run_id"], "--db", str(tmp_path / "r.db"), "--out", f"{folder}/"],
                       capsys, monkeypatch)
    assert exported.code == 0, exported.err
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "## Usage" in card and f"| {model} | {len(QUESTIONS)} |" in card


def test_a_killed_flush_never_counts_twice(tmp_path):
    """The ledger row is written in the results' transaction: a failure inside it leaves neither behind."""
    from reasonry.store import Usage

    store = Store(tmp_path / "r.db")
    with pytest.raises(RuntimeError), store.transaction():
        store.put_results([{"key": "k1", "text": "x", "completion_tokens": 5}])
        store.add_usage("run", "m", Usage(requests=1, completion_tokens=5))
        raise RuntimeError("killed")
    assert store.run_usage("run") == {} and store.get_result("k1") is None
    store.add_usage("run", "m", Usage(requests=1, completion_tokens=5))
    store.add_usage("run", "m", Usage(requests=2, retries=1, completion_tokens=7))
    assert store.run_usage("run")["m"]["requests"] == 3 and store.run_usage("run")["m"]["completion_tokens"] == 12


def test_price_flags(capsys, monkeypatch, tmp_path):
    assert parse_prices(["gpt-4o-mini=0.15/0.60", "*=1/2"]) == {"gpt-4o-mini": (0.15, 0.6), "*": (1.0, 2.0)}
    rows = with_costs({"a": {"prompt_tokens": 1_000_000, "completion_tokens": 0},
                       "b": {"prompt_tokens": 0, "completion_tokens": 500_000}}, {"a": (2.0, 4.0)})
    assert rows["a"]["cost"] == 2.0 and rows["b"]["cost"] is None and rows["total"]["cost"] == 2.0
    Store(tmp_path / "x.db").close()
    for bad in ("gpt=1", "gpt=a/b", "=1/2", "gpt=-1/2", "gpt=inf/1"):
        result = run_cli(["runs", "show", "last", "--db", str(tmp_path / "x.db"), "--price", bad], capsys, monkeypatch)
        assert result.code == 2 and "--price" in result.err and "Traceback" not in result.err, (bad, result.err)
