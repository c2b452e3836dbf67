"""Test servers: an OpenAI-compatible aiohttp server that fails on purpose, and `transformers serve`.

Faults are chosen by the request text: `FAULT:<kind>:<n>` fails the first n attempts of that text with <kind>
(r429, r429date, r500, hang, drop, badjson, r400, echo401; for stream requests also: jsonbody (a plain JSON
answer), dropmid (the connection dies after a few pieces), emptystream (only [DONE]), htmlstream). Attempts, Authorization headers and the largest
number of requests in flight are counted server-side.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import httpx
from aiohttp import web

FAULT = re.compile(r"FAULT:(\w+):(\d+)")
STREAM_FAULTS = ("jsonbody", "dropmid", "emptystream", "htmlstream")
HANG_S = 3.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request_text(body: dict[str, Any]) -> str:
    if "prompt" in body:
        return str(body["prompt"])
    return "\n".join(str(m.get("content")) for m in body.get("messages", []))


def answer_for(model: str, text: str) -> str:
    """The fixed, distinct answer for one request: tests can recompute it."""
    digest = hashlib.sha1(f"{model}\n{text}".encode()).hexdigest()[:10]
    return f"reasoning {digest} by {model}"


class LocalServer:
    """An aiohttp app on a free 127.0.0.1 port in a background thread, answering both OpenAI POST routes
    with `_handle`; a context manager."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"{type(self).__name__} did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread:
            self._thread.join(10)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/completions", self._handle)
        app.router.add_post("/v1/chat/completions", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port, backlog=1024).start()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()


class FaultServer(LocalServer):
    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__()
        self.delay_s = delay_s
        self.attempts: Counter[str] = Counter()
        self.auth: list[str | None] = []
        self.bodies: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()

    def reset(self) -> None:
        with self.lock:
            self.attempts.clear()
            self.auth.clear()
            self.bodies.clear()
            self.max_in_flight = 0

    def attempts_with(self, marker: str) -> int:
        return sum(n for text, n in self.attempts.items() if marker in text)

    # -- requests --------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        text = request_text(body)
        with self.lock:
            self.auth.append(request.headers.get("Authorization"))
            self.bodies.append(body)
            self.attempts[text] += 1
            attempt = self.attempts[text]
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            match = FAULT.search(text)
            if match and attempt <= int(match.group(2)):
                if body.get("stream") and match.group(1) in STREAM_FAULTS:
                    return await self._stream_fault(match.group(1), request, body, text)
                return await self._fault(match.group(1), request)
            if body.get("stream"):
                return await self._stream(request, body, text)
            return web.json_response(self._success(request.path, body, text))
        finally:
            with self.lock:
                self.in_flight -= 1

    async def _fault(self, kind: str, request: web.Request) -> web.StreamResponse:
        if kind == "r429":
            return web.json_response({"error": "slow down"}, status=429, headers={"Retry-After": "1"})
        if kind == "r429date":
            when = email.utils.formatdate(time.time() + 1, usegmt=True)
            return web.json_response({"error": "slow down"}, status=429, headers={"Retry-After": when})
        if kind == "r500":
            return web.json_response({"error": "boom"}, status=500)
        if kind == "hang":
            await asyncio.sleep(HANG_S)
            return web.json_response({"error": "too late"}, status=500)
        if kind in ("drop", "dropmid"):  # dropmid without stream: the connection dies before any answer
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        if kind == "badjson":
            return web.Response(text='{"choices": [ {"text": "cut', content_type="application/json")
        if kind == "r400":
            return web.json_response({"error": {"message": "prompt is not allowed"}}, status=400)
        if kind == "echo401":
            return web.json_response({"error": f"bad key: {request.headers.get('Authorization')}"}, status=401)
        raise AssertionError(f"unknown fault {kind}")

    def _success(self, path: str, body: dict[str, Any], text: str) -> dict[str, Any]:
        answer = answer_for(body["model"], text)
        usage = {"prompt_tokens": len(text.split()), "completion_tokens": 4, "total_tokens": len(text.split()) + 4}
        if path.endswith("/chat/completions"):
            message = {"role": "assistant", "content": f"final answer {answer}", "reasoning_content": answer}
            if body.get("continue_final_message"):
                assert body.get("add_generation_prompt") is False and body["messages"][-1]["role"] == "assistant"
                message = {"role": "assistant", "content": f"continued answer {answer}"}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
        else:
            choice = {"index": 0, "text": f"{answer}", "finish_reason": "length"}
        return {"id": "x", "object": "completion", "model": body["model"], "choices": [choice], "usage": usage}

    async def _stream_fault(self, kind: str, request: web.Request, body: dict[str, Any],
                            text: str) -> web.StreamResponse:
        if kind == "jsonbody":
            return web.json_response(self._success(request.path, body, text))
        if kind == "htmlstream":
            return web.Response(text="<html>proxy error page</html>", content_type="text/html")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if kind == "emptystream":
            await response.write(b"data: [DONE]\n\n")
            return response
        chunk = {"choices": [{"index": 0, "delta": {"content": "partial "}, "finish_reason": None}]}
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode() * 3)
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.abort()
        return response

    async def _stream(self, request: web.Request, body: dict[str, Any], text: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        answer = answer_for(body["model"], text)
        deltas = [{"reasoning_content": w + " "} for w in answer.split()] + [{"content": "final "}, {"content": "ok"}]
        for delta in deltas:
            chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        last = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": len(deltas)}}
        await response.write(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())
        return response


@contextmanager
def transformers_serve(cache_dir: Path, log_path: Path, timeout_s: float = 180.0) -> Iterator[str]:
    """`transformers serve` on a free 127.0.0.1 port, loading local model folders on demand; yields its /v1 URL."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache_dir), "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "transformers.cli.transformers", "serve", "--host", "127.0.0.1", "--port",
               str(port), "--device", "cpu", "--dtype", "float32", "--log-level", "warning"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(f"http://127.0.0.1:{port}/health", process, log_path, timeout_s)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"transformers serve exited ({process.returncode}): {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"transformers serve not ready after {timeout_s}s: {log_path.read_text()[-2000:]}")
