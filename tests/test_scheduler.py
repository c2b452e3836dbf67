"""The hf engine's continuous batching loop, checked against transformers' greedy `model.generate` (fp32, CPU):
slot refill order, per-request settings in one batch, stop strings, a prompt longer than the context,
cancellation, and `reasonry serve` answering a short request while a long one streams."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
import torch

from reasonry.config import SamplingParams, parse_model_spec
from reasonry.engines.base import Request
from reasonry.engines.hf import HFEngine

PROMPTS = ["Find the square root of 156.", "LUNAは白猫ですか？", "Write a letter to invite a birthday party. " * 3,
           "hello there", "A much longer prompt that forces padding in the batch, " * 4]
GREEDY = SamplingParams(max_new_tokens=12, temperature=0, repetition_penalty=1.0)


def reference(engine: HFEngine, prompt: str, max_new: int) -> str:
    """transformers' own greedy decoding of one prompt (the model's forward outside the engine's loop)."""
    ids = engine.tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = engine.model.generate(**ids, max_new_tokens=max_new, do_sample=False,
                                    pad_token_id=engine.tokenizer.pad_token_id)
    new = out[0, ids["input_ids"].shape[1]:]
    text = engine.tokenizer.decode(new, skip_special_tokens=True)
    return text.rstrip("\ufffd") if len(new) == max_new else text  # cut at the limit: no half character


@pytest.fixture(scope="module", params=["sync", "overlap"])
def two_slots(tiny_model: Path, request: pytest.FixtureRequest) -> HFEngine:
    """Two slots, read back every step (the CPU default) or with overlapped windows (the GPU default: the next
    window is launched before the last one is read back, so a finished row draws junk it must not keep)."""
    if request.param == "sync":
        return HFEngine(parse_model_spec(f"hf:{tiny_model}"), batch_size=2)
    return HFEngine(parse_model_spec(f"hf:{tiny_model}"), batch_size=2, poll_every=2, overlap=True)


def test_finished_slots_are_refilled_in_arrival_order(two_slots: HFEngine) -> None:
    limits = [8, 2, 16, 2, 2]
    requests = [Request(key=str(i), params=GREEDY.with_(max_new_tokens=n), prompt=PROMPTS[i])
                for i, n in enumerate(limits)]
    results = list(two_slots.generate(requests))
    order = [r.key for r in results]
    assert two_slots.batch_size == 2
    # 1 leaves first and 2 takes its slot; 0 leaves next and 3, then 4, take that slot while 2 still runs.
    assert order == ["1", "0", "3", "4", "2"]
    for r in results:
        assert r.text == reference(two_slots, PROMPTS[int(r.key)], limits[int(r.key)])
        assert r.latency_s > 0
    assert results[0].latency_s < results[-1].latency_s


def test_per_request_settings_share_a_batch(tiny_model: Path) -> None:
    engine = HFEngine(parse_model_spec(f"hf:{tiny_model}"), batch_size=8)
    params = [GREEDY, SamplingParams(max_new_tokens=5, seed=3), GREEDY.with_(max_new_tokens=3),
              SamplingParams(max_new_tokens=9, temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0, seed=9),
              SamplingParams(max_new_tokens=7, temperature=0, repetition_penalty=1.3)]
    requests = [Request(key=str(i), params=p, prompt=PROMPTS[i]) for i, p in enumerate(params)]
    together = {r.key: (r.text, r.completion_tokens) for r in engine.generate(requests)}
    alone = {}
    for request in requests:
        result = next(iter(engine.generate([request])))
        alone[result.key] = (result.text, result.completion_tokens)
    assert together == alone
    assert [together[str(i)][1] for i in range(5)] <= [12, 5, 3, 9, 7]
    assert together["0"][0] == reference(engine, PROMPTS[0], 12)
    assert together["2"][0] == reference(engine, PROMPTS[2], 3)


