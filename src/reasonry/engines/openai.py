"""Engine for any OpenAI-compatible server (vLLM, SGLang, llama.cpp, Ollama, `transformers serve`, hosted APIs).

`generate` is synchronous for its caller: an asyncio loop in a background thread sends requests through one
aiohttp session (at most `concurrency` in flight), pulls requests lazily from the caller's iterator on one
feeder thread, and hands results back through a queue in completion order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from reasonry.config import ModelSpec
from reasonry.engines.base import Engine, Request, Result
from reasonry.engines.limits import AdaptiveConcurrency, ServerLimits, TokenBucket, parse_retry_after
from reasonry.engines.openai_wire import Rejected, Retryable, StreamState, json_object, raw_text
from reasonry.errors import ConfigError

log = logging.getLogger(__name__)

# Sampling fields outside the OpenAI schema; servers that reject them get requests without them (one warning).
EXTRA_SAMPLING_FIELDS = ("top_k", "repetition_penalty")
MAX_RETRY_AFTER_S = 300.0
_DONE = object()


def api_root(base_url: str) -> str:
    """`http://host:8000` and `http://host:8000/v1/` both become `http://host:8000/v1`."""
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"openai base URL {base_url!r}: expected http://host:port/v1 or https://…")
    path = parts.path.rstrip("/") or "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def resolve_api_key(api_key: str | None, api_key_env: str | None) -> str | None:
    if api_key:
        return api_key
    if api_key_env:
        value = os.environ.get(api_key_env)
        if not value:
            raise ConfigError(f"--api-key-env {api_key_env}: that environment variable is empty or unset; "
                              f"export {api_key_env}=YOUR_KEY first")
        return value
    return os.environ.get("OPENAI_API_KEY") or None


class OpenAIEngine(Engine):
    concurrent = True  # every generate/stream call runs its own event loop and session: calls do not wait for each other

    def __init__(self, spec: ModelSpec, *, api_key: str | None = None, api_key_env: str | None = None,
                 concurrency: int = 64, rpm: int | None = None, tpm: int | None = None, timeout: float = 120.0,
                 max_retries: int = 5, backoff_base: float = 0.5, backoff_max: float = 30.0,
                 adaptive: bool = True) -> None:
        if not spec.base_url:
            raise ConfigError(f"--model {spec}: no server address; write openai:MODEL@http://host:port/v1")
        _check_positive(concurrency=concurrency, timeout=timeout, rpm=rpm, tpm=tpm)
        if max_retries < 0:
            raise ConfigError("--max-retries must be >= 0")
        self.spec = spec
        self.root = api_root(spec.base_url)
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.adaptive = adaptive
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._secret = resolve_api_key(api_key, api_key_env)
        # `reasonry serve` takes X-Reasonry as proof of a non-browser client (no cross-site form sends it)
        self._headers = {"Content-Type": "application/json", "X-Reasonry": "1"}
        if self._secret:
            self._headers["Authorization"] = f"Bearer {self._secret}"
        self._rpm = TokenBucket(rpm) if rpm else None
        self._tpm = TokenBucket(tpm) if tpm else None
        self._paused_until = 0.0
        self.dropped_fields: set[str] = set()
        self.where = f"the server of openai:{spec.model}"  # errors never show the URL: it may carry a key
        self.limiter: AdaptiveConcurrency | None = None  # the running generate call's, for progress and benches

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIEngine({self.spec.model!r} @ {self.root}, concurrency={self.concurrency})"

    # -- Engine ------------------------------------------------------------------
    def render_chat(self, messages: list[dict[str, str]], prefill: str | None = None) -> str | None:
        return None  # the server applies its chat template; requests keep their messages

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        run = _Run(self, iter(requests))
        run.start()
        try:
            while (item := run.next_item()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item
                run.consumed()
        except KeyboardInterrupt:
            run.stop()
            yield from run.finished_leftovers()  # finished before Ctrl-C: the caller still stores them
            raise
        finally:
            run.stop()

    def stream(self, request: Request) -> Iterator[str | Result]:
        """Yield raw text pieces as the server streams them (a reasoning arrives inside `<think>…</think>`,
        as in Result.raw_text), then the final Result."""
        pieces: queue.SimpleQueue[Any] = queue.SimpleQueue()
        holder: dict[str, Any] = {}

        async def main() -> None:
            holder["loop"], holder["task"] = asyncio.get_running_loop(), asyncio.current_task()
            async with self._session(1, streaming=True) as session:
                pieces.put(await self._stream_call(session, request, pieces.put))

        thread = threading.Thread(target=_run_loop, args=(main, pieces.put), daemon=True, name="reasonry-stream")
        thread.start()
        try:
            while (item := _get(pieces)) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            if thread.is_alive() and "loop" in holder:
                _call_soon(holder["loop"], holder["task"].cancel)
            thread.join(timeout=10)

    # -- one request ---------------------------------------------------------------
    def _session(self, connections: int, *, streaming: bool = False) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=connections, ttl_dns_cache=300)
        # A stream may run longer than --timeout as long as pieces keep coming; a silent one is cut.
        timeout = (aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=self.timeout) if streaming
                   else aiohttp.ClientTimeout(total=self.timeout))
        return aiohttp.ClientSession(connector=connector, timeout=timeout, headers=self._headers)

    def payload(self, request: Request, *, stream: bool = False) -> tuple[str, dict[str, Any]]:
        """(endpoint path, JSON body) for a request: `messages` go to chat/completions, `prompt` to completions."""
        params = request.params
        body: dict[str, Any] = {
            "model": self.spec.model, "max_tokens": params.max_new_tokens, "temperature": params.temperature,
            "top_p": params.top_p, "seed": params.seed + request.sample_index,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.top_k:
            body["top_k"] = params.top_k
        if params.repetition_penalty != 1.0:
            body["repetition_penalty"] = params.repetition_penalty
        for name in self.dropped_fields:
            body.pop(name, None)
        if stream:
            body["stream"] = True
        if request.messages is None:
            body["prompt"] = (request.prompt or "") + (request.prefill or "")
            return "/completions", body
        messages = list(request.messages)
        if request.prefill:
            messages.append({"role": "assistant", "content": request.prefill})
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        body["messages"] = messages
        return "/chat/completions", body

    async def _call(self, session: aiohttp.ClientSession, request: Request,
                    limiter: AdaptiveConcurrency | None = None) -> Result:
        """Send one request with retries; every failure ends as a Result with `error`, never an exception."""

        async def once(path: str, body: dict[str, Any], attempt: int) -> Result:
            try:
                await self._wait_for_limits(body)
                ticket = await limiter.acquire() if limiter else 0
                started = time.perf_counter()
                overloaded, latency, tokens = False, None, 0
                try:
                    data = await self._post(session, path, body, limiter)
                    result = self._result(request, path, data, time.perf_counter() - started)
                    latency, tokens = result.latency_s, result.completion_tokens
                    result.retries = attempt
                    return result
                except Retryable as exc:
                    overloaded = exc.overloaded
                    raise
                finally:
                    if limiter:
                        await limiter.release(ticket, overloaded=overloaded, latency_s=latency, tokens=tokens)
            except (Retryable, Rejected):
                raise
            except Exception as exc:  # a bug or an odd server must not stop the run
                return self._error(request, f"{type(exc).__name__}: {exc}")

        return await self._retrying(request, once, "gave up")

    async def _retrying(self, request: Request, once: Callable[[str, dict[str, Any], int], Awaitable[Result]],
                        gave_up: str, *, stream: bool = False, final: Callable[[], bool] = lambda: False) -> Result:
        """`once(path, body, attempt)` until it returns: a Retryable failure backs off and tries again (at most
        --max-retries times, and not once `final()`), a rejected extra sampling field is left out of the next
        try, any other rejection is the Result's error."""
        attempt = 0
        while True:
            path, body = self.payload(request, stream=stream)
            try:
                return await once(path, body, attempt)
            except Retryable as exc:
                if final() or attempt >= self.max_retries:
                    failed = self._error(request, f"{exc}; {gave_up} after {attempt + 1} attempts")
                    failed.retries = attempt
                    return failed
                await self._back_off(attempt, exc.retry_after)
                attempt += 1
            except Rejected as exc:
                if self._drop_fields(exc.unexpected, body):
                    continue
                return self._error(request, str(exc))

    async def _post(self, session: aiohttp.ClientSession, path: str, body: dict[str, Any],
                    limiter: AdaptiveConcurrency | None = None) -> dict[str, Any]:
        try:
            async with session.post(self.root + path, data=json.dumps(body, ensure_ascii=False).encode()) as response:
                raw = await response.read()
                self._heed(response.headers, limiter, body)
                if response.status == 200:
                    return json_object(raw, self.where)
                _raise_for_status(response.status, response.headers.get("Retry-After"), raw, self.where)
        except TimeoutError:
            raise Retryable(f"no answer from {self.where} within --timeout {self.timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise Retryable(f"connection to {self.where} failed ({type(exc).__name__})") from None
        raise AssertionError("unreachable")

    def _heed(self, headers: Any, limiter: AdaptiveConcurrency | None, body: dict[str, Any]) -> None:
        """x-ratelimit-* headers: when the requests in flight use up the window, every request waits for its reset."""
        if "x-ratelimit-remaining-requests" not in headers and "x-ratelimit-remaining-tokens" not in headers:
            return
        in_flight = limiter.in_flight if limiter else 1
        pause = ServerLimits.from_headers(headers).pause_s(in_flight, estimate_tokens(body))
        if pause > 0:
            self._paused_until = max(self._paused_until, time.monotonic() + min(pause, MAX_RETRY_AFTER_S))

    async def _wait_for_limits(self, body: dict[str, Any]) -> None:
        while (pause := self._paused_until - time.monotonic()) > 0:
            await asyncio.sleep(pause)
        if self._rpm:
            await self._rpm.take(1)
        if self._tpm:
            await self._tpm.take(estimate_tokens(body))

    async def _back_off(self, attempt: int, retry_after: float | None) -> None:
        delay = min(self.backoff_max, self.backoff_base * 2 ** attempt) * random.uniform(0.5, 1.0)
        if retry_after is not None:
            # The server said when: every request waits, not only this one.
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER_S))
            self._paused_until = max(self._paused_until, time.monotonic() + delay)
        await asyncio.sleep(delay)

    def _drop_fields(self, unexpected: set[str], body: dict[str, Any]) -> bool:
        droppable = {f for f in unexpected & set(EXTRA_SAMPLING_FIELDS) if f in body}
        if not droppable:
            return False
        if droppable <= self.dropped_fields:  # another request already found out
            return True
        self.dropped_fields |= droppable
        log.warning("%s rejects %s; sending requests without them (the server's defaults apply)",
                    self.root, ", ".join(sorted(droppable)))
        return True

    def _result(self, request: Request, path: str, data: dict[str, Any], latency: float) -> Result:
        try:
            choice = data["choices"][0]
            if path == "/completions":
                text, reasoning = choice["text"] or "", None
            else:
                message = choice["message"]
                text = message.get("content") or ""
                reasoning = message.get("reasoning_content") or message.get("reasoning") or None
        except (KeyError, IndexError, TypeError):
            raise Retryable(f"malformed answer from {self.where}: no choices[0] text") from None
        usage = data.get("usage") or {}
        return Result(
            key=request.key, text=text, raw_text=raw_text(text, reasoning), reasoning=reasoning,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason=choice.get("finish_reason") or "stop", latency_s=latency,
        )

    def _error(self, request: Request, message: str) -> Result:
        if self._secret:
            message = message.replace(self._secret, "***")
        address = urlsplit(self.root)
        for shown in (self.root, address.netloc, address.hostname or self.root):
            message = message.replace(shown, "<server>")  # an upstream may echo its own address
        return Result(key=request.key, error=message, finish_reason="error")

    # -- streaming ---------------------------------------------------------------
    async def _stream_call(self, session: aiohttp.ClientSession, request: Request,
                           emit: Callable[[str], None]) -> Result:
        """One streamed request with retries until its first piece; a stream dropped after that ends as an
        error (the pieces are out). Consumers that want only the final Result call `generate`, which retries."""
        state = StreamState(emit)

        async def once(path: str, body: dict[str, Any], attempt: int) -> Result:
            nonlocal state
            state = StreamState(emit)
            started = time.perf_counter()
            await self._wait_for_limits(body)
            await self._stream_post(session, path, body, state)
            return state.result(request.key, time.perf_counter() - started)

        return await self._retrying(request, once, "stream stopped", stream=True, final=lambda: state.sent)

    async def _stream_post(self, session: aiohttp.ClientSession, path: str, body: dict[str, Any],
                           state: StreamState) -> None:
        chat = path != "/completions"
        try:
            async with session.post(self.root + path, data=json.dumps(body, ensure_ascii=False).encode()) as response:
                if response.status != 200:
                    _raise_for_status(response.status, response.headers.get("Retry-After"), await response.read(),
                                      self.where)
                self._heed(response.headers, None, body)
                if response.content_type == "application/json":  # the server ignored `stream: true`
                    state.whole(json_object(await response.read(), self.where), chat=chat)
                    return
                if response.content_type != "text/event-stream":
                    raise Retryable(f"{self.where} answered a stream request with {response.content_type!r}, "
                                     "not text/event-stream or application/json")
                done = False
                async for line in response.content:
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        done = True
                        break
                    state.feed(json_object(data, self.where), chat=chat)
        except TimeoutError:
            raise Retryable(f"no answer from {self.where} within --timeout {self.timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise Retryable(f"connection to {self.where} failed midway ({type(exc).__name__})") from None
        if not (done or state.finished):
            raise Retryable(f"the stream from {self.where} ended before its last piece (no [DONE], no finish_reason)")
        if not (state.sent or state.finished):
            raise Retryable(f"the stream from {self.where} ended without any text or finish_reason")


class _Run:
    """One `generate` call: the loop thread, the feeder thread and the results queue between them."""

    def __init__(self, engine: OpenAIEngine, iterator: Iterator[Request]) -> None:
        self.engine = engine
        self.iterator = iterator
        self.results: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.window = 2 * engine.concurrency
        self.low_water = self.window - max(1, self.window // 4)
        self.pulled = 0
        self.delivered = 0
        self.stopping = False
        self.waiting = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[None] | None = None
        self.room = asyncio.Event()
        self.feeder = ThreadPoolExecutor(1, thread_name_prefix="reasonry-openai-feed")
        self.thread = threading.Thread(target=_run_loop, args=(self._main, self.results.put), daemon=True,
                                       name="reasonry-openai")

    def start(self) -> None:
        self.thread.start()

    def next_item(self) -> Any:
        return _get(self.results)

    def consumed(self) -> None:
        """The caller is done with one result: room for one more request to be pulled."""
        self.delivered += 1
        if self.waiting and self.pulled - self.delivered <= self.low_water and self.loop:
            _call_soon(self.loop, self.room.set)

    def stop(self) -> None:
        self.stopping = True
        if self.thread.is_alive() and self.loop and self.task:
            _call_soon(self.loop, self.task.cancel)
        self.thread.join(timeout=30)
        self.feeder.shutdown(wait=True)

    def finished_leftovers(self) -> Iterator[Result]:
        while True:
            try:
                item = self.results.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, Result):
                yield item

    async def _main(self) -> None:
        self.loop, self.task = asyncio.get_running_loop(), asyncio.current_task()
        todo: asyncio.Queue[Request | None] = asyncio.Queue()
        engine = self.engine
        limiter = AdaptiveConcurrency(engine.concurrency) if engine.adaptive else None
        engine.limiter = limiter
        async with engine._session(engine.concurrency) as session:
            workers = [asyncio.create_task(self._work(session, todo, limiter)) for _ in range(engine.concurrency)]
            try:
                await self._feed(todo)
                for _ in workers:
                    todo.put_nowait(None)
                await asyncio.gather(*workers)
            finally:
                for worker in workers:
                    worker.cancel()
                await asyncio.gather(*workers, return_exceptions=True)

    async def _feed(self, todo: asyncio.Queue[Request | None]) -> None:
        loop = asyncio.get_running_loop()
        while not self.stopping:
            room = self.window - (self.pulled - self.delivered)
            if room <= 0:
                self.room.clear()
                self.waiting = True
                if self.pulled - self.delivered > self.low_water:
                    await self.room.wait()
                self.waiting = False
                continue
            batch = await loop.run_in_executor(self.feeder, _take, self.iterator, room)
            if not batch:
                return
            self.pulled += len(batch)
            for request in batch:
                todo.put_nowait(request)

    async def _work(self, session: aiohttp.ClientSession, todo: asyncio.Queue[Request | None],
                    limiter: AdaptiveConcurrency | None) -> None:
        while (request := await todo.get()) is not None:
            self.results.put(await self.engine._call(session, request, limiter))


def _run_loop(main: Callable[[], Any], put: Callable[[Any], None]) -> None:
    """Thread body: run `main` on a fresh loop; errors go to the consumer; always end with _DONE."""
    try:
        asyncio.run(main())
    except asyncio.CancelledError:
        pass
    except BaseException as exc:  # handed to the consumer thread, which raises it
        put(exc)
    finally:
        put(_DONE)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], Any]) -> None:
    try:
        loop.call_soon_threadsafe(callback)
    except RuntimeError:  # the loop has just finished: nothing left to tell it
        pass


