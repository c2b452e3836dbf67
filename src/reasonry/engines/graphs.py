"""`--batching graphs`: decode with a static KV cache and, on CUDA, the decode step captured as a CUDA graph.

The eager loop launches every kernel of every layer from Python at each step; a captured graph replays the
whole forward pass with one launch. Shapes must not change between steps, so the batch is not compacted
when rows finish early; use it for long, equal-length work (benchmarks, fixed budgets).
"""

from __future__ import annotations

from typing import Any

import torch

from reasonry.config import SamplingParams
from reasonry.engines.sampling import select_tokens


def _prefill_mask(mask: torch.Tensor, total: int) -> torch.Tensor:
    """[B, 1, W, total] bool: causal over the prompt, padding keys hidden; pad queries see only themselves."""
    batch, width = mask.shape
    valid = mask.bool()
    causal = torch.ones(width, width, dtype=torch.bool, device=mask.device).tril()
    attend = causal[None] & valid[:, None, :]
    attend |= torch.eye(width, dtype=torch.bool, device=mask.device)[None] & ~valid[:, :, None]
    full = torch.zeros(batch, 1, width, total, dtype=torch.bool, device=mask.device)
    full[:, 0, :, :width] = attend
    return full


def decode_with_static_cache(engine: Any, batch: list, params: SamplingParams) -> tuple[list[list[int]], list[bool]]:
    from transformers import StaticCache

    model = engine.model
    input_ids, mask, seeds, width = engine._prepare(batch, params)
    rows, steps = len(batch), params.max_new_tokens
    total = width + steps
    device = input_ids.device
    cache = StaticCache(config=model.config, max_cache_len=total)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, position_ids=positions, attention_mask=_prefill_mask(mask, total),
                past_key_values=cache, cache_position=torch.arange(width, device=device), use_cache=True,
                logits_to_keep=1)
    history = None
    if params.repetition_penalty != 1.0:
        history = torch.empty((rows, total), dtype=torch.long, device=device)
        history[:, :width] = torch.where(mask.bool(), input_ids, input_ids[:, -1:])
    eos = torch.tensor(engine.eos_ids or [-1], device=device)
    outputs = torch.empty((rows, steps), dtype=torch.long, device=device)
    done = torch.zeros(rows, dtype=torch.bool, device=device)
    finished_at = torch.full((rows,), steps, dtype=torch.long, device=device)

    static_input = torch.zeros((rows, 1), dtype=torch.long, device=device)
    static_position = positions[:, -1:].clone()
    static_slot = torch.tensor([width], dtype=torch.long, device=device)
    static_mask = torch.zeros((rows, 1, 1, total), dtype=torch.bool, device=device)
    static_mask[:, 0, 0, :width] = mask.bool()

    def forward() -> torch.Tensor:
        return model(input_ids=static_input, position_ids=static_position, attention_mask=static_mask,
                     past_key_values=cache, cache_position=static_slot, use_cache=True, logits_to_keep=1).logits

    logits = out.logits
    step_fn = forward
    for step in range(steps):
        chosen = select_tokens(logits[:, -1, :].float(), history[:, : width + step] if history is not None else None,
                               seeds, step, temperature=params.temperature, top_k=params.top_k, top_p=params.top_p,
                               repetition_penalty=params.repetition_penalty)
        outputs[:, step] = chosen
        if history is not None:
            history[:, width + step] = chosen
        newly = torch.isin(chosen, eos) & ~done
        finished_at = torch.where(newly, step + 1, finished_at)
        done |= newly
        if step + 1 == steps or (engine.eos_ids and bool(done.all())):
            break
        static_input.copy_(chosen[:, None])
        static_position.add_(1)
        static_slot.fill_(width + step)
        static_mask[:, 0, 0, width + step] = True
        if step == 0 and device.type == "cuda":
            step_fn = _capture(forward, lambda: _rewind(cache, width))
        logits = step_fn()
    lengths = finished_at.tolist()
    return [row[:n] for row, n in zip(outputs.tolist(), lengths, strict=True)], done.tolist()


def _rewind(cache: Any, length: int) -> None:
    """Undo warm-up writes: transformers' static layers place each update at their own running length."""
    for layer in getattr(cache, "layers", []):
        running = getattr(layer, "cumulative_length", None)
        if isinstance(running, torch.Tensor):
            running.fill_(length)


def _capture(forward: Any, rewind: Any) -> Any:
    """Warm up on a side stream, capture one decode step, return a replay function (its output is static)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            forward()
    torch.cuda.current_stream().wait_stream(stream)
    rewind()  # the warm-up steps wrote slots the replays overwrite; the visible keys come from the mask
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_logits = forward()

    def replay() -> torch.Tensor:
        graph.replay()
        return static_logits

    return replay
