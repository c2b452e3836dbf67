"""The model runner: the device-side state of every slot, packed chunked prefill, and decode steps (captured as
one CUDA graph per batch-size bucket on a GPU, all captured at start-up; eager on a CPU).

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
        self.cu_q = torch.arange(slots + 1, dtype=torch.int32, device=device)  # a decode row is one query
        self.cu_k = self.cu_q * cache.max_len  # the batch is the slot prefix: row i reads slot i
        self.no_mask = torch.ones((1, 1, 1, 1), dtype=torch.bool, device=device)  # 4-D: transformers passes it on
        self._graphs: dict[tuple[int, int], tuple[Any, torch.Tensor]] = {}
        self._pool = torch.cuda.graph_pool_handle() if graphs else None

    def put(self, values: list | torch.Tensor, dtype: torch.dtype = torch.long) -> torch.Tensor:
        """Host values on the device. On a GPU through pinned memory without waiting: a copy from pageable
        memory first waits for every queued kernel, which would stall the host behind the GPU at each prefill."""
        host = values.to(dtype) if isinstance(values, torch.Tensor) else torch.tensor(values, dtype=dtype)
        if self.device.type != "cuda":
            return host
        return host.pin_memory().to(self.device, non_blocking=True)

    # -- slot state ------------------------------------------------------------------------------------
    def set_params(self, slots: list[int], params: list[Any], seeds: list[int]) -> None:
        index = self.put(slots)
        for state, values in ((self.temperature, [p.temperature for p in params]), (self.top_p, [p.top_p for p in params]),
                              (self.top_k, [p.top_k for p in params]),
                              (self.penalty, [p.repetition_penalty for p in params]), (self.seeds, seeds)):
            state[index] = self.put(values, state.dtype)

    def park_slots(self, slots: list[int]) -> None:
        index = self.put(slots)
        self.active[index] = 0
        self.lens[index] = self.park

    def move(self, src: list[int], dst: list[int], length: int) -> None:
        s, d = self.put(src), self.put(dst)
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
        """Run prompt chunks (chunk i goes to positions starts[i].. of slots[i]) packed into one forward, no
        padding; return the logits [chunks, V] of each chunk's last position."""
        length = self.cache.max_len
        ids = torch.tensor([t for c in chunks for t in c], dtype=torch.long)
        pos = torch.cat([torch.arange(start, start + len(c)) for start, c in zip(starts, chunks, strict=True)])
        slot_of = torch.tensor([slot for slot, c in zip(slots, chunks, strict=True) for _ in c])
        ends = torch.tensor([len(c) for c in chunks]).cumsum(0)
        used = [start + len(c) for start, c in zip(starts, chunks, strict=True)]
        spans = None if self.cache.flash else [
            (int(end) - len(c), int(end), slot, u) for end, c, slot, u in zip(ends, chunks, slots, used, strict=True)]
        put = self.put
        self.cache.layout = Layout(
            write=put(slot_of * length + pos), cu_q=put(torch.cat([torch.zeros(1, dtype=torch.long), ends]), torch.int32),
            cu_k=put([s * length for s in slots] + [0], torch.int32), used_k=put(used, torch.int32),
            max_q=max(len(c) for c in chunks), spans=spans)
        try:
            out = self.model(input_ids=put(ids[None]), position_ids=put(pos[None]), attention_mask=self.no_mask,
                             use_cache=False, logits_to_keep=put(ends - 1))
        finally:
            self.cache.layout = None
        return out.logits[0]

    def start_decoding(self, slots: list[int], prompts: list[list[int]], logits: torch.Tensor,
                       plan: BatchPlan) -> torch.Tensor:
        """Draw the first token of sequences whose prompt is in the cache and let their slots decode."""
        index = self.put(slots)
        rows = self.put([i for i, p in enumerate(prompts) for _ in p])
        columns = self.put([j for p in prompts for j in range(len(p))])
        self.history[index[rows], columns] = self.put([t for p in prompts for t in p])
        self.steps[index] = 0
        lens = self.put([len(p) for p in prompts])
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
        lens, active = self.lens[:batch], self.active[:batch]
        self.cache.layout = Layout(
            write=self.positions[:batch] * self.cache.max_len + lens, cu_q=self.cu_q[: batch + 1],
            cu_k=self.cu_k[: batch + 1], used_k=torch.where(active > 0, lens + 1, 1).to(torch.int32), max_q=1,
            kv_len=kv_len)
        try:
            # Parked rows write to the park row but sit at position 0: RoPE variants that pick their scaling from
            # the batch's largest position (longrope, dynamic) would otherwise rescale every row.
            out = self.model(input_ids=self.tokens[:batch, None], position_ids=(lens * active)[:, None],
                             attention_mask=self.no_mask, use_cache=False, logits_to_keep=1)
        finally:
            self.cache.layout = None
        return out.logits[:, -1, :]

    def _graph(self, batch: int, kv_len: int) -> tuple[Any, torch.Tensor]:
        key = (batch, 0 if self.cache.flash else kv_len)  # the varlen kernel reads each row's own length
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

    def drop_graphs(self) -> None:
        """Forget every captured decode graph (after the model changed, e.g. a hook was added); later steps
        capture anew, into a new memory pool (capturing into a pool earlier graphs used trips the allocator)."""
        self._graphs.clear()
        if self.graphs:
            self._pool = torch.cuda.graph_pool_handle()

    def capture(self) -> None:
        """Capture the decode graph of every batch-size bucket up front (engine start-up, like vLLM)."""
        if self.graphs and self.cache.flash:
            with torch.inference_mode():
                for batch in self.batch_buckets():
                    self._graph(batch, 0)
            torch.cuda.synchronize(self.device)

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

    def batch_buckets(self) -> list[int]:
        sizes = [1 << i for i in range(self.cache.slots.bit_length()) if 1 << i < self.cache.slots]
        return [*sizes, self.cache.slots]

    def batch_bucket(self, highest_slot: int) -> int:
        bucket = 1
        while bucket <= highest_slot:
            bucket *= 2
        return min(bucket, self.cache.slots)

    def kv_bucket(self, longest: int) -> int:
        return min(round_up(longest, self.kv_step), self.cache.max_len)
