"""`reasonry train`: LoRA SFT on an export closes the loop back into `reasonry generate`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reasonry.store import Store
from reasonry.train import TrainConfig, train
from tests.cli_helpers import run_cli
from tests.conftest import write_questions
from tests.test_check_cli import make_run

ITEMS = [
    {"question": "Find the square root of 156.", "reasoning": "I look for a number that squared gives 156.",
     "response": "About 12.49."},
    {"question": "Write a letter to invite a birthday party.", "reasoning": "A letter needs a greeting and a date.",
     "response": "Dear friend, come to my party on Sunday."},
    {"question": "LUNAは白猫ですか？", "reasoning": "二匹は黒猫なので、残りの一匹が白猫です。", "response": "はい、LUNAは白猫です。"},
]


def _export(tmp_path: Path, fmt: str, capsys, monkeypatch, *extra: str) -> Path:
    db = tmp_path / "r.db"
    run_id = make_run(Store(db), ITEMS)
    out = tmp_path / f"{fmt}.jsonl"
    result = run_cli(["export", run_id, "--db", str(db), "--format", fmt, *extra, "--out", str(out)],
                     capsys, monkeypatch)
    assert result.code == 0, result.err
    return out


def _generate(tmp_path: Path, model: str, name: str, capsys, monkeypatch) -> list[str]:
    questions = write_questions(tmp_path / "q.json", [{"seq": i + 1, "question": item["question"], "input": ""}
                                                       for i, item in enumerate(ITEMS)])
    out = tmp_path / f"{name}.jsonl"
    result = run_cli(["generate", str(questions), "--model", model, "--template", "alpaca-reasoning",
                      "--temperature", "0", "--seed", "7", "--max-new-tokens", "16", "--db", str(tmp_path / "g.db"),
                      "--out", str(out), "--json"], capsys, monkeypatch)
    assert result.code == 0, result.err
    return [json.loads(line)["reasoning"] for line in out.read_text(encoding="utf-8").splitlines()]


def test_train_lowers_the_loss_and_the_adapter_changes_generate(tmp_path, tiny_model, capsys, monkeypatch):
    data = _export(tmp_path, "alpaca-special", capsys, monkeypatch)
    adapter = tmp_path / "adapter"
    result = run_cli(["train", str(data), "--base", f"hf:{tiny_model}", "--out", str(adapter), "--max-steps", "20",
                      "--lr", "1e-3", "--lora-r", "16", "--batch-size", "2", "--seed", "1"], capsys, monkeypatch)
    assert result.code == 0, result.err
    assert "step 20/20" in result.err and f"hf:{tiny_model}+{adapter}" in result.err
    losses = [json.loads(line) for line in (adapter / "loss.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in losses] == list(range(1, 21))
    assert losses[-1]["loss"] < losses[0]["loss"]
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (adapter / name).exists(), name
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 16 and config["lora_alpha"] == 32
    base = _generate(tmp_path, f"hf:{tiny_model}", "base", capsys, monkeypatch)
    tuned = _generate(tmp_path, f"hf:{tiny_model}+{adapter}", "tuned", capsys, monkeypatch)
    assert base == _generate(tmp_path, f"hf:{tiny_model}", "base-again", capsys, monkeypatch)  # same seed, same text
    assert tuned != base


@pytest.mark.parametrize(("fmt", "extra", "expected"), [
    ("prompt-completion", [], "prompt-completion"),
    ("conversational", [], "conversational"),
    ("messages", [], "conversational"),
    ("sharegpt", ["--reasoning-style", "think"], "sharegpt"),
    ("alpaca", [], "alpaca"),
])
def test_each_sft_export_trains(fmt, extra, expected, tmp_path, tiny_model, capsys, monkeypatch):
    data = _export(tmp_path, fmt, capsys, monkeypatch, *extra)
    losses: list[dict] = []
    summary = train(data, f"hf:{tiny_model}", tmp_path / "a", TrainConfig(max_steps=2, batch_size=2,
                                                                           target_modules="attention"),
                    on_log=losses.append)
    assert summary["format"] == expected and summary["steps"] == 2 and summary["records"] == 3
    assert len(losses) == 2 and (tmp_path / "a" / "adapter_config.json").exists()
    modules = set(json.loads((tmp_path / "a" / "adapter_config.json").read_text())["target_modules"])
    assert modules == {"q_proj", "k_proj", "v_proj", "o_proj"}


def test_clear_errors(tmp_path, tiny_model, capsys, monkeypatch):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"text": "hello"}) + "\n", encoding="utf-8")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    dpo = tmp_path / "dpo.jsonl"
    dpo.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n", encoding="utf-8")
    odd = tmp_path / "odd.jsonl"
    odd.write_text(json.dumps({"foo": "bar"}) + "\n", encoding="utf-8")
    base = f"hf:{tiny_model}"
    cases = [
        ([str(tmp_path / "missing.jsonl"), "--base", base], "no such file"),
        ([str(empty), "--base", base], "empty"),
        ([str(dpo), "--base", base, "--method", "sft"], "--method dpo"),
        ([str(good), "--base", base, "--method", "dpo"], "preference pairs"),
        ([str(good), "--base", base, "--method", "ppo"], "--method"),
        ([str(odd), "--base", base], "cannot tell the format"),
        ([str(good), "--base", base, "--format", "weird"], "--format"),
        ([str(good), "--base", base, "--format", "conversational"], "messages"),
        ([str(good), "--base", f"hf:{tmp_path / 'no-model'}"], "cannot load"),
        ([str(good), "--base", f"hf:{tiny_model}+{tmp_path}"], "without '+ADAPTER'"),
        ([str(good), "--base", base, "--lora-r", "0"], "--lora-r"),
    ]
    import torch

    if not torch.cuda.is_available():
        cases.append(([str(good), "--base", base, "--load-in-4bit"], "CUDA"))
    for args, words in cases:
        result = run_cli(["train", *args, "--out", str(tmp_path / "out")], capsys, monkeypatch)
        assert result.code == 2 and words in result.err and "Traceback" not in result.err, (args, result.err)
        assert len(result.err.strip().splitlines()) == 1, result.err
    txt = tmp_path / "data.txt"
    txt.write_text("x", encoding="utf-8")
    bad_suffix = run_cli(["train", str(txt), "--base", base, "--out", str(tmp_path / "out")], capsys, monkeypatch)
    assert bad_suffix.code == 2 and "unknown data format" in bad_suffix.err


def test_dpo_on_steering_pairs_trains_an_adapter_generate_loads(tmp_path, tiny_model, capsys, monkeypatch):
    """The DPO export of steering edits (edited-and-accepted vs original) trains with `train --method dpo`."""
    from tests.test_export import _steer_db

    db = tmp_path / "s.db"
    _steer_db(db)
    pairs = tmp_path / "pairs.jsonl"
    exported = run_cli(["export", "--steering", "--db", str(db), "--format", "dpo", "--out", str(pairs)],
                       capsys, monkeypatch)
    assert exported.code == 0, exported.err
    adapter = tmp_path / "dpo-adapter"
    result = run_cli(["train", str(pairs), "--base", f"hf:{tiny_model}", "--out", str(adapter), "--max-steps", "6",
                      "--lr", "5e-3", "--batch-size", "1", "--seed", "1", "--json"], capsys, monkeypatch)
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert summary["method"] == "dpo" and summary["format"] == "preference" and summary["steps"] == 6
    losses = [json.loads(line)["loss"] for line in (adapter / "loss.jsonl").read_text().splitlines()]
    assert len(losses) == 6 and losses[-1] < losses[0]  # the policy moves towards the chosen completion
    assert (adapter / "adapter_config.json").exists()
    base = _generate(tmp_path, f"hf:{tiny_model}", "base", capsys, monkeypatch)
    tuned = _generate(tmp_path, f"hf:{tiny_model}+{adapter}", "tuned", capsys, monkeypatch)
    assert tuned != base


def test_out_folder_is_new_empty_or_an_earlier_adapter_replaced_whole(tmp_path, tiny_model, capsys, monkeypatch):
    data = _export(tmp_path, "alpaca-special", capsys, monkeypatch)
    base = f"hf:{tiny_model}"
    other = tmp_path / "notes"
    other.mkdir()
    (other / "data.txt").write_text("mine", encoding="utf-8")
    refused = run_cli(["train", str(data), "--base", base, "--out", str(other), "--max-steps", "2"], capsys, monkeypatch)
    assert refused.code == 2 and "holds other files" in refused.err
    assert [p.name for p in other.iterdir()] == ["data.txt"]

    adapter = tmp_path / "adapter"
    first = run_cli(["train", str(data), "--base", base, "--out", str(adapter), "--max-steps", "2"], capsys, monkeypatch)
    assert first.code == 0, first.err
    earlier = (adapter / "adapter_model.safetensors").read_bytes()
    (adapter / "stale.txt").write_text("from before", encoding="utf-8")

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    with monkeypatch.context() as patch:  # a failed training keeps the earlier adapter as it was
        patch.setattr("transformers.Trainer.train", broken)
        with pytest.raises(RuntimeError):
            train(data, base, adapter, TrainConfig(max_steps=2))
    assert (adapter / "adapter_model.safetensors").read_bytes() == earlier and (adapter / "stale.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".adapter.")]

    again = run_cli(["train", str(data), "--base", base, "--out", str(adapter), "--max-steps", "3", "--lr", "1e-2"],
                    capsys, monkeypatch)
    assert again.code == 0, again.err
    assert not (adapter / "stale.txt").exists() and json.loads((adapter / "train.json").read_text())["steps"] == 3
    assert len((adapter / "loss.jsonl").read_text().splitlines()) == 3
