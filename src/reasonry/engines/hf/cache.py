"""The KV cache: one key and one value tensor per layer, [slots, max_len, kv_heads, head_dim], allocated once.
Each running sequence owns a slot.

The model keeps its own modules (PEFT adapters included): `slot_attention` is registered with transformers'
AttentionInterface. A forward's queries are a packed list of sequences (a decode step: one token for each of
`rows` sequences; a prefill: the prompt chunks of several sequences, one after another). Their new keys and
values go into the slots, and each sequence attends over its own slot's first `used_k` positions only:
- on a GPU in bf16/fp16, FlashAttention's variable-length kernel reads each sequence's keys in place (the cache
  flattened to [slots * max_len, kv_heads, head_dim], a sequence starting at `slot * max_len`): no
  padding to the longest row, no key-length buckets, grouped-query attention without repeating the cache;
- elsewhere (CPU, fp32) `scaled_dot_product_attention` with a mask: one batched call for a decode step, one call
  per sequence for a prefill.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

NAME = "reasonry_slots"
_registered = False


@dataclass
class Layout:
    """Where the current forward writes and what it reads; set by the runner before each forward."""

    write: torch.Tensor  # int64 [tokens] flat cache row (slot * max_len + position) of each new key
    cu_q: torch.Tensor  # int32 [seqs + 1] query offsets of the packed sequences
    cu_k: torch.Tensor  # int32 [seqs + 1] flat row where each sequence's keys start (the last entry unused)
    used_k: torch.Tensor  # int32 [seqs] keys each sequence attends: its cache positions [0, used_k)
    max_q: int  # longest query run (1 for a decode step)
    kv_len: int = 0  # masked decode path: keys read per row (>= every used_k)
    spans: list[tuple[int, int, int, int]] | None = None  # masked prefill path: (q_start, q_end, slot, used)
    memo: dict[str, Any] = field(default_factory=dict)  # values every layer of this forward shares


def text_config(model: Any) -> Any:
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def kv_shape(config: Any) -> tuple[int, int, int]:
    """(layers, kv_heads, head_dim) of a decoder config."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return config.num_hidden_layers, kv_heads, head_dim


def bytes_per_token(config: Any, dtype: torch.dtype) -> int:
    layers, kv_heads, head_dim = kv_shape(config)
    return 2 * layers * kv_heads * head_dim * torch.empty((), dtype=dtype).element_size()


def plan_slots(config: Any, dtype: torch.dtype, device: torch.device, max_len: int, wanted: int,
               memory_fraction: float, reserve_bytes: int) -> int:
    """How many sequences of `max_len` tokens fit in the memory left for the cache (at most `wanted`)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = int(free * memory_fraction) - reserve_bytes
    else:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        budget = int(total * 0.25)
    return max(0, min(wanted, budget // (max_len * bytes_per_token(config, dtype))))


def flash_usable(config: Any, dtype: torch.dtype, device: torch.device) -> bool:
    """FlashAttention's varlen kernel: CUDA, half precision, head_dim a multiple of 8 up to 256, no logit
    soft-capping (REASONRY_ATTENTION=sdpa forces the masked path, for comparison)."""
    _, _, head_dim = kv_shape(config)
    return (device.type == "cuda" and dtype in (torch.float16, torch.bfloat16) and head_dim % 8 == 0
            and head_dim <= 256 and os.environ.get("REASONRY_ATTENTION", "flash") == "flash"
            and not getattr(config, "attn_logit_softcapping", None))


class KVCache:
    def __init__(self, config: Any, slots: int, max_len: int, dtype: torch.dtype, device: torch.device) -> None:
        layers, kv_heads, head_dim = kv_shape(config)
        shape = (slots, max_len, kv_heads, head_dim)
        self.slots, self.max_len = slots, max_len
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.flash = flash_usable(config, dtype, device)
        self.layout: Layout | None = None

    def move(self, src: torch.Tensor, dst: torch.Tensor, length: int) -> None:
        """Copy the first `length` positions of slots `src` into slots `dst` (compaction)."""
        for tensors in (self.keys, self.values):
            for layer in tensors:
                layer[:, :length].index_copy_(0, dst, layer[src, :length])


def slot_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                   attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                   **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention interface: [batch, heads, tokens, dim] in, [batch, tokens, heads, dim] out."""
    cache: KVCache | None = getattr(module, "reasonry_cache", None)
    if cache is None or cache.layout is None:  # a forward outside the engine's loop (model.generate, training)
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    window = kwargs.get("sliding_window", getattr(module, "sliding_window", None))
    return attend(cache, module.layer_idx, query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2),
                  scaling, window, kwargs.get("softcap")), None


