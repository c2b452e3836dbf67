"""The model runner: the device-side state of every slot, chunked prefill, and decode steps (captured as one
CUDA graph per batch-size and key-length bucket on a GPU, eager on a CPU).

A decode batch is always the slot prefix [0, batch): slots that are free or still in prefill ride along
"parked" (they write to the position `park`, past every key any row attends to, and their length does not grow).
"""

from __future__ import annotations

from typing import Any

import torch

from reasonry.engines.hf.cache import KVCache, Layout
from reasonry.engines.hf.sampling import BatchPlan, RowParams, sample


def round_up(value: int, step: int) -> int:
    return -(-value // step) * step


class ModelRunner:
    def __init__(self, model: Any, cache: KVCache, vocab: int, *, graphs: bool, kv_step: int) -> None:
        self.model, self.cache, self.vocab = model, cache, vocab
        device = cache.keys[0].device
        slots = cache.slots
        self.device, self.graphs, self.kv_step = device, graphs, kv_step
        self.park = cache.max_len - 1
        self.tokens = torch.zeros(slots, dtype=torch.long, device=device)  # last token of each slot
        self.lens = torch.full((slots,), self.park, dtype=torch.long, device=device)  # its position
        self.active = torch.zeros(slots, dtype=torch.long, device=device)  # 1 while the slot decodes
        self.steps = torch.zeros(slots, dtype=torch.long, device=device)  # tokens drawn so far
        self.temperature = torch.zeros(slots, dtype=torch.float32, device=device)
        self.top_p = torch.ones(slots, dtype=torch.float32, device=device)
        self.top_k = torch.zeros(slots, dtype=torch.long, device=device)
        self.penalty = torch.ones(slots, dtype=torch.float32, device=device)
        self.seeds = torch.zeros(slots, dtype=torch.long, device=device)
        # Token id at each position of each slot (prompt, then output): the repetition penalty's memory.
        self.history = torch.zeros((slots, cache.max_len), dtype=torch.long, device=device)
        self.positions = torch.arange(max(slots, cache.max_len), device=device)
        self._graphs: dict[tuple[int, int], tuple[Any, torch.Tensor]] = {}
        self._pool = torch.cuda.graph_pool_handle() if graphs else None

    # -- slot state ------------------------------------------------------------------------------------
    def set_params(self, slots: list[int], params: list[Any], seeds: list[int]) -> None:
        index = torch.tensor(slots, device=self.device)
        for state, values in ((self.temperature, [p.temperature for p in params]), (self.top_p, [p.top_p for p in params]),
                              (self.top_k, [p.top_k for p in params]),
                              (self.penalty, [p.repetition_penalty for p in params]), (self.seeds, seeds)):
            state[index] = torch.tensor(values, dtype=state.dtype, device=self.device)

    def park_slots(self, slots: list[int]) -> None:
        index = torch.tensor(slots, device=self.device)
        self.active[index] = 0
        self.lens[index] = self.park

    def move(self, src: list[int], dst: list[int], length: int) -> None:
        s, d = torch.tensor(src, device=self.device), torch.tensor(dst, device=self.device)
        self.cache.move(s, d, length)
        for state in (self.tokens, self.lens, self.active, self.steps, self.temperature, self.top_p, self.top_k,
                      self.penalty, self.seeds, self.history):
            state[d] = state[s]
        self.park_slots(src)

    def _history(self, index: torch.Tensor | slice, lens: torch.Tensor, kv_len: int) -> torch.Tensor:
        """Each row's token ids at positions [0, kv_len); positions past the row's last token repeat its first."""
        history = self.history[index, :kv_len]
        valid = self.positions[None, :kv_len] <= lens[:, None]
        return torch.where(valid, history, history[:, :1])

    def rows(self, index: torch.Tensor | slice) -> RowParams:
        return RowParams(self.temperature[index], self.top_p[index], self.top_k[index], self.penalty[index],
                         self.seeds[index], self.steps[index])

    # -- prefill ----------------------------------------------------------------------------------------
    def prefill(self, slots: list[int], starts: list[int], chunks: list[list[int]]) -> torch.Tensor:
        """Run prompt chunks (chunk i goes to positions starts[i].. of slots[i]), left-padded into one batch;
        return the logits [rows, V] of each chunk's last position."""
        width = max(len(c) for c in chunks)
        rows = len(chunks)
        ids = torch.zeros((rows, width), dtype=torch.long)
        pos = torch.zeros((rows, width), dtype=torch.long)
        write_slot = torch.full((rows, width), self.cache.scratch, dtype=torch.long)
        write_pos = torch.arange(width).repeat(rows, 1)
        for row, (slot, start, chunk) in enumerate(zip(slots, starts, chunks, strict=True)):
            pad = width - len(chunk)
            ids[row, pad:] = torch.tensor(chunk)
            pos[row, pad:] = torch.arange(start, start + len(chunk))
            write_slot[row, pad:] = slot
            write_pos[row, pad:] = pos[row, pad:]
        kv_len = min(round_up(max(s + len(c) for s, c in zip(starts, chunks, strict=True)), 16), self.cache.max_len)
        keys = torch.arange(kv_len)
        mask = keys[None, None, :] <= pos[:, :, None]  # causal; pads (position 0) see key 0 of their slot
        ids, pos, mask = ids.to(self.device), pos.to(self.device), mask[:, None].to(self.device)
        self.cache.layout = Layout(write_slot.flatten().to(self.device), write_pos.flatten().to(self.device), kv_len,
                                   rows=torch.tensor(slots, device=self.device))
        try:
            out = self.model(input_ids=ids, position_ids=pos, attention_mask=mask, use_cache=False, logits_to_keep=1)
        finally:
            self.cache.layout = None
        return out.logits[:, -1, :]

    def start_decoding(self, slots: list[int], prompts: list[list[int]], logits: torch.Tensor,
                       plan: BatchPlan) -> torch.Tensor:
        """Draw the first token of sequences whose prompt is in the cache and let their slots decode."""
        index = torch.tensor(slots, device=self.device)
        rows = torch.tensor([i for i, p in enumerate(prompts) for _ in p], device=self.device)
        columns = torch.tensor([j for p in prompts for j in range(len(p))], device=self.device)
        self.history[index[rows], columns] = torch.tensor([t for p in prompts for t in p], device=self.device)
        self.steps[index] = 0
        lens = torch.tensor([len(p) for p in prompts], device=self.device)
        kv_len = max(len(p) for p in prompts)
        first = sample(logits, self._history(index, lens - 1, kv_len) if plan.penalty else None, self.rows(index), plan)
        self.history[index, lens] = first
        self.tokens[index] = first
        self.lens[index] = lens
        self.steps[index] = 1
        self.active[index] = 1
        return first

    # -- decode -----------------------------------------------------------------------------------------
    def _forward(self, batch: int, kv_len: int) -> torch.Tensor:
        pos = self.lens[:batch, None]
        mask = (self.positions[None, :kv_len] <= pos)[:, None, None, :]
        self.cache.layout = Layout(self.positions[:batch], self.lens[:batch], kv_len)
        try:
            out = self.model(input_ids=self.tokens[:batch, None], position_ids=pos, attention_mask=mask,
                             use_cache=False, logits_to_keep=1)
        finally:
            self.cache.layout = None
        return out.logits[:, -1, :]

    def _graph(self, batch: int, kv_len: int) -> tuple[Any, torch.Tensor]:
        key = (batch, kv_len)
        if key not in self._graphs:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                self._forward(batch, kv_len)  # warm-up; rewrites the same keys the replay writes
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool):
                logits = self._forward(batch, kv_len)
            self._graphs[key] = (graph, logits)
        return self._graphs[key]

    def decode_step(self, batch: int, kv_len: int, plan: BatchPlan) -> torch.Tensor:
        """One token for every decoding slot in [0, batch); returns the tokens [batch] (parked rows: junk)."""
        if self.graphs:
            graph, logits = self._graph(batch, kv_len)
            graph.replay()
        else:
            logits = self._forward(batch, kv_len)
        lens = self.lens[:batch]
        history = self._history(slice(0, batch), lens, kv_len) if plan.penalty else None
        chosen = sample(logits, history, self.rows(slice(0, batch)), plan)
        active = self.active[:batch]
        self.history[self.positions[:batch], (lens + 1).clamp(max=self.park)] = chosen
        self.tokens[:batch] = chosen
        self.lens[:batch] += active
        self.steps[:batch] += active
        return chosen

    def batch_bucket(self, highest_slot: int) -> int:
        bucket = 1
        while bucket <= highest_slot:
            bucket *= 2
        return min(bucket, self.cache.slots)

    def kv_bucket(self, longest: int) -> int:
        return min(round_up(longest, self.kv_step), self.cache.max_len)
