"""The scheduler: which sequences hold a slot, which wait, which prompt chunks run next, and what the tokens
read back from the device mean (end of sequence, length limit, stop string, cancellation).

Slots are handed out lowest first, so the running sequences stay packed at the front and the decode batch
(the slot prefix up to the highest one in use) stays small; when nothing waits and it would shrink the batch,
`compaction` moves the highest sequences down into the holes that finished ones left.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class Sequence:
    request: Any  # engines.base.Request
    text: str  # the prompt as rendered
    prompt: list[int]
    max_new: int  # the request's max_new_tokens, clipped to what the slot holds
    seed: int
    sink: Any  # queue.Queue the results (and, when streaming, text pieces) go to
    stream: bool = False
    submitted: float = field(default_factory=time.perf_counter)
    slot: int = -1
    prefilled: int = 0  # prompt tokens already in the cache
    tokens: list[int] = field(default_factory=list)
    finish: str | None = None  # "stop" | "length" once done
    sent: int = 0  # characters already streamed
    cancelled: threading.Event = field(default_factory=threading.Event)
    retired: bool = False  # finished or cancelled and out of the scheduler; a window still in flight skips it

    @property
    def params(self) -> Any:
        return self.request.params

    @property
    def length(self) -> int:
        """Positions in the cache once the last drawn token is written."""
        return len(self.prompt) + len(self.tokens)


class Scheduler:
    def __init__(self, slots: int, chunk_tokens: int) -> None:
        self.free = list(range(slots))  # a heap: lowest slot first
        self.waiting: deque[Sequence] = deque()
        self.prefilling: list[Sequence] = []
        self.running: dict[int, Sequence] = {}  # slot -> sequence that decodes
        self.chunk_tokens = chunk_tokens

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def busy(self) -> bool:
        return bool(self.waiting or self.prefilling or self.running)

    def admit(self) -> list[Sequence]:
        """Give free slots to waiting sequences, oldest first; return those admitted."""
        admitted = []
        while self.waiting and self.free:
            seq = self.waiting.popleft()
            if seq.cancelled.is_set():
                continue
            seq.slot = heapq.heappop(self.free)
            self.prefilling.append(seq)
            admitted.append(seq)
        return admitted

    def next_chunks(self) -> list[tuple[Sequence, int, list[int]]]:
        """Prompt chunks for one prefill forward, at most `chunk_tokens` in all (at least one chunk)."""
        chunks, budget = [], self.chunk_tokens
        for seq in self.prefilling:
            take = min(len(seq.prompt) - seq.prefilled, budget)
            if take <= 0 and chunks:
                break
            chunks.append((seq, seq.prefilled, seq.prompt[seq.prefilled: seq.prefilled + max(take, 1)]))
            budget -= take
            if budget <= 0:
                break
        return chunks

    def prefilled(self, chunks: list[tuple[Sequence, int, list[int]]]) -> list[Sequence]:
        """Record chunks as written; return the sequences whose whole prompt is now in the cache."""
        done = []
        for seq, start, chunk in chunks:
            seq.prefilled = start + len(chunk)
            if seq.prefilled >= len(seq.prompt):
                self.prefilling.remove(seq)
                self.running[seq.slot] = seq
                done.append(seq)
        return done

    def release(self, seq: Sequence) -> None:
        self.running.pop(seq.slot, None)
        if seq in self.prefilling:
            self.prefilling.remove(seq)
        heapq.heappush(self.free, seq.slot)

    def highest_slot(self) -> int:
        return max(self.running, default=-1)

    def accept(self, seq: Sequence, tokens: list[int], eos: set[int], stop_hit: Callable[[Sequence], bool]) -> bool:
        """Append tokens drawn for `seq` (read back from the device); True when the sequence has finished."""
        for token in tokens:
            seq.tokens.append(token)
            if token in eos:
                seq.finish = "stop"
            elif len(seq.tokens) >= seq.max_new:
                seq.finish = "length"
            if seq.finish:
                break
        if not seq.finish and seq.params.stop and stop_hit(seq):
            seq.finish = "stop"
        return seq.finish is not None

    def compaction(self, bucket: Callable[[int], int]) -> list[tuple[int, int]]:
        """(from, to) slot moves that pack the running sequences into the lowest slots; only when none wait and
        packing shrinks the decode batch (`bucket`: highest slot -> batch size)."""
        if self.waiting or self.prefilling or not self.running:
            return []
        if bucket(max(self.running)) <= bucket(len(self.running) - 1):
            return []
        moves = []
        while self.free and self.free[0] < max(self.running):
            src = max(self.running)
            dst = heapq.heappop(self.free)
            seq = self.running.pop(src)
            seq.slot = dst
            self.running[dst] = seq
            heapq.heappush(self.free, src)
            moves.append((src, dst))
        return moves