def _get(items: queue.SimpleQueue[Any]) -> Any:
    while True:  # a timeout keeps the wait interruptible by Ctrl-C on every platform
        try:
            return items.get(timeout=0.5)
        except queue.Empty:
            continue


def _take(iterator: Iterator[Request], n: int) -> list[Request]:
    return list(islice(iterator, n))


def _raise_for_status(status: int, retry_after: str | None, raw: bytes, where: str) -> None:
    detail = raw[:300].decode("utf-8", "replace").strip()
    if status in (408, 409, 429) or status >= 500:
        raise Retryable(f"HTTP {status} from {where}: {detail}", parse_retry_after(retry_after),
                         overloaded=status in (429, 503))
    unexpected = {f for f in EXTRA_SAMPLING_FIELDS if f in detail} if status in (400, 422) else set()
    hint = ""
    if "continue_final_message" in detail:
        hint = (" (this server cannot continue a prefilled assistant turn; for special mode use a server that"
                " can, such as vLLM or SGLang, or a text --template without --chat)")
    raise Rejected(f"HTTP {status} from {where}: {detail}{hint}", unexpected)


def estimate_tokens(body: dict[str, Any]) -> int:
    """What a request may cost against --tpm: about 4 characters a prompt token, plus max_tokens."""
    if "prompt" in body:
        chars = len(body["prompt"])
    else:
        chars = sum(len(str(m.get("content") or "")) for m in body["messages"])
    return chars // 4 + 1 + int(body.get("max_tokens") or 0)


def _check_positive(**values: float | None) -> None:
    for name, value in values.items():
        if value is not None and value <= 0:
            raise ConfigError(f"--{name} must be > 0 (got {value})")
