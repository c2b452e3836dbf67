"""Fewer, larger kernels for the user's model inside the engine. A decode step of a small model is bound by the
number of kernels it launches (about 35 per layer in transformers' Llama-family code), not by arithmetic, so:
- RMSNorm modules get torch's one-kernel `rms_norm` (on a GPU, where it computes the same);
- an MLP's gate and up projections become one matrix product;
- a Llama-family attention's q, k and v projections become one matrix product, and rotary embeddings of the
  queries and keys are applied together in three kernels instead of ten, on the engine's own attention;
- on a GPU, Triton kernels (kernels.py) do the rotation and the KV-cache writes in one launch, silu(gate) * up in
  one, and a decoder layer's residual add after attention with the RMSNorm that follows it in one.

Each replacement keeps the module's parameters (the separate weights become views of the joined one) and is made
only where it computes what the module's own forward does: norms and MLPs are checked on the module's weights;
attention is replaced only for the architectures listed in `ATTENTION` and only for plain `nn.Linear`
projections (a PEFT-wrapped or quantized layer keeps its own forward). Outside the engine's loop (model.generate,
training) replaced attention, MLP and decoder-layer modules run their own forward.
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F

from reasonry.engines.hf import kernels
from reasonry.engines.hf.cache import KVCache, attend

ATTENTION = {"LlamaAttention", "MistralAttention", "Qwen2Attention", "Qwen3Attention"}


def fuse_rms_norms(model: Any) -> int:
    """Give every RMSNorm module of `model` torch's one-kernel `rms_norm` where that computes what the module's
    own forward does (checked on the module's weights; a (1 + weight) variant keeps its own); return how many."""
    fused = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        eps = getattr(module, "variance_epsilon", getattr(module, "eps", None))
        if not type(module).__name__.endswith("RMSNorm") or weight is None or weight.dim() != 1 or eps is None:
            continue

        def forward(self: Any, hidden: torch.Tensor, _eps: float = float(eps)) -> torch.Tensor:
            return F.rms_norm(hidden, self.weight.shape, self.weight, _eps)

        fused += _replace_if_equal(module, forward, weight.shape[0])
    return fused


def fuse_mlps(model: Any, cache: KVCache) -> int:
    """One product for the gate and up projections of every `down(act(gate(x)) * up(x))` MLP, inside the
    engine's forwards on `cache`; return how many."""
    fused = 0
    for module in model.modules():
        parts = [getattr(module, name, None) for name in ("gate_proj", "up_proj", "down_proj")]
        if not all(_plain(p) for p in parts) or not callable(getattr(module, "act_fn", None)):
            continue
        module.reasonry_gate_up = _join(parts[:2])
        module.reasonry_silu = type(module.act_fn).__name__ in ("SiLU", "SiLUActivation")
        module.reasonry_cache = cache
        fused += _replace_if_equal(module, _joined_mlp, parts[0].in_features, _mlp_forward)
    return fused


def _joined_mlp(self: Any, x: torch.Tensor) -> torch.Tensor:
    gate_up = F.linear(x, *self.reasonry_gate_up)
    if self.reasonry_silu and kernels.usable(gate_up):
        return self.down_proj(kernels.silu_mul(gate_up))
    gate, up = gate_up.chunk(2, dim=-1)
    return self.down_proj(self.act_fn(gate) * up)


def _mlp_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    if self.reasonry_cache.layout is None:  # outside the engine (training, model.to(), adapters added later)
        return type(self).forward(self, x)
    return _joined_mlp(self, x)


def fuse_attention(model: Any, cache: KVCache) -> int:
    """One product for q, k and v and joint rotary embeddings in every attention module of the architectures in
    `ATTENTION`, attending through `cache`; return how many."""
    fused = 0
    for module in model.modules():
        name = type(module).__name__
        projections = [getattr(module, p, None) for p in ("q_proj", "k_proj", "v_proj", "o_proj")]
        if name not in ATTENTION or not all(_plain(p) for p in projections) or not hasattr(module, "layer_idx"):
            continue
        head_dim = module.head_dim
        module.reasonry_heads = (projections[0].out_features // head_dim, projections[1].out_features // head_dim)
        module.reasonry_qkv = _join(projections[:3])
        module.reasonry_window = getattr(module.config if name == "MistralAttention" else module, "sliding_window", None)
        module.reasonry_cache = cache
        module.reasonry_stock = module.forward
        module.forward = types.MethodType(_attention_forward, module)
        fused += 1
    return fused


def fuse_decoder_layers(model: Any) -> int:
    """On a GPU with Triton: one kernel for each residual add and the norm after it, in decoder layers whose
    attention `fuse_attention` replaced and whose forward is transformers' pre-norm layer returning a tensor
    (checked on its source and, for both norms, on a probe); return how many.

    Between two such layers of one stack the add of the first layer's MLP output joins the second layer's input
    norm: the first returns its MLP output alone and leaves the residual stream in the forward's layout memo,
    where the second takes it (so inside the engine's forward a layer's return value is not the hidden state).
    Only the first `num_hidden_layers` of a stack are fused: the ones transformers runs."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    fused = 0
    for stack in [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]:
        count = min(len(stack), getattr(config, "num_hidden_layers", None) or len(stack))
        chained = [i < count and _fusable_layer(layer) for i, layer in enumerate(stack)]
        for i, layer in enumerate(stack):
            if not chained[i]:
                continue
            layer.reasonry_takes = i > 0 and chained[i - 1]
            layer.reasonry_passes = i + 1 < count and chained[i + 1]
            layer.reasonry_stock = layer.forward
            layer.forward = types.MethodType(_layer_forward, layer)
            fused += 1
    return fused


def _fusable_layer(module: Any) -> bool:
    import inspect

    attention = getattr(module, "self_attn", None)
    norms = [getattr(module, name, None) for name in ("input_layernorm", "post_attention_layernorm")]
    if not hasattr(attention, "reasonry_stock") or any(getattr(n, "weight", None) is None for n in norms):
        return False
    epsilons = [getattr(n, "variance_epsilon", getattr(n, "eps", None)) for n in norms]
    if None in epsilons or not kernels.usable(norms[0].weight):
        return False
    try:
        if "return hidden_states\n" not in inspect.getsource(type(module).forward):
            return False
        weight = norms[0].weight
        probe = torch.randn(2, 4, weight.shape[0], device=weight.device, dtype=weight.dtype)
        with torch.inference_mode():
            for norm, eps in zip(norms, epsilons, strict=True):
                _, normed = kernels.add_rms_norm(probe[0], probe[1], norm.weight, float(eps))
                if not torch.allclose(normed.float(), norm(probe[0] + probe[1]).float(), rtol=0.02, atol=0.02):
                    return False
    except Exception:  # no source to read, a kernel that does not build: the layer keeps its own forward
        return False
    module.reasonry_eps = [float(eps) for eps in epsilons]
    return True


def _layer_forward(self: Any, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    layout = self.self_attn.reasonry_cache.layout
    carried = layout.memo.pop("residual", None) if layout is not None and self.reasonry_takes else None
    if args or layout is None:
        return self.reasonry_stock(hidden_states if carried is None else hidden_states + carried, *args, **kwargs)
    if carried is None:
        residual, normed = hidden_states, self.input_layernorm(hidden_states)
    else:  # hidden_states is the previous layer's MLP output
        residual, normed = kernels.add_rms_norm(hidden_states, carried, self.input_layernorm.weight, self.reasonry_eps[0])
    attended, _ = self.self_attn(hidden_states=normed, **kwargs)
    hidden, normed = kernels.add_rms_norm(attended, residual, self.post_attention_layernorm.weight, self.reasonry_eps[1])
    out = self.mlp(normed)
    if self.reasonry_passes:
        layout.memo["residual"] = hidden
        return out
    return hidden + out


def _attention_forward(self: Any, hidden_states: torch.Tensor, position_embeddings: Any = None,
                       attention_mask: torch.Tensor | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    cache: KVCache = self.reasonry_cache
    if cache.layout is None or position_embeddings is None:
        return self.reasonry_stock(hidden_states=hidden_states, position_embeddings=position_embeddings,
                                   attention_mask=attention_mask, **kwargs)
    shape = hidden_states.shape[:-1]
    q_heads, kv_heads = self.reasonry_heads
    qkv = F.linear(hidden_states, *self.reasonry_qkv).view(*shape, -1, self.head_dim)
    cos, sin = position_embeddings
    key = value = None  # None: the kernel below has already stored them in the cache
    if hasattr(self, "q_norm"):  # Qwen 3 normalises each head's query and key before the rotation
        query, key, value = qkv.split([q_heads, kv_heads, kv_heads], dim=-2)
        query, key = rotate(self.q_norm(query), cos, sin, cache), rotate(self.k_norm(key), cos, sin, cache)
    elif kernels.usable(qkv, self.head_dim):
        rows = qkv.view(-1, qkv.shape[-2] * self.head_dim)
        query = kernels.rope_store(rows, cos.reshape(rows.shape[0], -1), sin.reshape(rows.shape[0], -1),
                                   cache.layout.write, cache.keys[self.layer_idx], cache.values[self.layer_idx],
                                   q_heads, kv_heads).view(*shape, q_heads, self.head_dim)
    else:
        query, key = rotate(qkv[..., : q_heads + kv_heads, :], cos, sin, cache).split([q_heads, kv_heads], dim=-2)
        value = qkv[..., q_heads + kv_heads:, :]
    out = attend(cache, self.layer_idx, query, key, value, self.scaling, self.reasonry_window)
    return self.o_proj(out.reshape(*shape, -1)), None


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """transformers' rotary embedding (rotate-half layout) of `x` [..., heads, dim] by `cos`, `sin` [..., dim]:
    x * cos + rotate_half(x) * sin, where rotate_half(x) * sin = swap_halves(x) * (sin with its first half
    negated); the signed sin is made once per forward (kept in the cache's layout)."""
    half = x.shape[-1] // 2
    memo = cache.layout.memo if cache.layout is not None else {}
    if memo.get("sin") is not sin:
        memo["sin"], memo["signed"] = sin, torch.cat((-sin[..., :half], sin[..., half:]), dim=-1).unsqueeze(-2)
    swapped = torch.cat((x[..., half:], x[..., :half]), dim=-1)
    return torch.addcmul(x * cos.unsqueeze(-2), swapped, memo["signed"])


def _plain(module: Any) -> bool:
    return type(module) is torch.nn.Linear and not hasattr(module, "_hf_hook")


def _join(linears: list[torch.nn.Linear]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One weight (and bias) for `linears` side by side; each module's own parameters become views of it."""
    weight = torch.cat([linear.weight.detach() for linear in linears])
    bias = None if all(linear.bias is None for linear in linears) else torch.cat(
        [linear.bias.detach() if linear.bias is not None else weight.new_zeros(linear.out_features)
         for linear in linears])
    start = 0
    for linear in linears:
        end = start + linear.out_features
        linear.weight.data = weight[start:end]
        if linear.bias is not None:
            linear.bias.data = bias[start:end]
        start = end
    return weight, bias


def _replace_if_equal(module: Any, computed: Any, width: int, forward: Any = None) -> int:
    """Make `forward` (default: `computed`) `module`'s forward if `computed` and the module's own forward agree on
    a random probe; 1 if replaced."""
    weight = next(module.parameters())
    probe = torch.randn(4, width, device=weight.device, dtype=weight.dtype)
    try:
        with torch.inference_mode():
            if not torch.allclose(module(probe).float(), computed(module, probe).float(), rtol=0.02, atol=0.02):
                return 0
    except Exception:  # a kernel that does not build here: keep the module's own forward
        return 0
    module.forward = types.MethodType(forward or computed, module)
    return 1
