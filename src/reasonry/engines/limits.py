"""Client-side limits for HTTP engines: hard rate caps (token buckets), an adaptive concurrency limit (AIMD),
and what servers say about their own limits (Retry-After, x-ratelimit-* headers)."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def parse_duration(value: str | None) -> float | None:
    """`x-ratelimit-reset-*` values: plain seconds ("1.5") or Go-style durations ("6m0s", "20ms", "1h2m3s")."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


@dataclass
class ServerLimits:
    """What one answer's x-ratelimit-* headers say (None where the server sent nothing usable)."""

    remaining_requests: int | None = None
    reset_requests: float | None = None
    remaining_tokens: int | None = None
    reset_tokens: float | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> ServerLimits:
        def number(name: str) -> int | None:
            try:
                return int(float(headers.get(name, "")))
            except ValueError:
                return None

        return cls(number("x-ratelimit-remaining-requests"), parse_duration(headers.get("x-ratelimit-reset-requests")),
                   number("x-ratelimit-remaining-tokens"), parse_duration(headers.get("x-ratelimit-reset-tokens")))

    def pause_s(self, in_flight: int, next_tokens: int) -> float:
        """How long every request should wait before the next one is sent: until the window resets when the
        requests already in flight use up what is left of it."""
        pause = 0.0
        if self.remaining_requests is not None and self.reset_requests and self.remaining_requests <= in_flight:
            pause = self.reset_requests
        if self.remaining_tokens is not None and self.reset_tokens and self.remaining_tokens < next_tokens:
            pause = max(pause, self.reset_tokens)
        return pause


class TokenBucket:
    """At most `per_minute` units a minute, refilled continuously; bursts up to one second's worth."""

    def __init__(self, per_minute: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self.stamp = time.monotonic()

    async def take(self, amount: float) -> None:
        need = min(amount, self.capacity)  # a request bigger than the bucket waits for a full bucket
        while True:
            now = time.monotonic()
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.level >= need:
                self.level -= amount
                return
            await asyncio.sleep((need - self.level) / self.rate)


class AdaptiveConcurrency:
    """How many requests may be in flight: starts at `ceiling`, multiplies by `decrease` on overload (429/503)
    or when latency per token rises past `latency_tolerance` × its recent best, and adds about one per
    round-trip while answers come back clean, never above `ceiling`.

    Each request takes a ticket (the limit's epoch) when it starts; only a request started after the last
    decrease can cause another, so one burst of 429s counts as one signal. The level that overloaded the
    server is remembered: the limit climbs back to just below it at the normal pace, then probes past it ten
    times slower; one clean round-trip above it means the server raised its limit: the level is forgotten and
    the limit grows by one per answer (doubling each round-trip) until the next overload.
    """

    LATENCY_WARMUP = 40  # answers seen before rising latency may lower the limit
    EWMA = 0.05  # about the last 20 answers: one long or short answer is noise, not a trend
    PROBE = 0.1  # growth above the last overloaded level, relative to the normal pace

    def __init__(self, ceiling: int, *, decrease: float = 0.75, latency_tolerance: float = 2.0) -> None:
        self.ceiling = ceiling
        self.limit = float(ceiling)
        self.decrease = decrease
        self.latency_tolerance = latency_tolerance
        self.in_flight = 0
        self.epoch = 0
        self.overloads = 0
        self.decreases = 0
        self.known_max: int | None = None
        self._clean_above = 0
        self._fast = False
        self._recent: float | None = None
        self._best: float | None = None
        self._samples = 0
        self._changed = asyncio.Condition()

    @property
    def allowed(self) -> int:
        return max(1, int(self.limit))

    async def acquire(self) -> int:
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < self.allowed)
            self.in_flight += 1
            return self.epoch

    async def release(self, ticket: int, *, overloaded: bool = False, latency_s: float | None = None,
                      tokens: int = 0) -> None:
        async with self._changed:
            self.in_flight -= 1
            if overloaded:
                self.overloads += 1
                if ticket == self.epoch:
                    self.known_max = max(1, self.allowed - 1)
                    self._clean_above, self._fast = 0, False
                    self._lower("the server is overloaded (429/503)")
            elif latency_s is not None:
                rose = self._latency_rose(latency_s / max(1, tokens))
                if not rose and self._samples > self.LATENCY_WARMUP // 4:  # hold while a new limit settles
                    self._grow()
                elif ticket == self.epoch and self._samples > self.LATENCY_WARMUP:
                    self._lower("latency per token rose")
                    self._recent, self._samples = self._best, 0  # judge the new limit on fresh answers
            self._changed.notify(max(0, self.allowed - self.in_flight))  # wake only as many as may start

    def _grow(self) -> None:
        step = 1.0 if self._fast else 1.0 / self.limit
        if self.known_max is not None:
            if self.allowed > self.known_max:
                self._clean_above += 1
                if self._clean_above >= self.allowed:
                    self.known_max, self._clean_above, self._fast = None, 0, True
            if self.known_max is not None:
                if self.limit < self.known_max:
                    step = min(step, self.known_max - self.limit)
                else:
                    step *= self.PROBE
        self.limit = min(float(self.ceiling), self.limit + step)

    def _lower(self, why: str) -> None:
        self.epoch += 1
        self.decreases += 1
        before = self.allowed
        self.limit = max(1.0, self.limit * self.decrease)
        if self.allowed != before:
            log.info("concurrency %d -> %d: %s", before, self.allowed, why)

    def _latency_rose(self, per_token: float) -> bool:
        self._samples += 1
        recent = per_token if self._recent is None else self._recent + self.EWMA * (per_token - self._recent)
        self._recent = recent
        # The best drifts up slowly, so a lasting change in the work (longer prompts) stops counting as a rise.
        self._best = recent if self._best is None else min(recent, self._best * 1.01)
        return recent > self.latency_tolerance * self._best
