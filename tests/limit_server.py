"""An OpenAI-compatible test server on 127.0.0.1 that enforces a concurrency limit (429 above it) which can be
changed mid-run, with variable-length answers (service time grows with the answer's tokens).

It records every success and 429 with its time, and the busy-slot seconds, so a client's use of the limit
(busy slot-seconds / (limit × seconds)) can be measured per time window.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import Counter
from typing import Any, Self

from aiohttp import web
from fault_server import LocalServer, request_text


class LimitServer(LocalServer):
    def __init__(self, limit: int, *, base_ms: float = 20.0, per_token_ms: float = 0.5,
                 retry_after: str | None = None, window: tuple[int, float] | None = None) -> None:
        self.limit = limit
        self.base_ms = base_ms
        self.per_token_ms = per_token_ms
        self.retry_after = retry_after
        self.window = window  # (requests, seconds): a fixed-window quota announced in x-ratelimit-* headers
        self._window_start = 0.0
        self._window_used = 0
        self.in_flight = 0
        self.answered: Counter[str] = Counter()
        self.successes: list[float] = []  # finish times
        self.rejections: list[float] = []
        self.busy: list[tuple[float, float]] = []  # (start, end) of each served request
        self.limits: list[tuple[float, int]] = []  # (time, limit) changes
        self._lock = threading.Lock()
        super().__init__()

    def __enter__(self) -> Self:
        super().__enter__()
        self.set_limit(self.limit)  # the clock of the first phase starts now
        return self

    def set_limit(self, limit: int) -> None:
        with self._lock:
            self.limit = limit
            self.limits.append((time.monotonic(), limit))

    @staticmethod
    def tokens_for(text: str) -> int:
        """A fixed answer length per request between 8 and 200 tokens (skewed short, like real outputs)."""
        h = int(hashlib.sha1(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        return 8 + int(192 * h * h)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        text = request_text(body)
        now = time.monotonic()
        with self._lock:
            quota = self._quota(now)
            if self.in_flight >= self.limit or quota.get("x-ratelimit-remaining-requests") == "-1":
                self.rejections.append(now)
                headers = {"Retry-After": self.retry_after} if self.retry_after else {}
                if quota:
                    headers.update(quota, **{"x-ratelimit-remaining-requests": "0"})
                return web.json_response({"error": {"message": "too many requests"}}, status=429, headers=headers)
            self.in_flight += 1
        tokens = self.tokens_for(text)
        try:
            await asyncio.sleep((self.base_ms + self.per_token_ms * tokens) / 1000)
        finally:
            end = time.monotonic()
            with self._lock:
                self.in_flight -= 1
                self.busy.append((now, end))
                self.successes.append(end)
                self.answered[text] += 1
        return web.json_response(self._answer(body, text, tokens), headers=quota)

    def _quota(self, now: float) -> dict[str, str]:
        """Count one request against the window; its x-ratelimit-* headers ("-1" left: over quota)."""
        if self.window is None:
            return {}
        size, seconds = self.window
        if now - self._window_start >= seconds:
            self._window_start, self._window_used = now, 0
        self._window_used += 1
        reset = self._window_start + seconds - now
        return {"x-ratelimit-limit-requests": str(size),
                "x-ratelimit-remaining-requests": str(max(-1, size - self._window_used)),
                "x-ratelimit-reset-requests": f"{reset * 1000:.0f}ms"}

    @staticmethod
    def _answer(body: dict[str, Any], text: str, tokens: int) -> dict[str, Any]:
        words = " ".join(["step"] * tokens)
        usage = {"prompt_tokens": len(text.split()), "completion_tokens": tokens}
        if "messages" in body:
            choice = {"index": 0, "message": {"role": "assistant", "content": words}, "finish_reason": "stop"}
        else:
            choice = {"index": 0, "text": words, "finish_reason": "stop"}
        return {"id": "x", "object": "completion", "model": body["model"], "choices": [choice], "usage": usage}

    # -- measures ----------------------------------------------------------------
    def use_of_limit(self, start: float, end: float) -> float:
        """Busy slot-seconds within [start, end) over what the limit allowed in that window."""
        with self._lock:
            busy = sum(max(0.0, min(b, end) - max(a, start)) for a, b in self.busy)
            changes = list(self.limits)
        allowed = 0.0
        for i, (at, limit) in enumerate(changes):
            until = changes[i + 1][0] if i + 1 < len(changes) else float("inf")
            allowed += limit * max(0.0, min(until, end) - max(at, start))
        return busy / allowed if allowed else 0.0

    def count(self, times: list[float], start: float, end: float) -> int:
        with self._lock:
            return sum(1 for t in times if start <= t < end)
