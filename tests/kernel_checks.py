"""Checks of the engine's Triton kernels, run by tests/test_fusion.py in a fresh interpreter with
TRITON_INTERPRET=1 (Triton's CPU interpreter must be on before Triton is first imported).

    python tests/kernel_checks.py kernels | layers MODEL_FOLDER
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch


def kernels() -> None:
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    from reasonry.engines.hf import kernels

    generator = torch.Generator().manual_seed(0)
    tokens, q_heads, kv_heads, dim = 5, 4, 2, 32
    qkv = torch.randn(tokens, (q_heads + 2 * kv_heads) * dim, generator=generator)
    angles = torch.randn(tokens, dim // 2, generator=generator) * 3
    cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
    k_cache, v_cache = torch.zeros(20, kv_heads, dim), torch.zeros(20, kv_heads, dim)
    write = torch.tensor([3, 7, 11, 0, 19])
    queries = kernels.rope_store(qkv, cos, sin, write, k_cache, v_cache, q_heads, kv_heads)
    heads = qkv.view(tokens, -1, dim)
    want_q, want_k = apply_rotary_pos_emb(heads[None, :, :q_heads].transpose(1, 2),
                                          heads[None, :, q_heads:q_heads + kv_heads].transpose(1, 2), cos[None], sin[None])
    assert torch.allclose(queries, want_q[0].transpose(0, 1), atol=1e-5), "rotated queries"
    assert torch.allclose(k_cache[write], want_k[0].transpose(0, 1), atol=1e-5), "rotated keys in the cache"
    assert torch.equal(v_cache[write], heads[:, q_heads + kv_heads:]), "values in the cache"
    untouched = torch.ones(20, dtype=torch.bool)
    untouched[write] = False
    assert not k_cache[untouched].any() and not v_cache[untouched].any(), "other cache rows written"
    gate_up = torch.randn(3, 2, 2 * 1500, generator=generator)  # 1500: two blocks, the second partly masked
    expected = torch.nn.functional.silu(gate_up[..., :1500]) * gate_up[..., 1500:]
    assert torch.allclose(kernels.silu_mul(gate_up), expected, atol=1e-5), "silu(gate) * up"
    x, residual = torch.randn(2, 3, 1500, generator=generator), torch.randn(2, 3, 1500, generator=generator)
    weight = torch.rand(1500, generator=generator)
    total, normed = kernels.add_rms_norm(x, residual, weight, 1e-6)
    assert torch.equal(total, x + residual), "residual sum"
    want = (x + residual) * torch.rsqrt((x + residual).pow(2).mean(-1, keepdim=True) + 1e-6) * weight
    assert torch.allclose(normed, want, atol=1e-5), "rms norm"


def layers(folder: str) -> None:
    """The engine with its GPU kernels turned on: greedy tokens equal transformers' own generate."""
    from transformers import AutoModelForCausalLM

    from reasonry.config import SamplingParams, parse_model_spec
    from reasonry.engines.base import Request
    from reasonry.engines.hf import HFEngine, kernels

    sys.path.insert(0, str(Path(__file__).parent))
    from test_fusion import drawn_tokens

    kernels.usable = lambda tensor, head_dim=None: True  # the interpreter runs them on CPU tensors
    calls = {"rope_store": 0}
    rope_store = kernels.rope_store

    def counted(*args, **kwargs):
        calls["rope_store"] += 1
        return rope_store(*args, **kwargs)

    kernels.rope_store = counted
    engine = HFEngine(parse_model_spec(f"hf:{folder}"), device="cpu", batch_size=2, ignore_eos=True)
    prompt = "Find the square root of 156. Write a letter to invite a birthday party."
    try:
        assert engine.fused == {"norms": 0, "mlp": 2, "attention": 2, "layers": 2}, engine.fused
        params = SamplingParams(max_new_tokens=8, temperature=0, repetition_penalty=1.0)
        ours = drawn_tokens(engine, [Request(key="a", params=params, prompt=prompt)])["a"]
        ids = engine.tokenizer(prompt, return_tensors="pt")
        with torch.inference_mode():
            out = AutoModelForCausalLM.from_pretrained(folder).eval().generate(
                **ids, max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=engine.tokenizer.pad_token_id)
        theirs = out[0, ids["input_ids"].shape[1]:].tolist()
        assert ours == theirs, (ours, theirs)
        assert calls["rope_store"] >= 2 * 8, calls  # every layer of the prefill and of each decode step
    finally:
        engine.close()


if __name__ == "__main__":
    {"kernels": kernels, "layers": layers}[sys.argv[1]](*sys.argv[2:])
    print(f"{sys.argv[1]}: ok")