def test_stop_string_ends_its_row_early(two_slots: HFEngine) -> None:
    full = next(iter(two_slots.generate([Request(key="f", params=GREEDY.with_(max_new_tokens=24), prompt=PROMPTS[0])])))
    assert full.text == reference(two_slots, PROMPTS[0], 24)
    stop = full.text[6:9]
    cut = next(iter(two_slots.generate([Request(key="c", params=GREEDY.with_(max_new_tokens=24, stop=(stop,)),
                                                prompt=PROMPTS[0])])))
    assert cut.text == full.text[: full.text.index(stop)]
    assert cut.finish_reason == "stop"
    assert cut.completion_tokens < full.completion_tokens


def test_prompt_longer_than_the_context_is_an_error_on_its_row(tiny_model: Path) -> None:
    engine = HFEngine(parse_model_spec(f"hf:{tiny_model}"), batch_size=2, max_model_len=64)
    requests = [Request(key="long", params=GREEDY, prompt="word " * 200),
                Request(key="ok", params=GREEDY, prompt=PROMPTS[0])]
    results = {r.key: r for r in engine.generate(requests)}
    assert results["long"].finish_reason == "error"
    assert "prompt has" in results["long"].error and "--max-model-len" in results["long"].error
    assert results["ok"].error is None and results["ok"].text == reference(engine, PROMPTS[0], 12)
    clipped = next(iter(engine.generate([Request(key="c", params=GREEDY.with_(max_new_tokens=500), prompt=PROMPTS[0])])))
    assert clipped.finish_reason == "length" and clipped.prompt_tokens + clipped.completion_tokens <= 64


def test_a_consumer_that_goes_away_is_dropped_from_the_batch(two_slots: HFEngine) -> None:
    stream = two_slots.stream(Request(key="s", params=GREEDY.with_(max_new_tokens=1000), prompt=PROMPTS[1]))
    first = next(stream)
    assert isinstance(first, str)
    stream.close()
    deadline = time.monotonic() + 10
    while two_slots.loop.scheduler.busy() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not two_slots.loop.scheduler.busy()
    results = two_slots.generate([Request(key=str(i), params=GREEDY, prompt=p) for i, p in enumerate(PROMPTS)])
    next(results)
    results.close()  # a generate call abandoned half-way cancels what it submitted
    deadline = time.monotonic() + 10
    while two_slots.loop.scheduler.busy() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not two_slots.loop.scheduler.busy()
    again = next(iter(two_slots.generate([Request(key="a", params=GREEDY, prompt=PROMPTS[3])])))
    assert again.text == reference(two_slots, PROMPTS[3], 12)


def test_real_model_greedy_equals_transformers(smollm2_path: Path) -> None:
    engine = HFEngine(parse_model_spec(f"hf:{smollm2_path}"), batch_size=4)
    prompts = [engine.render_chat([{"role": "user", "content": q}]) for q in
               ("What is 17 * 23?", "Name three primary colours.", "Why is the sky blue? Answer briefly.")]
    params = GREEDY.with_(max_new_tokens=32)
    results = {r.key: r.text for r in engine.generate([Request(key=str(i), params=params, prompt=p)
                                                       for i, p in enumerate(prompts)])}
    for i, prompt in enumerate(prompts):
        ids = engine.tokenizer(prompt, return_tensors="pt")
        with torch.inference_mode():
            out = engine.model.generate(**ids, max_new_tokens=32, do_sample=False)
        tokens = out[0, ids["input_ids"].shape[1]:]
        assert results[str(i)] == engine.tokenizer.decode(tokens, skip_special_tokens=True).strip() or \
            results[str(i)] == engine.tokenizer.decode(tokens, skip_special_tokens=True)
    engine.close()


