"""Triton kernels for the engine on a GPU, each doing in one launch what takes several torch kernels:
- `rope_store`: rotary embeddings of a packed q/k/v projection's queries and keys, the rotated keys and the
  values written straight into their KV-cache rows (replaces 3 rotary kernels and 2 cache writes per layer);
- `silu_mul`: silu(gate) * up of a joined gate/up projection (replaces 2);
- `add_rms_norm`: a residual add and the RMSNorm after it (replaces 2).
All compute in float32 and round once. Used only where `usable` says so (CUDA, Triton importable, a power-of-two
head size); REASONRY_KERNELS=torch turns them off, for comparison.
"""

from __future__ import annotations

import functools
import logging
import os
from types import SimpleNamespace
from typing import Any

import torch


@functools.cache
def _triton() -> Any:
    try:
        import triton
        import triton.language as tl
    except ImportError:
        return None

    @triton.jit
    def rope_store_kernel(qkv, cos, sin, write, q_out, k_cache, v_cache, qkv_stride, cos_stride,
                          Q_HEADS: tl.constexpr, KV_HEADS: tl.constexpr, HALF: tl.constexpr):
        token = tl.program_id(0)
        head = tl.program_id(1)
        offs = tl.arange(0, HALF)
        source = qkv + token.to(tl.int64) * qkv_stride + head * 2 * HALF
        x1 = tl.load(source + offs).to(tl.float32)
        x2 = tl.load(source + HALF + offs).to(tl.float32)
        if head < Q_HEADS + KV_HEADS:
            angle = token.to(tl.int64) * cos_stride
            c1 = tl.load(cos + angle + offs).to(tl.float32)
            c2 = tl.load(cos + angle + HALF + offs).to(tl.float32)
            s1 = tl.load(sin + angle + offs).to(tl.float32)
            s2 = tl.load(sin + angle + HALF + offs).to(tl.float32)
            y1 = x1 * c1 - x2 * s1
            y2 = x2 * c2 + x1 * s2
            if head < Q_HEADS:
                target = q_out + (token.to(tl.int64) * Q_HEADS + head) * 2 * HALF
            else:
                row = tl.load(write + token)
                target = k_cache + (row * KV_HEADS + head - Q_HEADS) * 2 * HALF
            tl.store(target + offs, y1.to(target.dtype.element_ty))
            tl.store(target + HALF + offs, y2.to(target.dtype.element_ty))
        else:
            row = tl.load(write + token)
            target = v_cache + (row * KV_HEADS + head - Q_HEADS - KV_HEADS) * 2 * HALF
            tl.store(target + offs, x1.to(target.dtype.element_ty))
            tl.store(target + HALF + offs, x2.to(target.dtype.element_ty))

    @triton.jit
    def silu_mul_kernel(gate_up, out, width, BLOCK: tl.constexpr):
        token = tl.program_id(0).to(tl.int64)
        offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        inside = offs < width
        gate = tl.load(gate_up + token * 2 * width + offs, mask=inside).to(tl.float32)
        up = tl.load(gate_up + token * 2 * width + width + offs, mask=inside).to(tl.float32)
        value = gate / (1.0 + tl.exp(-gate)) * up
        tl.store(out + token * width + offs, value.to(out.dtype.element_ty), mask=inside)

    @triton.jit
    def add_rms_norm_kernel(x, residual, weight, total, normed, width, eps, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64) * width
        offs = tl.arange(0, BLOCK)
        inside = offs < width
        value = tl.load(x + row + offs, mask=inside).to(tl.float32) + tl.load(residual + row + offs, mask=inside).to(tl.float32)
        value = value.to(total.dtype.element_ty)  # the residual stream keeps the model's precision, as in torch
        tl.store(total + row + offs, value, mask=inside)
        value = value.to(tl.float32)
        scaled = (value * tl.rsqrt(tl.sum(value * value, axis=0) / width + eps)).to(normed.dtype.element_ty)
        result = tl.load(weight + offs, mask=inside).to(tl.float32) * scaled.to(tl.float32)
        tl.store(normed + row + offs, result.to(normed.dtype.element_ty), mask=inside)

    return SimpleNamespace(triton=triton, rope_store=rope_store_kernel, silu_mul=silu_mul_kernel,
                           add_rms_norm=add_rms_norm_kernel)


def usable(tensor: torch.Tensor, head_dim: int | None = None) -> bool:
    if not tensor.is_cuda or os.environ.get("REASONRY_KERNELS", "triton") != "triton" or not _builds(tensor.device):
        return False
    return head_dim is None or (head_dim >= 16 and head_dim & (head_dim - 1) == 0)


@functools.cache
def _builds(device: torch.device) -> bool:
    """Triton is importable and its kernels compile and run here (a missing compiler fails at the first launch);
    if not, the engine runs the torch code and says why once."""
    if _triton() is None:
        return False
    try:
        x = torch.ones(2, 128, device=device)
        silu_mul(x)
        add_rms_norm(x, x, x[0], 1e-6)
        cache = torch.zeros(1, 1, 128, device=device)
        rope_store(torch.ones(1, 3 * 128, device=device), x[:1], x[:1], torch.zeros(1, dtype=torch.long, device=device),
                   cache, cache.clone(), 1, 1)
        torch.cuda.synchronize(device)
    except Exception as exc:
        logging.getLogger(__name__).warning("Triton kernels off (%s: %s); the engine runs torch kernels",
                                            type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        return False
    return True


def rope_store(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, write: torch.Tensor, k_cache: torch.Tensor,
               v_cache: torch.Tensor, q_heads: int, kv_heads: int) -> torch.Tensor:
    """`qkv` [tokens, (q_heads + 2 kv_heads) * dim] (rows contiguous), `cos`/`sin` [tokens, dim] (transformers'
    rotate-half layout), `write` [tokens] flat cache rows; returns the rotated queries [tokens, q_heads, dim]."""
    tokens = qkv.shape[0]
    dim = k_cache.shape[-1]
    queries = torch.empty((tokens, q_heads, dim), dtype=qkv.dtype, device=qkv.device)
    if tokens:
        _triton().rope_store[(tokens, q_heads + 2 * kv_heads)](
            qkv, cos, sin, write, queries, k_cache, v_cache, qkv.stride(0), cos.stride(0), Q_HEADS=q_heads,
            KV_HEADS=kv_heads, HALF=dim // 2)
    return queries


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up for `gate_up` [..., 2 * width] (gate first), contiguous."""
    lib = _triton()
    width = gate_up.shape[-1] // 2
    flat = gate_up.reshape(-1, 2 * width)
    out = torch.empty((flat.shape[0], width), dtype=gate_up.dtype, device=gate_up.device)
    block = 1024
    if flat.shape[0]:
        lib.silu_mul[(flat.shape[0], lib.triton.cdiv(width, block))](flat, out, width, BLOCK=block)
    return out.view(*gate_up.shape[:-1], width)


def add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(x + residual, rms_norm(x + residual) * weight) for contiguous [..., width] tensors, transformers' RMSNorm
    (normalised in float32, rounded, then scaled)."""
    lib = _triton()
    width = x.shape[-1]
    total, normed = torch.empty_like(x), torch.empty_like(x)
    rows = x.numel() // width
    if rows:
        lib.add_rms_norm[(rows,)](x, residual, weight, total, normed, width, eps,
                                  BLOCK=lib.triton.next_power_of_2(width))
    return total, normed
