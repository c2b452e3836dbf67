"""Attention for batched decoding: grouped-query attention without copying the KV cache per query head.

transformers' SDPA path repeats each KV head for its query heads whenever there is a padding mask (always,
for left-padded batches), which rewrites the whole cache every decode step. For a one-token query the
query heads of a group can instead be laid out along the query-length axis, so one SDPA call per KV head
serves them all with the same mask. Prefill and anything else go through transformers' own SDPA.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

NAME = "reasonry_sdpa"
_registered = False


def grouped_decode_sdpa(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                        attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                        **kwargs: Any) -> tuple[torch.Tensor, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    batch, heads, q_len, dim = query.shape
    kv_heads = key.shape[1]
    if q_len != 1 or heads == kv_heads or attention_mask is None or attention_mask.dtype != torch.bool:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    groups = heads // kv_heads
    grouped = query.reshape(batch, kv_heads, groups, dim)
    mask = attention_mask[:, :, -1:, : key.shape[-2]].expand(batch, 1, groups, key.shape[-2])
    out = F.scaled_dot_product_attention(grouped, key, value, attn_mask=mask, dropout_p=0.0, scale=scaling)
    return out.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous(), None


def use_grouped_decode(model: Any) -> bool:
    """Switch a loaded model to the grouped decode attention when it runs on SDPA; False when not applicable."""
    global _registered
    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    except ImportError:
        return False
    if not _registered:
        AttentionInterface.register(NAME, grouped_decode_sdpa)
        AttentionMaskInterface.register(NAME, sdpa_mask)
        _registered = True
    try:
        model.set_attn_implementation(NAME)
    except (ValueError, AttributeError):
        return False
    return True