def attend(cache: KVCache, layer: int, query: torch.Tensor, key: torch.Tensor | None, value: torch.Tensor | None,
           scaling: float | None, window: int | None, softcap: float | None = None) -> torch.Tensor:
    """Store the new keys and values of `cache.layout` in layer `layer`'s slots (None: already stored) and
    attend; every tensor is [batch, tokens, heads, dim] (views with any token and head strides). A key is seen
    by a query `window` positions later at most; `softcap` (Gemma 2): scores -> softcap * tanh(scores / softcap)."""
    layout = cache.layout
    assert layout is not None
    batch, q_len, heads, dim = query.shape
    k_cache, v_cache = cache.keys[layer], cache.values[layer]
    kv_heads = k_cache.shape[2]
    k_flat, v_flat = k_cache.view(-1, kv_heads, dim), v_cache.view(-1, kv_heads, dim)
    if key is not None and value is not None:
        k_flat.index_copy_(0, layout.write, key.reshape(-1, kv_heads, dim))
        v_flat.index_copy_(0, layout.write, value.reshape(-1, kv_heads, dim))
    scale = scaling if scaling is not None else dim ** -0.5
    if cache.flash:
        out = torch.ops.aten._flash_attention_forward(
            query.reshape(-1, heads, dim), k_flat, v_flat, layout.cu_q, layout.cu_k, layout.max_q, cache.max_len,
            0.0, layout.max_q > 1, False, scale=scale, seqused_k=layout.used_k,
            window_size_left=window - 1 if window else None)[0]
        return out.view(batch, q_len, heads, dim)
    groups = heads // kv_heads
    if layout.spans is None:  # a decode step: row i is slot i, one query each
        keys = k_cache[:batch, : layout.kv_len].transpose(1, 2)  # views, no copy
        values = v_cache[:batch, : layout.kv_len].transpose(1, 2)
        positions = torch.arange(layout.kv_len, device=query.device)[None, :]
        mask = positions < layout.used_k[:, None]
        if window:
            mask &= positions >= layout.used_k[:, None] - window
        # Grouped-query attention: a group's query heads along the query axis, so the keys are not repeated.
        grouped = query.reshape(batch, kv_heads, groups, dim)
        out = _attend(grouped, keys, values, mask[:, None, None, :].expand(batch, 1, groups, -1), scale, softcap)
        return out.reshape(batch, q_len, heads, dim)
    pieces = []
    for start, end, slot, used in layout.spans:  # prefill: each chunk attends causally to its slot's keys
        keys, values = k_cache[slot, :used].transpose(0, 1)[None], v_cache[slot, :used].transpose(0, 1)[None]
        rows = torch.arange(used - (end - start), used, device=query.device)[:, None]
        positions = torch.arange(used, device=query.device)[None, :]
        mask = (positions <= rows) & (positions > rows - window) if window else positions <= rows
        chunk = query[0, start:end].transpose(0, 1).reshape(kv_heads, -1, dim)[None]  # [1, kv_heads, groups * tokens, dim]
        out = _attend(chunk, keys, values, mask[None].expand(groups, -1, -1).reshape(1, 1, groups * (end - start), -1),
                      scale, softcap)
        pieces.append(out.reshape(heads, end - start, dim))
    return torch.cat(pieces, dim=1).transpose(0, 1)[None]


def _attend(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, scale: float,
            softcap: float | None) -> torch.Tensor:
    """Masked attention over [rows, kv_heads, queries, dim] and [rows, kv_heads, keys, dim]."""
    if not softcap:
        return F.scaled_dot_product_attention(query, keys, values, attn_mask=mask, scale=scale)
    scores = torch.matmul(query, keys.transpose(-1, -2)).float() * scale
    scores = torch.tanh(scores / softcap) * softcap
    probs = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1).to(values.dtype)
    return torch.matmul(probs, values)


def attach(model: Any, cache: KVCache) -> None:
    """Route the model's attention through `slot_attention` on `cache`."""
    global _registered
    from transformers import AttentionInterface

    if not _registered:
        AttentionInterface.register(NAME, slot_attention)
        try:
            from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

            AttentionMaskInterface.register(NAME, sdpa_mask)
        except ImportError:
            pass
        _registered = True
    model.set_attn_implementation(NAME)
    for module in model.modules():
        if hasattr(module, "layer_idx") and type(module).__name__.endswith("Attention"):
            module.reasonry_cache = cache
