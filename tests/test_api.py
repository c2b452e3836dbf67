"""The public Python API: DataFrame in, Run out, one signature style, errors that name parameters."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from fault_server import FaultServer

import reasonry
from reasonry.errors import ConfigError


def test_generate_check_export_from_a_dataframe(tmp_path: Path) -> None:
    frame = pd.DataFrame({"question": ["Why is the sky blue?", "What is 2+2?"], "topic": ["physics", "math"]})
    db = tmp_path / "r.db"
    with FaultServer() as server:
        run = reasonry.generate(frame, f"openai:fake@{server.url}", template="alpaca-reasoning", chat=True, db=db,
                                max_new_tokens=32, temperature=0.0, engine_options={"max_retries": 0})
    assert isinstance(run, reasonry.Run) and run["generated"] == 2 and run.db == db
    table = run.to_pandas()
    assert list(table["question"]) == list(frame["question"])
    assert all(text.startswith("reasoning ") for text in table["reasoning"])
    assert table["extra"][0] == {"topic": "physics"}

    summary = reasonry.check(run)
    assert isinstance(summary, dict)
    out = tmp_path / "train.jsonl"
    written = reasonry.export(run, out, format="messages")
    assert written["records"] == 2
    first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert first["messages"][0]["content"] == "Why is the sky blue?"


def test_ledger_hygiene_and_a_publishable_folder_from_python(tmp_path: Path) -> None:
    """issue 16 from the Python API: usage with costs, dedup, decontaminate, and an export folder without them."""
    from datasets import load_dataset

    questions = ["Why is the sky blue on a clear summer day?", "Why is the sky blue on a clear summer day ?",
                 "What is the boiling point of water at sea level in degrees Celsius?", "Name three primes."]
    db = tmp_path / "r.db"
    with FaultServer() as server:
        run = reasonry.generate(pd.DataFrame({"question": questions}), f"openai:fake@{server.url}",
                                template="alpaca-reasoning", chat=True, db=db, max_new_tokens=16,
                                engine_options={"max_retries": 0})
    (model, ledger), = reasonry.usage(run, prices={"*": (1.0, 2.0)}).items()
    assert ledger["requests"] == 4 and ledger["failures"] == 0 and ledger["cost"] is not None
    found = reasonry.dedup(run, report=tmp_path / "clusters.jsonl")
    assert found["duplicates"] == 1
    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps({"question": "What is the boiling point of water at sea level in degrees "
                                             "Celsius? Answer briefly."}) + "\n", encoding="utf-8")
    flagged = reasonry.decontaminate(run, bench, ngram=8, report=tmp_path / "contaminated.jsonl")
    assert flagged["contaminated"] == 1
    folder = tmp_path / "dataset"
    written = reasonry.export(run, f"{folder}/", format="alpaca", license="apache-2.0",
                              exclude_marks=("duplicate", "contaminated"))
    assert written["records"] == 2 and written["dropped"] == {"hygiene": 2}
    rows = load_dataset(str(folder), cache_dir=str(tmp_path / "cache"))["train"]
    assert sorted(rows["instruction"]) == sorted([questions[0], questions[3]])


def test_errors_name_parameters_not_flags(tmp_path: Path) -> None:
    frame = pd.DataFrame({"question": ["q"]})
    with pytest.raises(ConfigError, match=r"generate\(\): max_new_tokens must be >= 1"):
        reasonry.generate(frame, "openai:m@http://127.0.0.1:9/v1", db=tmp_path / "r.db", max_new_tokens=0)
    with pytest.raises(ConfigError, match="unknown parameter 'temprature'"):
        reasonry.generate(frame, "openai:m@http://127.0.0.1:9/v1", db=tmp_path / "r.db", temprature=0.5)
    with pytest.raises(ConfigError, match="unknown parameter 'fromat'"):
        reasonry.export("last", tmp_path / "o.jsonl", db=tmp_path / "r.db", fromat="messages")
    with pytest.raises(ConfigError, match="data: give a file path"):
        reasonry.generate(42, "openai:m@http://127.0.0.1:9/v1", db=tmp_path / "r.db")
