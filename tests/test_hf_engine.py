"""The hf engine on a tiny real model: adapters, sampling knobs, batching that does not change outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from reasonry.config import SamplingParams, parse_model_spec
from reasonry.engines.base import Request
from reasonry.engines.hf import HFEngine
from reasonry.errors import EngineError

PROMPTS = ["Find the square root of 156.", "LUNAは白猫ですか？", "Write a letter to invite a birthday party. " * 3]


def _texts(engine: HFEngine, params: SamplingParams, prompts=PROMPTS) -> dict[str, str]:
    requests = [Request(key=str(i), params=params, prompt=p) for i, p in enumerate(prompts)]
    return {r.key: r.text for r in engine.generate(requests)}


@pytest.fixture(scope="module")
def base(tiny_model: Path) -> HFEngine:
    return HFEngine(parse_model_spec(f"hf:{tiny_model}"), batch_size=8)


def test_adapter_changes_output_under_same_seed(base: HFEngine, tiny_model: Path, tiny_adapter: Path) -> None:
    adapted = HFEngine(parse_model_spec(f"hf:{tiny_model}+{tiny_adapter}"))
    params = SamplingParams(max_new_tokens=16)
    assert _texts(base, params) != _texts(adapted, params)
    merged = HFEngine(parse_model_spec(f"hf:{tiny_model}+{tiny_adapter}"), merge_adapter=True)
    assert _texts(merged, params.with_(temperature=0)) == _texts(adapted, params.with_(temperature=0))


def test_repetition_penalty_changes_output_under_same_seed(base: HFEngine) -> None:
    params = SamplingParams(max_new_tokens=24, repetition_penalty=1.1)
    assert _texts(base, params) != _texts(base, params.with_(repetition_penalty=1.0))


def test_same_seed_same_output_and_seed_matters(base: HFEngine) -> None:
    params = SamplingParams(max_new_tokens=16)
    assert _texts(base, params) == _texts(base, params)
    assert _texts(base, params) != _texts(base, params.with_(seed=7))


def test_output_does_not_depend_on_batch_neighbours(base: HFEngine) -> None:
    params = SamplingParams(max_new_tokens=16)
    together = _texts(base, params)
    alone = {str(i): _texts(base, params, [p])["0"] for i, p in enumerate(PROMPTS)}
    assert together == alone


def test_greedy_matches_transformers_generate(base: HFEngine) -> None:
    import torch

    params = SamplingParams(max_new_tokens=12, temperature=0, repetition_penalty=1.3)
    ours = _texts(base, params, PROMPTS[:1])["0"]
    ids = base.tokenizer(PROMPTS[0], return_tensors="pt")
    with torch.inference_mode():
        out = base.model.generate(**ids, max_new_tokens=12, do_sample=False, repetition_penalty=1.3,
                                  pad_token_id=base.tokenizer.pad_token_id)
    theirs = base.tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert ours == theirs


def test_token_counts_and_finish_reason(base: HFEngine) -> None:
    params = SamplingParams(max_new_tokens=10)
    result = next(iter(base.generate([Request(key="k", params=params, prompt=PROMPTS[0])])))
    assert result.finish_reason in ("length", "stop")
    assert result.prompt_tokens == base.count_tokens(PROMPTS[0])
    assert 1 <= result.completion_tokens <= 10
    assert result.latency_s > 0


def test_stop_strings_cut_the_text(base: HFEngine) -> None:
    params = SamplingParams(max_new_tokens=20)
    full = _texts(base, params, PROMPTS[:1])["0"]
    stop = full[5:8]
    cut = _texts(base, params.with_(stop=(stop,)), PROMPTS[:1])["0"]
    assert cut == full[: full.index(stop)]


def test_chat_rendering_uses_tokenizer_template(base: HFEngine) -> None:
    text = base.render_chat([{"role": "user", "content": "hi"}], prefill="<think>\nr\n</think>\n\n")
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\nr\n</think>\n\n"


def test_missing_model_and_unfit_adapter_are_clear_errors(tiny_adapter: Path, other_tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="does not exist"):
        HFEngine(parse_model_spec(f"hf:{tmp_path}/nope"))
    with pytest.raises(EngineError, match="does not fit base model"):
        HFEngine(parse_model_spec(f"hf:{other_tiny_model}+{tiny_adapter}"))


def test_quantized_loading_needs_cuda(tiny_model: Path) -> None:
    with pytest.raises(EngineError, match="--load-in-4bit needs a CUDA GPU"):
        HFEngine(parse_model_spec(f"hf:{tiny_model}"), load_in_4bit=True)


@pytest.mark.parametrize("params", [SamplingParams(max_new_tokens=20), SamplingParams(max_new_tokens=24, temperature=0,
                                                                                      repetition_penalty=1.3)])
def test_slot_count_does_not_change_the_tokens(tiny_model: Path, base: HFEngine, params: SamplingParams) -> None:
    """One slot (every request alone, refilled one after another) gives the same tokens as eight slots."""
    single = HFEngine(parse_model_spec(f"hf:{tiny_model}"), batch_size=1)
    prompts = PROMPTS + ["A much longer prompt that forces padding in the batch, " * 4]
    requests = [Request(key=str(i), params=params, prompt=p) for i, p in enumerate(prompts)]
    ours = {r.key: (r.text, r.completion_tokens, r.finish_reason) for r in single.generate(requests)}
    reference = {r.key: (r.text, r.completion_tokens, r.finish_reason) for r in base.generate(requests)}
    assert ours == reference


def test_rows_stop_at_their_eos_and_keep_nothing_after(tiny_model: Path) -> None:
    engine = HFEngine(parse_model_spec(f"hf:{tiny_model}"), ignore_eos=True)
    params = SamplingParams(max_new_tokens=16, temperature=0)
    requests = [Request(key=str(i), params=params, prompt=p) for i, p in enumerate(PROMPTS)]
    free = {r.key: r for r in engine.generate(requests)}
    ids = engine.tokenizer(free["0"].raw_text, add_special_tokens=False)["input_ids"]
    engine.loop.eos = {ids[2]}  # a token row 0 emits early becomes its end of sequence
    stopped = {r.key: r for r in engine.generate(requests)}
    first = ids.index(ids[2])
    assert stopped["0"].finish_reason == "stop"
    assert stopped["0"].completion_tokens == first + 1
    alone = next(iter(engine.generate(requests[:1])))
    assert (alone.text, alone.completion_tokens) == (stopped["0"].text, stopped["0"].completion_tokens)
    for key in ("1", "2"):
        row_ids = engine.tokenizer(free[key].raw_text, add_special_tokens=False)["input_ids"]
        expected = row_ids.index(ids[2]) + 1 if ids[2] in row_ids else 16
        assert stopped[key].completion_tokens == expected


def test_fused_rms_norm_only_where_it_computes_the_same(tiny_model: Path) -> None:
    from transformers import AutoModelForCausalLM

    from reasonry.engines.hf.fusion import fuse_rms_norms

    class OnePlusWeightRMSNorm(torch.nn.Module):  # Gemma's variant: scales by (1 + weight)
        def __init__(self, size: int) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(size))
            self.eps = 1e-6

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * (1 + self.weight)

    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    ids = torch.randint(0, 100, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        before = model(ids).logits
        norms = sum(type(m).__name__.endswith("RMSNorm") for m in model.modules())
        assert fuse_rms_norms(model) == norms > 0
        assert torch.allclose(model(ids).logits, before, atol=1e-5)
        gemma_like = torch.nn.Sequential(OnePlusWeightRMSNorm(8))
        assert fuse_rms_norms(gemma_like) == 0


def test_sliding_window_model_decodes_as_transformers(tmp_path: Path) -> None:
    """A Mistral-style model whose layers see only the last 6 keys: the engine applies the window as transformers
    does (greedy tokens equal), and the window changes the output (the same weights without it differ)."""
    from transformers import MistralConfig, MistralForCausalLM

    from reasonry.tiny import build_tokenizer

    tokenizer = build_tokenizer(tmp_path)
    prompt = "Find the square root of 156 and write a letter to invite a birthday party, twice."
    texts = {}
    for window in (6, None):
        config = MistralConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256,
                               num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=64,
                               sliding_window=window, max_position_embeddings=2048,
                               pad_token_id=tokenizer.pad_token_id)
        torch.manual_seed(0)
        model = MistralForCausalLM(config)
        with torch.no_grad():
            model.lm_head.weight.normal_(0, 0.25)
        model.save_pretrained(tmp_path)
        engine = HFEngine(parse_model_spec(f"hf:{tmp_path}"), batch_size=2, ignore_eos=True)
        try:
            params = SamplingParams(max_new_tokens=16, temperature=0, repetition_penalty=1.0)
            texts[window] = next(iter(engine.generate([Request(key="a", params=params, prompt=prompt)]))).text
            ids = engine.tokenizer(prompt, return_tensors="pt")
            with torch.inference_mode():
                out = engine.model.generate(**ids, max_new_tokens=16, do_sample=False, eos_token_id=None,
                                            pad_token_id=engine.tokenizer.pad_token_id)
            assert texts[window] == engine.tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
        finally:
            engine.close()
    assert texts[6] != texts[None]


def test_free_slots_in_a_decode_step_sit_at_position_zero(tiny_model: Path) -> None:
    """Free slots ride along in a decode step. Their positions must not raise the batch's largest position: RoPE
    variants pick their scaling from it (longrope switches every row to its long factors past the original
    context, dynamic NTK rescales), so a free slot at the end of the cache would change every row's output."""
    engine = HFEngine(parse_model_spec(f"hf:{tiny_model}"), batch_size=4, max_model_len=512)
    largest: list[int] = []
    hook = engine.model.register_forward_pre_hook(
        lambda module, args, kwargs: largest.append(int(kwargs["position_ids"].max())), with_kwargs=True)
    try:
        prompts = ["Find the square root of 156.", "hello there cat", "Write a letter to invite a birthday party."]
        params = SamplingParams(max_new_tokens=10, temperature=0, repetition_penalty=1.0)
        list(engine.generate([Request(key=str(i), params=params, prompt=p) for i, p in enumerate(prompts)]))
        longest = max(engine.count_tokens(p) for p in prompts) + 1 + 10
        assert engine.batch_size == 4 and len(largest) > 5  # three rows: slot 3 rides along in every step
        assert max(largest) <= longest < engine.kv_cache.max_len - 1
    finally:
        hook.remove()
        engine.close()


