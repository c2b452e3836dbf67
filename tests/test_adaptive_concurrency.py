"""Adaptive concurrency of the openai engine against a local server that enforces (and changes) its limits."""

from __future__ import annotations

import asyncio
import threading
import time

from limit_server import LimitServer

from reasonry.config import SamplingParams, parse_model_spec
from reasonry.engines.base import Request
from reasonry.engines.limits import AdaptiveConcurrency, ServerLimits, parse_duration
from reasonry.engines.openai import OpenAIEngine

PHASES = [(0.0, 6), (5.0, 12), (10.0, 4)]  # (seconds from start, server's concurrency limit)


def requests(n: int) -> list[Request]:
    return [Request(key=str(i), params=SamplingParams(), prompt=f"row {i}") for i in range(n)]


def test_limit_follows_a_server_that_changes_its_limit() -> None:
    with LimitServer(PHASES[0][1], base_ms=80, per_token_ms=2) as server:
        engine = OpenAIEngine(parse_model_spec(f"openai:m@{server.url}"), concurrency=48)
        start = time.monotonic()

        def change_limits() -> None:
            for at, limit in PHASES[1:]:
                time.sleep(max(0.0, start + at - time.monotonic()))
                server.set_limit(limit)

        threading.Thread(target=change_limits, daemon=True).start()
        results = list(engine.generate(requests(500)))
        end = time.monotonic()

        assert end - start > PHASES[-1][0] + 2, "the run must reach the last phase"
        assert [r.error for r in results if r.error] == []
        assert len(server.answered) == 500 and set(server.answered.values()) == {1}
        # After the first seconds of each phase: at least 80 % of the server's slots busy, next to no 429s.
        last_sent = max(begin for begin, _ in server.busy)  # from here on, fewer requests left than slots
        steady = [(start + 1.5, start + 5.0), (start + 7.0, start + 10.0), (start + 12.0, last_sent)]
        for window in steady:
            assert server.use_of_limit(*window) >= 0.8, (window[0] - start, server.use_of_limit(*window))
        ok = sum(server.count(server.successes, *w) for w in steady)
        rejected = sum(server.count(server.rejections, *w) for w in steady)
        assert rejected <= 0.03 * ok, (rejected, ok)
        assert server.count(server.rejections, start, start + 1.0) > 0  # it did start above the limit


def test_quota_headers_pause_before_the_server_refuses() -> None:
    with LimitServer(100, base_ms=5, per_token_ms=0, window=(20, 1.0)) as server:
        engine = OpenAIEngine(parse_model_spec(f"openai:m@{server.url}"), concurrency=4)
        started = time.monotonic()
        results = list(engine.generate(requests(60)))
        elapsed = time.monotonic() - started
    assert all(r.ok for r in results)
    assert elapsed >= 2.0  # 20 a window: the third window holds the last ones
    assert len(server.rejections) <= 4 * 3  # at most the requests already in flight when a window ran out


def test_one_burst_of_429s_lowers_the_limit_once() -> None:
    async def scenario() -> AdaptiveConcurrency:
        limiter = AdaptiveConcurrency(16)
        tickets = [await limiter.acquire() for _ in range(16)]
        for ticket in tickets:
            await limiter.release(ticket, overloaded=True)
        return limiter

    limiter = asyncio.run(scenario())
    assert limiter.allowed == 12 and limiter.decreases == 1 and limiter.known_max == 15


def test_rising_latency_lowers_the_limit_and_clean_answers_raise_it() -> None:
    async def scenario() -> tuple[int, int]:
        limiter = AdaptiveConcurrency(8)
        for _ in range(50):  # 10 ms a token
            await limiter.release(await limiter.acquire(), latency_s=1.0, tokens=100)
        for _ in range(20):  # 40 ms a token
            await limiter.release(await limiter.acquire(), latency_s=4.0, tokens=100)
        lowered = limiter.allowed
        for _ in range(200):
            await limiter.release(await limiter.acquire(), latency_s=1.0, tokens=100)
        return lowered, limiter.allowed

    lowered, recovered = asyncio.run(scenario())
    assert lowered == 6 and recovered == 8


def test_rate_limit_headers_parse() -> None:
    assert parse_duration("6m0s") == 360 and parse_duration("20ms") == 0.02 and parse_duration("1.5") == 1.5
    assert parse_duration("1h2m3s") == 3723 and parse_duration("soon") is None
    limits = ServerLimits.from_headers({"x-ratelimit-remaining-requests": "2", "x-ratelimit-reset-requests": "1s",
                                        "x-ratelimit-remaining-tokens": "5000", "x-ratelimit-reset-tokens": "30s"})
    assert limits.pause_s(in_flight=1, next_tokens=100) == 0
    assert limits.pause_s(in_flight=2, next_tokens=100) == 1.0
    assert limits.pause_s(in_flight=1, next_tokens=6000) == 30.0
