"""Batched logits processing and sampling that give each request the same tokens whatever batch it is in.

Order and semantics follow transformers' generate: repetition penalty on every token already in the
prompt or the output, then temperature, top-k, top-p. The random draw is a Gumbel-max over noise hashed
from (request seed, step, token id), so a request's sample does not depend on its neighbours.
"""

from __future__ import annotations

import hashlib

import torch

_M1 = 0x9E3779B97F4A7C15 - (1 << 64)
_M2 = 0xBF58476D1CE4E5B9 - (1 << 64)
_M3 = 0x94D049BB133111EB - (1 << 64)
_LOW53 = (1 << 53) - 1


def request_seed(seed: int, sample_index: int, prompt: str) -> int:
    digest = hashlib.sha256(f"{seed}:{sample_index}:{prompt}".encode()).digest()
    return int.from_bytes(digest[:7], "little")


def _logical_shift(x: torch.Tensor, bits: int) -> torch.Tensor:
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def hashed_uniform(seeds: torch.Tensor, step: int, token_ids: torch.Tensor) -> torch.Tensor:
    """Uniform (0, 1) noise from splitmix64 of (seed, step, token); seeds [B], token_ids [B, K] -> [B, K]."""
    step_term = torch.tensor(step + 1, dtype=torch.long, device=seeds.device) * _M2
    x = seeds[:, None] * _M1 + step_term + token_ids * _M3
    x = (x ^ _logical_shift(x, 30)) * _M2
    x = (x ^ _logical_shift(x, 27)) * _M3
    x = x ^ _logical_shift(x, 31)
    return ((_logical_shift(x, 11) & _LOW53).to(torch.float64) + 0.5) / float(1 << 53)


def apply_repetition_penalty(logits: torch.Tensor, history: torch.Tensor, penalty: float) -> torch.Tensor:
    """Penalise every token id in `history` [B, L] (prompt + output so far, no padding ids), in place."""
    if penalty == 1.0:
        return logits
    values = logits.gather(1, history)
    values = torch.where(values < 0, values * penalty, values / penalty)
    return logits.scatter_(1, history, values)


def select_tokens(
    logits: torch.Tensor, history: torch.Tensor | None, seeds: torch.Tensor, step: int, *,
    temperature: float, top_k: int, top_p: float, repetition_penalty: float,
) -> torch.Tensor:
    """Next token per row of `logits` [B, V] (float32)."""
    if history is not None:
        logits = apply_repetition_penalty(logits, history, repetition_penalty)
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    vocab = logits.shape[-1]
    k = top_k if 0 < top_k < vocab else vocab
    if k < vocab:
        values, indices = torch.topk(logits, k, dim=-1)  # sorted, descending
    else:
        values, indices = torch.sort(logits, dim=-1, descending=True)
    if top_p < 1.0:
        probs = values.softmax(dim=-1)
        # Keep the smallest prefix whose mass reaches top_p (at least one token), as transformers does.
        drop = (probs.cumsum(dim=-1) - probs) >= top_p
        drop[:, 0] = False
        values = values.masked_fill(drop, float("-inf"))
    noise = hashed_uniform(seeds, step, indices)
    gumbel = -torch.log(-torch.log(noise)).to(values.dtype)
    choice = (values + gumbel).argmax(dim=-1, keepdim=True)
    return indices.gather(-1, choice).squeeze(-1)
