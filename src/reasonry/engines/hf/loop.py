"""The decode loop: one background thread per engine that admits sequences into free slots, prefills their
prompts in chunks between decode windows, decodes every running sequence a few steps at a time, and hands each
sequence's result to its consumer the moment it finishes. `HFEngine.generate` and `stream` (and so `reasonry
serve`, which calls them from several threads) are consumers of this one loop.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from reasonry.engines.hf.runner import ModelRunner
from reasonry.engines.hf.sampling import plan_for
from reasonry.engines.hf.scheduler import Scheduler, Sequence


class LoopFailed:
    """Put into a consumer's sink when the loop thread dies; carries the error line."""

    def __init__(self, message: str) -> None:
        self.message = message


class DecodeLoop:
    def __init__(self, runner: ModelRunner, scheduler: Scheduler, *, eos: set[int], poll_every: int,
                 prefill_chunks: int, overlap: bool, finish: Any, stop_hit: Any, stream_piece: Any) -> None:
        self.runner, self.scheduler, self.eos, self.poll_every = runner, scheduler, eos, poll_every
        self.overlap = overlap  # launch the next window before reading the last one back (GPU)
        self.pending: Window | None = None
        self.prefill_chunks = prefill_chunks  # prompt chunks run between two decode windows while others decode
        self.finish, self.stop_hit, self.stream_piece = finish, stop_hit, stream_piece
        self.inbox: queue.Queue[Sequence | None] = queue.Queue()
        self.failed: str | None = None
        self.stats: dict[str, Any] = {"prefill_s": 0.0, "decode_s": 0.0, "poll_s": 0.0, "steps": 0, "windows": 0,
                                      "moves": 0, "by_batch": {}}  # by_batch: bucket -> [steps, seconds]
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, seq: Sequence) -> None:
        with self._lock:
            if self.failed:
                seq.sink.put(LoopFailed(self.failed))
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="reasonry-hf-loop", daemon=True)
                self._thread.start()
        self.inbox.put(seq)

    def close(self) -> None:
        if self._thread is not None:
            self.inbox.put(None)
            self._thread.join()
            self._thread = None
        self.runner = None  # type: ignore[assignment]  # the KV cache and the graphs go with it

    # -- the loop -----------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            with torch.inference_mode():
                while self._take_new():
                    self._iteration()
        except Exception as exc:  # every consumer learns why, no one waits forever
            message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            with self._lock:
                self.failed = message
            for seq in [*self.scheduler.waiting, *self.scheduler.prefilling, *self.scheduler.running.values()]:
                seq.sink.put(LoopFailed(message))
            while True:
                try:
                    seq = self.inbox.get_nowait()
                except queue.Empty:
                    break
                if seq is not None:
                    seq.sink.put(LoopFailed(message))

    def _take_new(self) -> bool:
        """Move submitted sequences into the scheduler; block while there is nothing to do. False: stop."""
        block = not self.scheduler.busy() and self.pending is None
        while True:
            try:
                seq = self.inbox.get(block=block)
            except queue.Empty:
                return True
            if seq is None:
                if self.pending is not None:
                    self._poll(self.pending)
                return False
            self.scheduler.add(seq)
            block = False

    def _iteration(self) -> None:
        sched, runner = self.scheduler, self.runner
        admitted = sched.admit()
        if admitted:
            runner.set_params([s.slot for s in admitted], [s.params for s in admitted], [s.seed for s in admitted])
        window = Window()
        if sched.prefilling:
            started = time.perf_counter()
            for _ in range(self.prefill_chunks if sched.running else 1 << 30):
                if not sched.prefilling:
                    break
                chunks = sched.next_chunks()
                logits = runner.prefill([s.slot for s, _, _ in chunks], [start for _, start, _ in chunks],
                                        [c for _, _, c in chunks])
                done = sched.prefilled(chunks)
                if done:
                    rows = [i for i, (s, _, _) in enumerate(chunks) if s in done]
                    first = runner.start_decoding([s.slot for s in done], [s.prompt for s in done],
                                                  logits[runner.put(rows)],
                                                  plan_for([s.params for s in done], runner.vocab))
                    window.firsts.append((done, first))
            self.stats["prefill_s"] += time.perf_counter() - started
        decoding = list(sched.running.values())  # those just prefilled included: their first token is drawn
        started = time.perf_counter()
        if decoding:
            window.rows = [(s, s.slot) for s in decoding]
            window.batch = runner.batch_bucket(max(s.slot for s in decoding))
            kv_len = runner.kv_bucket(max(s.length for s in decoding) + self.poll_every * (1 + self.overlap))
            plan = plan_for([s.params for s in decoding], runner.vocab)
            for _ in range(self.poll_every):
                window.tokens.append(runner.decode_step(window.batch, kv_len, plan))
            self.stats["decode_s"] += time.perf_counter() - started
            self.stats["steps"] += self.poll_every
            self.stats["windows"] += 1
        polled = time.perf_counter()
        if self.overlap:  # read the previous window back while this one runs on the device
            previous, self.pending = self.pending, (window if window.rows or window.firsts else None)
            if previous is not None:
                self._poll(previous)
        else:
            self._poll(window)
        self.stats["poll_s"] += time.perf_counter() - polled
        if window.batch:
            bucket = self.stats["by_batch"].setdefault(window.batch, [0, 0.0])
            bucket[0] += self.poll_every
            bucket[1] += time.perf_counter() - started

    def _poll(self, window: Window) -> None:
        """Read a window's tokens back (the one host sync of an iteration) and finish what is done. With overlap,
        the next window is already on the device: a sequence that finished here drew junk there (it is retired,
        so that window skips it), and its slot's new owner is prefilled after it in the stream."""
        sched = self.scheduler
        drawn: dict[Sequence, list[int]] = {}
        for seqs, first in window.firsts:
            for seq, token in zip(seqs, first.tolist(), strict=True):
                drawn[seq] = [token]
        if window.tokens:
            columns = torch.stack(window.tokens, dim=1).tolist()  # [batch, steps]
            for seq, slot in window.rows:
                if not seq.retired:
                    drawn.setdefault(seq, []).extend(columns[slot])
        finished = []
        for seq, tokens in drawn.items():
            if seq.retired:
                continue
            if seq.cancelled.is_set() or sched.accept(seq, tokens, self.eos, self.stop_hit):
                finished.append(seq)
            elif seq.stream:
                self.stream_piece(seq)
        for seq in [*sched.waiting, *sched.prefilling]:
            if seq.cancelled.is_set():
                finished.append(seq)
        if finished:
            for seq in finished:
                seq.retired = True
                if seq in sched.waiting:
                    sched.waiting.remove(seq)
                elif seq.slot >= 0:
                    sched.release(seq)
                if not seq.cancelled.is_set():
                    self.finish(seq)
            self.runner.park_slots([s.slot for s in finished if s.slot >= 0])
        moves = sched.compaction(self.runner.batch_bucket)
        if moves:  # the window in flight (overlap) still writes poll_every positions past what the host knows
            self.stats["moves"] += len(moves)
            longest = max(s.length for s in sched.running.values()) + 1 + self.poll_every * self.overlap
            self.runner.move([m[0] for m in moves], [m[1] for m in moves], self.runner.kv_bucket(longest))


@dataclass
class Window:
    """One decode window: the sequences it decodes with the slot each held at launch, the tokens drawn per step
    (device tensors [batch]), and the first tokens of sequences prefilled just before it."""

    rows: list[tuple[Sequence, int]] = field(default_factory=list)
    tokens: list[torch.Tensor] = field(default_factory=list)
    firsts: list[tuple[list[Sequence], torch.Tensor]] = field(default_factory=list)
    batch: int = 0
