"""The KV cache: one key and one value tensor per layer, [slots + 1, kv_heads, max_len, head_dim], allocated
once. Each running sequence owns a slot; the extra last slot takes the writes of padded prompt positions.

The model keeps its own modules (PEFT adapters included): `slot_attention` is registered with transformers'
AttentionInterface, writes a forward's new keys and values into the slots and attends over `kv_len` positions
with a [rows, 1, q_len, kv_len] bool mask that marks each row's valid keys. Grouped-query attention lays the
query heads of a group along the query axis, so the cache is never repeated per head.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

NAME = "reasonry_slots"
ATTENTION = os.environ.get("REASONRY_ATTENTION", "sdpa")  # "sdpa" or "matmul" (benchmarks compare the two)
_registered = False


@dataclass
class Layout:
    """Where the current forward writes and what it reads; set by the runner before each forward."""

    write_slot: torch.Tensor  # [rows * q_len] slot of each new position
    write_pos: torch.Tensor  # [rows * q_len] position of each new position
    kv_len: int  # keys attended: positions [0, kv_len)
    rows: torch.Tensor | None = None  # slot of each batch row; None when the batch is slots [0, rows)


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


class KVCache:
    def __init__(self, config: Any, slots: int, max_len: int, dtype: torch.dtype, device: torch.device) -> None:
        layers, kv_heads, head_dim = kv_shape(config)
        shape = (slots + 1, kv_heads, max_len, head_dim)
        self.slots, self.max_len, self.scratch = slots, max_len, slots
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.layout: Layout | None = None

    def move(self, src: torch.Tensor, dst: torch.Tensor, length: int) -> None:
        """Copy the first `length` positions of slots `src` into slots `dst` (compaction)."""
        for tensors in (self.keys, self.values):
            for layer in tensors:
                layer[:, :, :length].index_copy_(0, dst, layer[src, :, :length])


def slot_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                   attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                   **kwargs: Any) -> tuple[torch.Tensor, None]:
    cache: KVCache | None = getattr(module, "reasonry_cache", None)
    layout = cache.layout if cache is not None else None
    if layout is None:  # a forward outside the engine's loop (model.generate, training): plain SDPA
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    assert attention_mask is not None
    rows, heads, q_len, dim = query.shape
    kv_heads = key.shape[1]
    k_cache, v_cache = cache.keys[module.layer_idx], cache.values[module.layer_idx]
    k_cache[layout.write_slot, :, layout.write_pos] = key.transpose(1, 2).reshape(-1, kv_heads, dim)
    v_cache[layout.write_slot, :, layout.write_pos] = value.transpose(1, 2).reshape(-1, kv_heads, dim)
    if layout.rows is None:
        keys, values = k_cache[:rows, :, : layout.kv_len], v_cache[:rows, :, : layout.kv_len]
    else:
        keys, values = k_cache[layout.rows, :, : layout.kv_len], v_cache[layout.rows, :, : layout.kv_len]
    groups = heads // kv_heads
    grouped = query.reshape(rows, kv_heads, groups * q_len, dim)
    mask = attention_mask[:, :, :, : layout.kv_len]
    if groups > 1:
        mask = mask[:, :, None].expand(rows, 1, groups, q_len, layout.kv_len).reshape(rows, 1, groups * q_len, -1)
    if ATTENTION == "matmul":
        scores = torch.matmul(grouped, keys.transpose(-1, -2)).float() * (scaling or dim ** -0.5)
        probs = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1).to(values.dtype)
        out = torch.matmul(probs, values)
    else:
        out = F.scaled_dot_product_attention(grouped, keys, values, attn_mask=mask, scale=scaling)
    return out.reshape(rows, heads, q_len, dim).transpose(1, 2).contiguous(), None


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
