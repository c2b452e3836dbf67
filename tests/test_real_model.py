"""End to end on a real model (SmolLM2-135M-Instruct, built from its wheel by the `smollm2_path` fixture).

Greedy decoding and short outputs keep the module to about a minute or two on 2 cores. The assertions are what a
user relies on — rows complete, sections found, flags on the leaks the model really writes, an adapter that
changes the output — never the exact text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cli_helpers import cli_json
from conftest import write_questions

from reasonry.quality import detect_language

MODEL_LABEL = "SmolLM2-135M-Instruct"
GREEDY = ["--temperature", "0", "--max-new-tokens", "40"]
QUESTIONS = [
    {"seq": 1, "question": "What is 10 times 6?", "input": "", "reference": "60"},
    {"seq": 2, "question": "What is the capital of France?", "input": "", "reference": "Paris"},
    {"seq": 3, "question": "アンリはリンゴを3個、ジャックは梨を4個持っています。果物は全部で何個ですか？", "input": "",
     "reference": "7個"},
]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("real")
    write_questions(folder / "questions.json", QUESTIONS)
    return folder


@pytest.fixture(scope="module")
def model(smollm2_path: Path) -> str:
    return f"hf:{smollm2_path}"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _generate(work: Path, model: str, out: str, *flags: str) -> tuple[dict, list[dict]]:
    summary = cli_json("generate", str(work / "questions.json"), "--model", model, *GREEDY, *flags,
                       "--db", str(work / "real.db"), "--out", str(work / out), "--json")
    return summary, _rows(work / out)


@pytest.fixture(scope="module")
def raw_run(work: Path, model: str) -> tuple[dict, list[dict]]:
    """The seed's raw Phi-2 prompt (no chat template): the model writes its reasoning after <|reasoning|>."""
    return _generate(work, model, "raw.jsonl", "--template", "phi2", "--role", "logician")


def _complete(summary: dict, rows: list[dict], column: str) -> None:
    assert summary["rows"] == len(QUESTIONS) and summary["failed"] == 0 and summary["generated"] == len(QUESTIONS)
    assert [row["seq"] for row in rows] == [1, 2, 3]  # integer ids stay integers in jsonl
    for row, question in zip(rows, QUESTIONS, strict=True):
        assert row["question"] == question["question"]
        assert row["model"] == MODEL_LABEL and row["error"] is None
        assert row["finish_reason"] in ("stop", "length") and 0 < row["completion_tokens"] <= 40
        assert isinstance(row[column], str) and row[column].strip(), row
        assert "<|im_end|>" not in row[column]


def test_raw_template_rows_are_complete(raw_run) -> None:
    summary, rows = raw_run
    _complete(summary, rows, "reasoning")


def test_chat_template_writes_english_responses(work: Path, model: str) -> None:
    summary, rows = _generate(work, model, "chat.jsonl", "--chat", "--role", "logician")
    _complete(summary, rows, "response")
    assert all(row["reasoning"] is None for row in rows)
    for row in rows[:2]:
        assert detect_language(row["response"])[0] == "en", row["response"]


def test_check_and_report_flag_the_leaks_the_model_writes(raw_run, work: Path) -> None:
    summary, rows = raw_run
    check = cli_json("check", summary["run_id"], "--db", str(work / "real.db"), "--json")
    assert check["checked"] == len(QUESTIONS)
    flags = {(example["row_id"], example["name"]) for example in check["examples"]}
    # A reasoning that states the reference answer is the seed's leakage; the 135M model does it on plain facts.
    leaks = [str(row["seq"]) for row, question in zip(rows, QUESTIONS, strict=True)
             if re.search(rf"(?<!\w){re.escape(question['reference'])}(?!\w)", row["reasoning"], re.IGNORECASE)]
    assert leaks, [row["reasoning"] for row in rows]
    for seq in leaks:
        assert (seq, "leakage") in flags, (seq, check["examples"])
    counts = check["models"][MODEL_LABEL]["counts"]
    assert counts["leakage"] >= len(leaks)
    report = cli_json("report", summary["run_id"], "--db", str(work / "real.db"), "--out", str(work / "report.html"),
                      "--json")
    html = (work / "report.html").read_text(encoding="utf-8")
    assert report["records"] == len(QUESTIONS) and "leakage" in html and "What is 10 times 6?" in html


