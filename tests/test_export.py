"""`reasonry export`: every format, exact seed layout, datasets/TRL compatibility, DPO pairs, filters, card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from datasets import load_dataset

from reasonry.debate.tree import Node, NodeWriter
from reasonry.io.readers import Row
from reasonry.store import Store
from reasonry.tasks.steer import accept, record_version
from tests.cli_helpers import run_cli
from tests.test_check_cli import CLEAN_REASONING, SEED_QUESTION, SEED_REASONING, SEED_RESPONSE, make_run

# Copied verbatim from seed 003 (alpaca_prompt_special).
ALPACA_PROMPT_SPECIAL = """Below is an instruction that describes a task, paired with an input that provides further context. You should write a response that appropriately completes the request.
To improve quality of response, you should perform validation before writing. You should create REASONING for validation in advance, and improve the response if necessary.

### Instruction:
{}

### Input:
{}

### Reasoning:
{}

### Response:
"""

KEYWORD_Q = "Given a text, find the most relevant keyword to describe it"
KEYWORD_INPUT = "A wind turbine is a device that converts wind energy into electrical energy."
KEYWORD_REASONING = "The text talks about a device and the energy it converts; the main subject is the device."
KEYWORD_RESPONSE = "Wind turbine."
JA_Q = "アンリはリンゴを3個、ジャックは梨を4個持っています。果物は全部で何個ですか？"
JA_REASONING = "リンゴと梨はどちらも果物なので、それぞれの個数を足し合わせる必要があります。"
JA_RESPONSE = "果物は全部で7個です。"

ITEMS = [
    {"question": KEYWORD_Q, "input": KEYWORD_INPUT, "reasoning": KEYWORD_REASONING, "response": KEYWORD_RESPONSE},
    {"question": JA_Q, "reasoning": JA_REASONING, "response": JA_RESPONSE, "model": "m2"},
    {"question": SEED_QUESTION, "reasoning": SEED_REASONING, "response": SEED_RESPONSE},
]
SFT_FORMATS = ["alpaca-special", "alpaca", "messages", "sharegpt", "prompt-completion", "conversational"]


@pytest.fixture
def run_db(tmp_path: Path) -> tuple[Path, str]:
    db = tmp_path / "r.db"
    return db, make_run(Store(db), ITEMS)


def _export(args: list[str], capsys, monkeypatch) -> dict[str, Any]:
    result = run_cli(["export", *args, "--json"], capsys, monkeypatch)
    assert result.code == 0, result.err
    return json.loads(result.out)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_alpaca_special_text_is_the_seed_layout_to_the_character(run_db, tmp_path, capsys, monkeypatch):
    db, run_id = run_db
    out = tmp_path / "data" / "sft.jsonl"
    out.parent.mkdir()
    summary = _export([run_id, "--db", str(db), "--format", "alpaca-special", "--out", str(out)], capsys, monkeypatch)
    assert summary["records"] == 3 and summary["models"] == {"m1": 2, "m2": 1}
    records = _lines(out)
    for record, item in zip(records, ITEMS, strict=True):
        expected = ALPACA_PROMPT_SPECIAL.format(item["question"], item.get("input", ""), item["reasoning"])
        assert record["text"] == expected + item["response"]
        assert (record["instruction"], record["input"], record["reasoning"], record["response"]) == (
            item["question"], item.get("input", ""), item["reasoning"], item["response"])
    assert records[1]["text"].count("### Input:\n\n\n### Reasoning:") == 1  # empty input, as the seed formats it
    card = (out.parent / "README.md").read_text(encoding="utf-8")
    assert "**records**: 3" in card and "`alpaca-special`" in card and run_id in card
    assert "| m1 | 2 |" in card and "| m2 | 1 |" in card
    dataset = load_dataset("json", data_files=str(out), split="train")
    assert len(dataset) == 3 and dataset[0]["text"] == records[0]["text"]


@pytest.mark.parametrize("fmt", SFT_FORMATS)
def test_every_format_loads_with_datasets(fmt, run_db, tmp_path, capsys, monkeypatch):
    db, run_id = run_db
    out = tmp_path / f"{fmt}.jsonl"
    _export([run_id, "--db", str(db), "--format", fmt, "--out", str(out)], capsys, monkeypatch)
    dataset = load_dataset("json", data_files=str(out), split="train")
    assert len(dataset) == 3
    first = dataset[0]
    keyword_user = f"{KEYWORD_Q}\n\n{KEYWORD_INPUT}"
    if fmt == "alpaca":
        assert first == {"instruction": KEYWORD_Q, "input": KEYWORD_INPUT, "reasoning": KEYWORD_REASONING,
                         "output": KEYWORD_RESPONSE}
    elif fmt == "messages":
        user = {k: v for k, v in first["messages"][0].items() if v is not None}
        assert user == {"role": "user", "content": keyword_user}
        assert first["messages"][1] == {"role": "assistant", "content": KEYWORD_RESPONSE,
                                        "reasoning_content": KEYWORD_REASONING}
    elif fmt == "sharegpt":
        assert [t["from"] for t in first["conversations"]] == ["human", "gpt"]
        assert first["conversations"][1]["reasoning"] == KEYWORD_REASONING
    elif fmt == "prompt-completion":
        special = ALPACA_PROMPT_SPECIAL.format(KEYWORD_Q, KEYWORD_INPUT, KEYWORD_REASONING) + KEYWORD_RESPONSE
        assert first["prompt"] + first["completion"] == special
        assert first["prompt"].endswith("### Reasoning:\n")
        assert first["completion"] == f"{KEYWORD_REASONING}\n\n### Response:\n{KEYWORD_RESPONSE}"
    elif fmt == "conversational":
        assert first["messages"] == [
            {"role": "user", "content": keyword_user},
            {"role": "assistant", "content": f"<think>\n{KEYWORD_REASONING}\n</think>\n\n{KEYWORD_RESPONSE}"}]


def test_think_style_json_and_parquet_outputs(run_db, tmp_path, capsys, monkeypatch):
    db, run_id = run_db
    think = tmp_path / "think.json"
    _export([run_id, "--db", str(db), "--format", "messages", "--reasoning-style", "think", "--system", "Be brief.",
             "--out", str(think)], capsys, monkeypatch)
    rows = json.loads(think.read_text(encoding="utf-8"))
    assert rows[0]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert rows[0]["messages"][2]["content"].startswith(f"<think>\n{KEYWORD_REASONING}\n</think>\n\n")
    assert "reasoning_content" not in rows[0]["messages"][2]
    parquet = tmp_path / "conv.parquet"
    _export([run_id, "--db", str(db), "--format", "conversational", "--out", str(parquet)], capsys, monkeypatch)
    dataset = load_dataset("parquet", data_files=str(parquet), split="train")
    assert dataset[1]["messages"][1]["content"].endswith(JA_RESPONSE)
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temp files


def test_trl_formats_pass_trl_dataset_handling(run_db, tmp_path, tiny_model, capsys, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    db, run_id = run_db
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    cases = [("prompt-completion", []), ("prompt-completion", ["--chat"]), ("conversational", []),
             ("alpaca-special", [])]
    for i, (fmt, extra) in enumerate(cases):
        out = tmp_path / f"trl{i}.jsonl"
        _export([run_id, "--db", str(db), "--format", fmt, *extra, "--out", str(out)], capsys, monkeypatch)
        dataset = load_dataset("json", data_files=str(out), split="train")
        if fmt == "alpaca-special":
            dataset = dataset.select_columns(["text"])
        assert is_conversational(dataset[0]) == (fmt == "conversational" or bool(extra))
        if is_conversational(dataset[0]):
            rendered = maybe_apply_chat_template(dataset[0], tokenizer)
            assert "<|im_start|>assistant" in "".join(str(v) for v in rendered.values())
        args = SFTConfig(output_dir=str(tmp_path / f"o{i}"), max_steps=1, per_device_train_batch_size=2,
                         report_to="none", use_cpu=True, save_strategy="no", activation_checkpointing=False,
                         max_length=256, dataloader_pin_memory=False, disable_tqdm=True)
        trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model), args=args,
                             train_dataset=dataset, processing_class=tokenizer)
        assert trainer.train().global_step == 1
        capsys.readouterr()  # the trainer prints its metrics


def _steer_db(db: Path) -> Store:
    store = Store(db)
    common = {"params": {}, "seconds": 1.0, "raw_text": None}
    first = record_version(store, thread="t1", parent_id=None, model="phi", mode="reasoning",
                           question="How many fruits are there?", input_text="3 apples, 4 pears, 5 books",
                           reasoning="Books are fruit too, so 3 + 4 + 5.", response="12 fruits.", **common)
    edited = record_version(store, thread="t1", parent_id=first.id, model="phi", mode="special",
                            question=first.question, input_text=first.input,
                            reasoning="Books are not fruit, so only apples and pears count: 3 + 4.",
                            response="7 fruits.", edited=True, **common)
    accept(store, edited.id)
    same = record_version(store, thread="t2", parent_id=None, model="phi", mode="reasoning", question="Say hi.",
                          input_text="", reasoning="A greeting is wanted here.", response="Hi.", **common)
    again = record_version(store, thread="t2", parent_id=same.id, model="phi", mode="special", question="Say hi.",
                           input_text="", reasoning="A greeting is wanted.", response="Hi.", **common)
    accept(store, again.id)  # same response as the original: no pair
    return store


def test_dpo_pairs_from_steering_versions(tmp_path, capsys, monkeypatch):
    db = tmp_path / "s.db"
    _steer_db(db)
    out = tmp_path / "dpo.jsonl"
    summary = _export(["--steering", "--db", str(db), "--format", "dpo", "--out", str(out)], capsys, monkeypatch)
    assert summary["records"] == 1
    (pair,) = _lines(out)
    assert pair["prompt"] == ("Below is an instruction that describes a task" + pair["prompt"].split(
        "Below is an instruction that describes a task", 1)[1])
    assert "### Instruction:\nHow many fruits are there?\n\n### Input:\n3 apples, 4 pears, 5 books\n" in pair["prompt"]
    assert pair["chosen"] == "Books are not fruit, so only apples and pears count: 3 + 4.\n\n### Response:\n7 fruits."
    assert pair["rejected"] == "Books are fruit too, so 3 + 4 + 5.\n\n### Response:\n12 fruits."
    chat = tmp_path / "dpo-chat.jsonl"
    _export(["--steering", "--db", str(db), "--format", "dpo", "--chat", "--out", str(chat)], capsys, monkeypatch)
    from trl.data_utils import is_conversational

    dataset = load_dataset("json", data_files=str(chat), split="train")
    row = dataset[0]
    assert is_conversational(row) and row["prompt"][0]["role"] == "user"
    assert row["chosen"][0]["content"].endswith("7 fruits.") and row["rejected"][0]["content"].endswith("12 fruits.")


def test_steering_sft_filters(tmp_path, capsys, monkeypatch):
    db = tmp_path / "s.db"
    _steer_db(db)
    everything = _export(["--steering", "--db", str(db), "--format", "alpaca", "--out", str(tmp_path / "a.jsonl")],
                         capsys, monkeypatch)
    assert everything["records"] == 4
    accepted = _export(["--steering", "--accepted-only", "--db", str(db), "--format", "alpaca",
                        "--out", str(tmp_path / "b.jsonl")], capsys, monkeypatch)
    assert accepted["records"] == 2 and accepted["dropped"] == {"not accepted": 2}
    assert {r["output"] for r in _lines(tmp_path / "b.jsonl")} == {"7 fruits.", "Hi."}
    record_version(Store(db), thread="t3", parent_id=None, model="phi", mode="reasoning", question=SEED_QUESTION,
                   input_text="", reasoning=SEED_REASONING, response=SEED_RESPONSE, params={}, seconds=1.0,
                   raw_text=None)
    clean = _export(["--steering", "--exclude-flag", "leakage", "--db", str(db), "--format", "alpaca",
                     "--out", str(tmp_path / "c.jsonl")], capsys, monkeypatch)
    assert clean["records"] == 4 and clean["dropped"] == {"flag:leakage": 1}


def test_dpo_pairs_from_flagged_and_unflagged_samples(tmp_path, capsys, monkeypatch):
    db = tmp_path / "r.db"
    run_id = make_run(Store(db), [
        {"question": SEED_QUESTION, "reasoning": SEED_REASONING, "response": SEED_RESPONSE, "sample": 0, "row": 0},
        {"question": SEED_QUESTION, "reasoning": CLEAN_REASONING, "response": SEED_RESPONSE, "sample": 1, "row": 0},
        {"question": KEYWORD_Q, "input": KEYWORD_INPUT, "reasoning": KEYWORD_REASONING, "response": KEYWORD_RESPONSE,
         "sample": 0, "row": 1},
        {"question": KEYWORD_Q, "input": KEYWORD_INPUT, "reasoning": KEYWORD_REASONING + " Checked.",
         "response": KEYWORD_RESPONSE, "sample": 1, "row": 1},
    ])
    out = tmp_path / "dpo.jsonl"
    summary = _export([run_id, "--db", str(db), "--format", "dpo", "--exclude-flag", "leakage", "--out", str(out)],
                      capsys, monkeypatch)
    assert summary["records"] == 1  # the keyword row has no flagged sample
    (pair,) = _lines(out)
    assert pair["chosen"].startswith(CLEAN_REASONING) and pair["rejected"].startswith(SEED_REASONING)
    assert pair["rejected_flags"] == "leakage" and pair["chosen_id"] == "1#2" and pair["rejected_id"] == "1"
    assert "### Instruction:\nFind the square root of 156.\n" in pair["prompt"]
    assert len(load_dataset("json", data_files=str(out), split="train")) == 1


def test_run_filters_and_their_counts(run_db, tmp_path, capsys, monkeypatch):
    db, run_id = run_db
    out = tmp_path / "f.jsonl"
    no_leaks = _export([run_id, "--db", str(db), "--exclude-flag", "leakage", "--out", str(out)], capsys, monkeypatch)
    assert no_leaks["records"] == 2 and no_leaks["dropped"] == {"flag:leakage": 1}
    assert SEED_REASONING not in out.read_text(encoding="utf-8")
    card = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "exclude_flag = ['leakage']" in card and "1 (flag:leakage)" in card
    only_m2 = _export([run_id, "--db", str(db), "--model", "m2", "--out", str(out)], capsys, monkeypatch)
    assert only_m2["records"] == 1 and only_m2["models"] == {"m2": 1} and only_m2["dropped"] == {"model": 2}
    long_only = _export([run_id, "--db", str(db), "--min-chars", "60", "--out", str(out)], capsys, monkeypatch)
    assert long_only["records"] == 2 and long_only["dropped"] == {"min-chars": 1}
    assert JA_REASONING not in out.read_text(encoding="utf-8")


def test_a_record_without_a_response_is_not_training_data(tmp_path, capsys, monkeypatch):
    db = tmp_path / "n.db"
    run_id = make_run(Store(db), [*ITEMS, {"question": "What is 2+3?", "reasoning": "Two plus three.", "response": None}])
    out = tmp_path / "n.jsonl"
    for fmt in SFT_FORMATS:
        summary = _export([run_id, "--db", str(db), "--format", fmt, "--out", str(out)], capsys, monkeypatch)
        assert summary["records"] == 3 and summary["dropped"] == {"no response": 1}, fmt
    checked = run_cli(["check", run_id, "--db", str(db), "--json"], capsys, monkeypatch)
    assert checked.code == 0 and json.loads(checked.out)["models"]["m1"]["counts"]["truncated"] == 1


def test_options_a_format_does_not_use_are_refused(run_db, tmp_path, capsys, monkeypatch):
    db, run_id = run_db
    for extra, word in ((["--format", "alpaca", "--reasoning-style", "think"], "--reasoning-style"),
                        (["--format", "alpaca", "--chat"], "--chat")):
        result = run_cli(["export", run_id, "--db", str(db), *extra, "--out", str(tmp_path / "o.jsonl")],
                         capsys, monkeypatch)
        assert result.code == 2 and word in result.err and not (tmp_path / "o.jsonl").exists()


def test_the_cards_load_line_loads_the_exported_file(run_db, tmp_path, capsys, monkeypatch):
    db, run_id = run_db
    folder = tmp_path / "sub"
    folder.mkdir()
    _export([run_id, "--db", str(db), "--format", "messages", "--out", str(folder / "chat.jsonl")], capsys, monkeypatch)
    card = (folder / "README.md").read_text(encoding="utf-8")
    [line] = [line for line in card.splitlines() if line.startswith("dataset = load_dataset(")]
    assert "quality flags in the run" in card
    monkeypatch.chdir(folder)
    scope = {"load_dataset": lambda *a, **k: load_dataset(*a, cache_dir=str(tmp_path / "cache"), **k)}
    exec(line, scope)
    assert len(scope["dataset"]["train"]) == 3 and "messages" in scope["dataset"]["train"].column_names


def test_bad_requests_are_one_line_errors_and_write_nothing(run_db, tmp_path, capsys, monkeypatch):
    db, run_id = run_db
    out = tmp_path / "x.jsonl"
    cases = [
        ([run_id, "--format", "nope"], "--format"),
        ([run_id, "--exclude-flag", "nope"], "--exclude-flag"),
        ([run_id, "--accepted-only"], "--steering"),
        ([run_id, "--steering"], "exactly one source"),
        ([run_id, "--model", "zzz"], "filtered out"),
        ([run_id, "--format", "dpo"], "no preference pairs"),
        (["missing-run"], "not found"),
    ]
    for args, words in cases:
        result = run_cli(["export", *args, "--db", str(db), "--out", str(out)], capsys, monkeypatch)
        assert result.code == 2 and words in result.err and "Traceback" not in result.err, (args, result.err)
    bad_suffix = run_cli(["export", run_id, "--db", str(db), "--out", str(tmp_path / "x.csv")], capsys, monkeypatch)
    assert bad_suffix.code == 2 and ".jsonl" in bad_suffix.err
    assert not out.exists() and not (tmp_path / "README.md").exists()


def test_card_name_next_to_a_foreign_readme(run_db, tmp_path, capsys, monkeypatch):
    db, run_id = run_db
    (tmp_path / "README.md").write_text("# my project\n", encoding="utf-8")
    summary = _export([run_id, "--db", str(db), "--out", str(tmp_path / "sft.jsonl")], capsys, monkeypatch)
    assert summary["card"] == str(tmp_path / "sft.README.md")
    assert (tmp_path / "README.md").read_text(encoding="utf-8") == "# my project\n"
    other = tmp_path / "own"
    other.mkdir()
    first = _export([run_id, "--db", str(db), "--out", str(other / "a.jsonl")], capsys, monkeypatch)
    again = _export([run_id, "--db", str(db), "--model", "m1", "--out", str(other / "a.jsonl")], capsys, monkeypatch)
    assert first["card"] == again["card"] == str(other / "README.md")  # our own card for the same file is replaced
    assert "**records**: 2" in (other / "README.md").read_text(encoding="utf-8")
    third = _export([run_id, "--db", str(db), "--out", str(other / "b.jsonl")], capsys, monkeypatch)
    assert third["card"] == str(other / "b.README.md")


def test_debate_nodes_export(tmp_path, capsys, monkeypatch):
    db = tmp_path / "d.db"
    store = Store(db)
    run_id = store.create_run("debate", source="topics.json", config={}, models=[("a", "hf:a"), ("b", "hf:b")])
    store.add_inputs(run_id, [Row(0, "1", "Why do leaves turn red?", "It is autumn.", None, None)])
    root = Node("root", "topic", 0, 0, text="Why do leaves turn red?")
    answer = Node("answer", "A", 0, 0, parent=root, model="a", request_key="k1", reasoning="Think about pigments.",
                  text="Anthocyanins are made in autumn.")
    question = Node("question", "B", 1, 0, parent=answer, model="b", request_key="k2", text="Why are they made?")
    reply = Node("answer", "A", 1, 0, parent=question, model="a", request_key="k3",
                 reasoning="Protection from light stress.", text="They protect the leaf while it recycles nutrients.")
    root.children, answer.children, question.children = [answer], [question], [reply]
    NodeWriter(store, run_id).save([root, answer, question, reply])
    out = tmp_path / "debate.jsonl"
    summary = _export(["--debate", run_id, "--db", str(db), "--format", "alpaca", "--out", str(out)],
                      capsys, monkeypatch)
    assert summary["records"] == 2 and summary["source"] == f"debate run {run_id}"
    assert _lines(out) == [
        {"instruction": "Why do leaves turn red?", "input": "It is autumn.", "reasoning": "Think about pigments.",
         "output": "Anthocyanins are made in autumn."},
        {"instruction": "Why are they made?", "input": "Anthocyanins are made in autumn.",
         "reasoning": "Protection from light stress.",
         "output": "They protect the leaf while it recycles nutrients."},
    ]


def test_export_to_a_folder_is_a_dataset_ready_to_publish(run_db, tmp_path, capsys, monkeypatch):
    """`--out DIR/`: data/train.jsonl + a card whose YAML header `datasets.load_dataset(DIR)` follows."""
    import yaml

    db, run_id = run_db
    Store(db).close()
    run_cli(["check", run_id, "--db", str(db)], capsys, monkeypatch)
    folder = tmp_path / "my-dataset"
    summary = _export([run_id, "--db", str(db), "--format", "messages", "--license", "apache-2.0",
                       "--out", f"{folder}/"], capsys, monkeypatch)
    assert summary["out"] == str(folder) and summary["card"] == str(folder / "README.md")
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == [
        "README.md", "data", "data/train.jsonl"]
    dataset = load_dataset(str(folder), cache_dir=str(tmp_path / "cache"))
    assert list(dataset) == ["train"] and len(dataset["train"]) == 3
    assert dataset["train"][0]["messages"][-1]["role"] == "assistant"
    card = (folder / "README.md").read_text(encoding="utf-8")
    header = yaml.safe_load(card.split("---")[1])
    assert header["license"] == "apache-2.0" and header["task_categories"] == ["text-generation"]
    assert set(header["language"]) == {"en", "ja"}
    assert header["configs"] == [{"config_name": "default", "data_files": [{"split": "train",
                                                                            "path": "data/train.jsonl"}]}]
    assert "## How it was made" in card and "`hf:m1`" in card and "leakage 1" in card
    assert "huggingface-cli upload --repo-type dataset" in card
    again = _export([run_id, "--db", str(db), "--format", "alpaca", "--out", str(folder)], capsys, monkeypatch)
    # datasets caches a folder whose card lists its data files by path alone: read the new export afresh
    reloaded = load_dataset(str(folder), cache_dir=str(tmp_path / "fresh-cache"))["train"]
    assert again["records"] == 3 and "output" in reloaded.column_names
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".my-dataset")]  # no temp folders left
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("mine", encoding="utf-8")
    refused = run_cli(["export", run_id, "--db", str(db), "--out", f"{foreign}/"], capsys, monkeypatch)
    assert refused.code == 2 and "did not write" in refused.err and "Traceback" not in refused.err
    assert [p.name for p in foreign.iterdir()] == ["todo.txt"]