def test_soft_capped_attention_matches_transformers_eager(tmp_path: Path) -> None:
    """Gemma 2 caps attention scores (softcap * tanh(s / softcap)); the engine's logits for a prompt equal
    transformers' eager forward with the cap, and differ from it without the cap."""
    from transformers import AutoModelForCausalLM, Gemma2Config, Gemma2ForCausalLM

    from reasonry.tiny import build_tokenizer

    tokenizer = build_tokenizer(tmp_path)
    config = Gemma2Config(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=2048,
                          attn_logit_softcapping=2.0, final_logit_softcapping=None, pad_token_id=tokenizer.pad_token_id,
                          sliding_window=4096)
    torch.manual_seed(0)
    model = Gemma2ForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight.normal_(0, 0.25)
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(20)  # scores well past the cap
    model.save_pretrained(tmp_path)
    eager = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
    engine = HFEngine(parse_model_spec(f"hf:{tmp_path}"), batch_size=2)
    try:
        ids = engine.tokenizer("Write a letter to invite a birthday party. Find the square root")["input_ids"]
        with torch.inference_mode():
            ours = engine.loop.runner.prefill([0], [0], [ids])[0]
            capped = eager(torch.tensor([ids])).logits[0, -1]
            for layer in eager.model.layers:
                layer.self_attn.attn_logit_softcapping = None
            uncapped = eager(torch.tensor([ids])).logits[0, -1]
        assert torch.allclose(ours, capped, atol=1e-4)
        assert not torch.allclose(ours, uncapped, atol=1e-2)
    finally:
        engine.close()