def test_serve_answers_a_short_request_while_a_long_one_streams(tiny_model: Path, tmp_path: Path) -> None:
    from test_web_api import Server

    server = Server(["--model", f"hf:{tiny_model}", "--db", str(tmp_path / "web.db")], "127.0.0.1",
                    tmp_path / "serve.log").wait()
    try:
        long_done: list[float] = []
        long_tokens: list[int] = []
        started = threading.Event()

        def long_request() -> None:
            body = {"model": "tiny", "prompt": PROMPTS[1], "max_tokens": 300, "temperature": 0, "stream": True}
            with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=120,
                              headers={"X-Reasonry": "1"}) as response:
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        started.set()
                        long_tokens.append(1)
            long_done.append(time.monotonic())

        thread = threading.Thread(target=long_request)
        thread.start()
        assert started.wait(60)
        short = httpx.post(server.url + "/v1/completions", timeout=60, headers={"X-Reasonry": "1"},
                           json={"model": "tiny", "prompt": PROMPTS[0], "max_tokens": 4, "temperature": 0})
        short_done = time.monotonic()
        assert short.status_code == 200, short.text
        assert short.json()["usage"]["completion_tokens"] <= 4
        thread.join(120)
        assert long_done and short_done < long_done[0]  # answered while the long one was still streaming
        assert len(long_tokens) > 10
    finally:
        server.stop()


@pytest.mark.parametrize("overlap", [False, True])
def test_prompts_prefilled_in_chunks_decode_as_transformers(tiny_model: Path, overlap: bool) -> None:
    """Prompts longer than one prefill forward go in packed chunks (several prompts per forward, a prompt split
    across forwards); each chunk attends to its own earlier chunks only. With overlapped windows, slots that free
    up mid-run are refilled and packed down while a window is in flight."""
    engine = HFEngine(parse_model_spec(f"hf:{tiny_model}"), batch_size=4, max_batch_tokens=7, poll_every=3,
                      overlap=overlap)
    try:
        limits = [5, 12, 3, 9, 7, 2, 11, 4]
        prompts = [PROMPTS[i % len(PROMPTS)] + " " * (i // len(PROMPTS)) for i in range(len(limits))]
        results = {r.key: r.text for r in engine.generate(
            [Request(key=str(i), params=GREEDY.with_(max_new_tokens=n), prompt=p)
             for i, (p, n) in enumerate(zip(prompts, limits, strict=True))])}
        assert results == {str(i): reference(engine, p, n) for i, (p, n) in enumerate(zip(prompts, limits, strict=True))}
    finally:
        engine.close()


def test_blockwise_top_k_equals_torch_topk() -> None:
    from reasonry.engines.hf.sampling import blockwise_topk

    logits = torch.randn(6, 10_000, generator=torch.Generator().manual_seed(0))
    logits[0, 640:690] += 10  # one row's 50 largest all in one block, another's spread one per block
    logits[1, torch.arange(50) * 64 + 3] += 10
    for width in (64, 150):  # 156 blocks and a 16-wide tail; 66 blocks and a 100-wide tail
        values, indices = blockwise_topk(logits, 50, width)
        expected_values, expected_indices = torch.topk(logits, 50)
        assert torch.equal(values, expected_values)
        assert torch.equal(indices, expected_indices)


@pytest.mark.parametrize("overlap", [False, True])
def test_rows_packed_down_mid_run_keep_their_tokens(smollm2_path: Path, overlap: bool) -> None:
    """When the low slots finish first and nothing waits, the long rows move down (their keys, history and
    sampling state with them) so the decode batch shrinks; they decode on as if nothing moved (a real model:
    its next token depends on the keys it attends to)."""
    engine = HFEngine(parse_model_spec(f"hf:{smollm2_path}"), batch_size=4, poll_every=3, overlap=overlap)
    try:
        limits = [2, 3, 30, 28]
        requests = [Request(key=str(i), params=GREEDY.with_(max_new_tokens=n), prompt=PROMPTS[i])
                    for i, n in enumerate(limits)]
        results = {r.key: r.text for r in engine.generate(requests)}
        assert engine.loop.stats["moves"] >= 2
        assert results == {str(i): reference(engine, PROMPTS[i], n) for i, n in enumerate(limits)}
    finally:
        engine.close()