def test_steering_modes(work: Path, model: str) -> None:
    db = str(work / "steer.db")
    ask = ["steer", "ask", "What is 10 times 6?", "--model", model, *GREEDY, "--db", db, "--json"]
    reasoning = cli_json(*ask, "--mode", "reasoning")
    assert reasoning["mode"] == "reasoning" and reasoning["reasoning"].strip() and reasoning["model"] == MODEL_LABEL
    vanilla = cli_json(*ask, "--mode", "vanilla")
    assert vanilla["mode"] == "vanilla" and vanilla["response"].strip() and vanilla["reasoning"] is None
    given = "Ten groups of six make sixty."
    special = cli_json(*ask, "--reasoning", given)
    assert special["mode"] == "special" and special["reasoning"] == given and special["response"].strip()
    assert len({reasoning["thread"], vanilla["thread"], special["thread"]}) == 3


def test_one_debate_round(work: Path, model: str) -> None:
    tree_path = work / "tree.json"
    summary = cli_json("debate", "run", "--question", "What is 10 times 6?", "--answer", "10 times 6 is 60.",
                       "--model-a", model, "--rounds", "1", "--breadth", "2", *GREEDY, "--db", str(work / "debate.db"),
                       "--out-tree", str(tree_path), "--json")
    assert summary["failed"] == 0 and summary["by_kind"]["root"] == 1
    challenges = summary["by_kind"].get("question", 0) + summary["by_kind"].get("rebuttal", 0)
    assert challenges >= 1 and summary["nodes"] == sum(summary["by_kind"].values())

    def walk(node: dict) -> list[dict]:
        return [node] + [n for child in node.get("children", []) for n in walk(child)]

    nodes = [n for topic in json.loads(tree_path.read_text(encoding="utf-8")) for n in walk(topic)]
    generated = [n for n in nodes if n["model"] == MODEL_LABEL]
    assert len(generated) == summary["generated"] >= 2
    for node in generated:  # a reply that cannot be parsed keeps the model's text and says what is missing
        assert node["raw_text"].strip()
        assert node["text"] or node["error"], node
        if node["kind"] == "answer" and not node["text"]:
            assert "section" in node["error"] and node["reasoning"], node


def test_export_train_and_generate_with_the_adapter(raw_run, work: Path, model: str) -> None:
    summary, base_rows = raw_run
    data = work / "sft.jsonl"
    from typer.testing import CliRunner

    from reasonry.cli import app

    cut = CliRunner().invoke(app, ["export", summary["run_id"], "--db", str(work / "real.db"), "--format",
                                   "alpaca-special", "--out", str(data)])  # 40 tokens of reasoning, never a response
    assert "3 by no response" in str(cut.exception) and not data.exists()  # main() prints it as one line, exit 2
    chat_run, _ = _generate(work, model, "chat-sft.jsonl", "--chat", "--template", "alpaca-reasoning")
    export = cli_json("export", chat_run["run_id"], "--db", str(work / "real.db"), "--format", "alpaca",
                      "--out", str(data), "--json")
    assert export["records"] == len(QUESTIONS)
    adapter = work / "adapter"
    trained = cli_json("train", str(data), "--base", model, "--out", str(adapter), "--max-steps", "2", "--lr", "1e-2",
                       "--lora-r", "8", "--target-modules", "attention", "--batch-size", "3", "--max-seq-len", "160",
                       "--seed", "1", "--json")
    assert trained["steps"] == 2 and (adapter / "adapter_model.safetensors").exists()
    _, tuned_rows = _generate(work, f"{model}+{adapter}", "tuned.jsonl", "--template", "phi2", "--role", "logician")
    assert [row["seq"] for row in tuned_rows] == [1, 2, 3] and all(row["error"] is None for row in tuned_rows)
    assert [row["reasoning"] for row in tuned_rows] != [row["reasoning"] for row in base_rows]


def test_text_cut_inside_a_character_does_not_end_in_a_replacement_character(smollm2_path: Path) -> None:
    from reasonry.config import SamplingParams, parse_model_spec
    from reasonry.engines.base import Request
    from reasonry.engines.registry import load_engine

    prompt = "日本の首都について日本語で説明してください。答え："
    with load_engine(parse_model_spec(f"hf:{smollm2_path}")) as engine:
        results = list(engine.generate([Request(key=str(n), params=SamplingParams(max_new_tokens=n, temperature=0),
                                                prompt=prompt) for n in range(1, 9)]))
    assert any("\ufffd" in r.raw_text for r in results)  # some limits do cut a character in two
    assert all(r.finish_reason == "length" and not r.text.endswith("\ufffd") for r in results)
