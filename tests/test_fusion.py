"""The engine's kernel fusions compute what the model's own modules compute: joined q/k/v and gate/up products,
joint rotary embeddings, for each architecture they are made for, and nothing where they do not apply."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from reasonry.config import SamplingParams, parse_model_spec
from reasonry.engines.base import Request
from reasonry.engines.hf import HFEngine

PROMPTS = ["Find the square root of 156.", "hello there cat", "Write a letter to invite a birthday party. " * 3]


def drawn_tokens(engine: HFEngine, requests: list[Request]) -> dict[str, list[int]]:
    """The token ids each request drew (texts of a tiny model's random tokens are mostly undecodable bytes)."""
    drawn: dict[str, list[int]] = {}
    finish = engine.loop.finish

    def record(seq) -> None:
        drawn[seq.request.key] = list(seq.tokens)
        finish(seq)

    engine.loop.finish = record
    try:
        list(engine.generate(requests))
    finally:
        engine.loop.finish = finish
    return drawn


def _tiny(arch: str, folder: Path) -> Path:
    """A 2-layer model whose layers move the greedy tokens: large weights, random biases and norm weights, and
    (Mistral, Qwen2, Qwen3) a 6-token sliding window on a layer."""
    import transformers

    from reasonry.tiny import build_tokenizer

    tokenizer = build_tokenizer(folder)
    extra = {"Llama": {"attention_bias": True}, "Mistral": {"sliding_window": 6}}.get(
        arch, {"use_sliding_window": True, "sliding_window": 6, "max_window_layers": 1})
    config = getattr(transformers, f"{arch}Config")(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id, initializer_range=0.2, **extra)
    torch.manual_seed(0)
    model = getattr(transformers, f"{arch}ForCausalLM")(config)
    with torch.no_grad():
        model.lm_head.weight.normal_(0, 0.25)
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0, 0.5)  # biases the joined product must carry
            elif "norm" in name:
                parameter.uniform_(0.5, 1.5)  # norm weights the fused norms must apply, each its own
    model.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("arch", ["Llama", "Qwen2", "Qwen3", "Mistral"])
def test_fused_layers_decode_as_transformers(arch: str, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    folder = _tiny(arch, tmp_path)
    engine = HFEngine(parse_model_spec(f"hf:{folder}"), device="cpu", batch_size=4, ignore_eos=True)
    try:
        assert engine.fused == {"norms": 0, "mlp": 2, "attention": 2, "layers": 0}  # layers: GPU only
        params = SamplingParams(max_new_tokens=16, temperature=0, repetition_penalty=1.0)
        ours = drawn_tokens(engine, [Request(key=str(i), params=params, prompt=p) for i, p in enumerate(PROMPTS)])
        reference = AutoModelForCausalLM.from_pretrained(folder).eval()  # its own, unfused modules
        for i, prompt in enumerate(PROMPTS):
            ids = engine.tokenizer(prompt, return_tensors="pt")
            with torch.inference_mode():
                out = reference.generate(**ids, max_new_tokens=16, do_sample=False, eos_token_id=None,
                                         pad_token_id=engine.tokenizer.pad_token_id)
                again = engine.model.generate(**ids, max_new_tokens=16, do_sample=False, eos_token_id=None,
                                              pad_token_id=engine.tokenizer.pad_token_id)
            assert ours[str(i)] == out[0, ids["input_ids"].shape[1]:].tolist()
            assert torch.equal(again, out)  # outside the loop the fused model runs its own forward
    finally:
        engine.close()


def test_joint_rotation_is_transformers_rotary() -> None:
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    from reasonry.engines.hf.cache import KVCache, Layout
    from reasonry.engines.hf.fusion import rotate

    generator = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 5, 4, 32, generator=generator), torch.randn(2, 5, 2, 32, generator=generator)
    angles = torch.randn(2, 5, 16, generator=generator)
    cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
    cache = KVCache.__new__(KVCache)
    cache.layout = Layout(write=torch.zeros(1), cu_q=torch.zeros(1), cu_k=torch.zeros(1), used_k=torch.zeros(1), max_q=1)
    joint = rotate(torch.cat([q, k], dim=2), cos, sin, cache)
    theirs_q, theirs_k = apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), cos, sin)
    assert torch.allclose(joint[:, :, :4], theirs_q.transpose(1, 2), atol=1e-6)
    assert torch.allclose(joint[:, :, 4:], theirs_k.transpose(1, 2), atol=1e-6)


def test_modules_the_fusions_do_not_fit_keep_their_own_forward(tiny_model: Path, tiny_adapter: Path) -> None:
    from types import SimpleNamespace

    from reasonry.engines.hf.fusion import fuse_mlps

    adapted = HFEngine(parse_model_spec(f"hf:{tiny_model}+{tiny_adapter}"), device="cpu")
    try:  # LoRA wraps q_proj and v_proj: attention keeps its forward, the plain MLPs are still joined
        assert adapted.fused["attention"] == 0 and adapted.fused["mlp"] > 0
    finally:
        adapted.close()

    class SwappedMLP(torch.nn.Module):  # the same parts, another formula: act(up(x)) * gate(x)
        def __init__(self) -> None:
            super().__init__()
            self.gate_proj, self.up_proj = torch.nn.Linear(8, 16, bias=False), torch.nn.Linear(8, 16, bias=False)
            self.down_proj, self.act_fn = torch.nn.Linear(16, 8, bias=False), torch.nn.SiLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.down_proj(self.act_fn(self.up_proj(x)) * self.gate_proj(x))

    outside = SimpleNamespace(layout=None)  # a cache whose engine is not running a forward
    assert fuse_mlps(SwappedMLP(), outside) == 0

    class PlainMLP(SwappedMLP):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))

    module = PlainMLP()
    assert fuse_mlps(module, outside) == 1
    module.double()  # outside the engine the module's own forward runs: no stale joined weight
    x = torch.randn(3, 8, dtype=torch.float64)
    assert torch.allclose(module(x), PlainMLP.forward(module, x))


def _interpreted(check: str, *args: str) -> None:
    """Run `tests/kernel_checks.py check` in a fresh interpreter with Triton's CPU interpreter on (it must be on
    before Triton is first imported)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "TRITON_INTERPRET": "1"}
    script = Path(__file__).with_name("kernel_checks.py")
    done = subprocess.run([sys.executable, str(script), check, *args], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert done.stdout.strip().endswith(f"{check}: ok")


def test_gpu_kernels_compute_the_torch_layers() -> None:
    """The Triton kernels (run by Triton's interpreter on the CPU): rotated queries returned, rotated keys and the
    values written to their cache rows and nowhere else, silu(gate) * up, add + RMSNorm, as transformers computes
    them."""
    pytest.importorskip("triton")
    _interpreted("kernels")


@pytest.mark.parametrize("arch", ["Qwen2", "Llama"])
def test_decoder_layers_with_gpu_kernels_decode_as_transformers(arch: str, tmp_path: Path) -> None:
    """The engine with its GPU kernels turned on (Triton's interpreter, CPU): rotation + KV-cache writes, the
    MLPs' silu * up and the decoder layers' joined adds and norms give transformers' greedy tokens (Qwen2 with a
    sliding-window layer and q/k/v biases, Llama with attention biases)."""
    pytest.importorskip("triton")
    _interpreted("layers", str(_tiny(arch, tmp_path)))
