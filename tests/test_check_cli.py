"""`reasonry check` and `reasonry report`: flags stored per result, summaries, the HTML page."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

from reasonry.config import ModelSpec, SamplingParams
from reasonry.engines.base import Request, request_key
from reasonry.io.readers import Row
from reasonry.store import Store
from reasonry.tasks.generate import GenerateConfig, generate
from tests.cli_helpers import run_cli

SEED_QUESTION = "Find the square root of 156."
# seed 000: the small model states the answer inside its reasoning
SEED_REASONING = (
    "I calculate the square root of 156 as approximately 12.49. This is done by finding a number that, when "
    "multiplied by itself, equals 156. Using a calculator or other appropriate method, I determine that the "
    "square root of 156 is approximately 12.49. Providing this precise solution"
)
SEED_RESPONSE = "The square root of 156 is approximately 12.49."
CLEAN_REASONING = ("To find a square root I look for a number that multiplied by itself gives the value; I "
                   "compare nearby perfect squares and refine the estimate step by step before answering.")


def make_run(store: Store, items: list[dict[str, Any]], *, produces: str = "reasoning") -> str:
    """A stored generate run from known texts. Item keys: question, input, reasoning, response, model,
    sample (default 0), row (default its position), finish_reason, error."""
    models = list(dict.fromkeys(item.get("model", "m1") for item in items))
    run_id = store.create_run("generate", source="known.json", config={"samples": 2},
                              models=[(m, f"hf:{m}") for m in models])
    rows: dict[int, Row] = {}
    entries, requests, results = [], [], []
    params = SamplingParams()
    for position, item in enumerate(items):
        index = item.get("row", position)
        rows[index] = Row(index, str(index + 1), item["question"], item.get("input", ""), None, None)
        model = item.get("model", "m1")
        sample = item.get("sample", 0)
        prompt = f"{index}|{item['question']}|{item.get('input', '')}"
        key = request_key(ModelSpec("hf", model), prompt, None, None, params, sample)
        entries.append((index, model, sample, key, ""))
        requests.append((Request(key=key, params=params, prompt=prompt, sample_index=sample), "hf", model, None,
                         produces))
        results.append({"key": key, "text": f"{item.get('reasoning')}\n{item.get('response')}",
                        "reasoning": item.get("reasoning"), "response": item.get("response"),
                        "finish_reason": item.get("finish_reason", "stop"), "error": item.get("error"),
                        "completion_tokens": 10, "latency_s": 0.5})
    store.add_inputs(run_id, [rows[i] for i in sorted(rows)])
    store.add_requests(run_id, entries, requests)
    store.put_results(results)
    store.finish_run(run_id, "done", {"run_id": run_id})
    return run_id


def _flags(db: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM flags ORDER BY key, name")]


def test_check_on_a_real_tiny_model_run(tmp_path, questions_file, tiny_model, capsys, monkeypatch):
    db = tmp_path / "r.db"
    config = GenerateConfig(template="alpaca-reasoning", samples=2,
                            params=SamplingParams(max_new_tokens=24, temperature=0.7))
    summary = generate(questions_file, [f"hf:{tiny_model}"], db=db, config=config)
    run_id = summary["run_id"]
    result = run_cli(["check", run_id[:10], "--db", str(db), "--json"], capsys, monkeypatch)
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["run_id"] == run_id and report["checked"] == 8 and report["skipped"] == 0
    (model, entry), = report["models"].items()
    assert entry["n"] == 8
    stored = _flags(db)
    store = Store(db)
    keys = {r["request_key"] for r in store.run_records(run_id)}
    assert {f["key"] for f in stored} <= keys
    for name, count in entry["counts"].items():  # the summary counts what is stored
        assert count == len({f["key"] for f in stored if f["name"] == name})
        assert abs(entry["rates"][name] - count / 8) < 1e-9
    assert entry["flagged"] == len({f["key"] for f in stored})
    reasonings = {r["request_key"]: r["reasoning"] or "" for r in store.run_records(run_id)}
    for flag in stored:
        assert flag["reason"]
        if flag["start"] is not None:
            assert reasonings[flag["key"]][flag["start"]:flag["end"]] == flag["span"]
    # the table view
    table = run_cli(["check", run_id, "--db", str(db)], capsys, monkeypatch)
    assert table.code == 0 and model in table.out and "8 results checked" in table.err


def test_leakage_of_the_seed_reasoning_is_flagged_with_its_span(tmp_path, capsys, monkeypatch):
    db = tmp_path / "r.db"
    store = Store(db)
    run_id = make_run(store, [
        {"question": SEED_QUESTION, "reasoning": SEED_REASONING, "response": SEED_RESPONSE},
        {"question": SEED_QUESTION, "reasoning": CLEAN_REASONING, "response": SEED_RESPONSE, "row": 1},
        {"question": "Broken", "reasoning": None, "response": None, "error": "timeout", "row": 2},
    ])
    result = run_cli(["check", run_id, "--db", str(db), "--json"], capsys, monkeypatch)
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert summary["checked"] == 2 and summary["skipped"] == 1
    assert summary["models"]["m1"]["counts"]["leakage"] == 1
    (leak,) = [f for f in _flags(db) if f["name"] == "leakage"]
    assert "12.49" in leak["span"] and SEED_REASONING[leak["start"]:leak["end"]] == leak["span"]
    assert "12.49" in leak["reason"]
    assert summary["examples"][0]["name"] == "leakage" and summary["examples"][0]["row_id"] == "1"

    # --language ja: English reasoning is the wrong language; a re-check replaces the flags
    again = json.loads(run_cli(["check", run_id, "--db", str(db), "--language", "ja", "--json"],
                               capsys, monkeypatch).out)
    assert again["models"]["m1"]["counts"]["language"] == 2
    assert again["settings"] == {"expected_language": "ja"}
    names = sorted(f["name"] for f in _flags(db))
    assert names.count("leakage") == 1 and names.count("language") == 2
    third = json.loads(run_cli(["check", run_id, "--db", str(db), "--json"], capsys, monkeypatch).out)
    assert third["models"]["m1"]["counts"]["language"] == 0
    assert [f["name"] for f in _flags(db)] == ["leakage"]


def test_thresholds_map_to_check_config(tmp_path, capsys, monkeypatch):
    db = tmp_path / "r.db"
    store = Store(db)
    looping = "I check the numbers again. " * 8
    run_id = make_run(store, [{"question": "Add 2 and 3.", "reasoning": looping, "response": "5"}])
    flagged = json.loads(run_cli(["check", run_id, "--db", str(db), "--json"], capsys, monkeypatch).out)
    assert flagged["models"]["m1"]["counts"]["repetition"] == 1
    relaxed = json.loads(run_cli(["check", run_id, "--db", str(db), "--repetition-max-repeats", "50",
                                  "--set", "repetition_line_repeats=50", "--json"], capsys, monkeypatch).out)
    assert relaxed["models"]["m1"]["counts"]["repetition"] == 0
    assert relaxed["settings"] == {"repetition_max_repeats": 50, "repetition_line_repeats": 50}
    bad = run_cli(["check", run_id, "--db", str(db), "--set", "no_such=1"], capsys, monkeypatch)
    assert bad.code == 2 and "no_such" in bad.err and "Traceback" not in bad.err
    missing = run_cli(["check", "nope", "--db", str(db)], capsys, monkeypatch)
    assert missing.code == 2 and "not found" in missing.err


def test_report_is_escaped_self_contained_and_shows_stored_flags(tmp_path, capsys, monkeypatch):
    db = tmp_path / "r.db"
    store = Store(db)
    evil = "I think <script>alert(1)</script> then " + SEED_REASONING
    run_id = make_run(store, [
        {"question": SEED_QUESTION, "reasoning": evil, "response": SEED_RESPONSE},
        {"question": "Q2 <b>bold</b>", "reasoning": CLEAN_REASONING, "response": "fine", "model": "m2"},
    ])
    out = tmp_path / "report.html"
    result = run_cli(["report", run_id, "--db", str(db), "--out", str(out), "--json"], capsys, monkeypatch)
    assert result.code == 0, result.err
    page = out.read_text(encoding="utf-8")
    lowered = page.lower()
    assert "<script" not in lowered and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not re.search(r"(src|href)\s*=\s*[\"']?https?:", lowered) and "https://" not in page
    assert "leakage" in page and "m1" in page and "m2" in page
    assert _flags(db), "report checks a never-checked run and stores its flags"
    wrong = run_cli(["report", run_id, "--db", str(db), "--out", str(tmp_path / "r.txt")], capsys, monkeypatch)
    assert wrong.code == 2 and ".html" in wrong.err


def test_results_outside_a_partial_check_are_checked_before_use(tmp_path, questions_file, tiny_model, tiny_adapter):
    from reasonry.tasks.check import check_run, records_with_flags, unchecked_keys

    db = tmp_path / "r.db"
    summary = generate(questions_file, [f"hf:{tiny_model}", f"hf:{tiny_model}+{tiny_adapter}"], db=db,
                       config=GenerateConfig(params=SamplingParams(max_new_tokens=8)))
    store = Store(db)
    run_id = summary["run_id"]
    check_run(store, run_id, models=["tiny"])
    keys = [r["request_key"] for r in store.run_records(run_id)]
    assert len(unchecked_keys(store, keys)) == 4  # the adapter model's results were not part of it
    records = records_with_flags(store, run_id)
    assert len(records) == 8 and unchecked_keys(store, keys) == set()
