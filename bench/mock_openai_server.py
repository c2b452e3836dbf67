"""A minimal OpenAI-compatible server for benchmarks: every request is answered after a fixed delay with a
fixed completion. `GET /stats` returns how many completion requests it has answered.

    python bench/mock_openai_server.py --port 8765 --delay-ms 100
"""

from __future__ import annotations

import argparse
import asyncio
import json

from aiohttp import web

TEXT = "First, I restate the question. Then I check each fact in turn. ### Response: 42"


def build_app(delay_s: float, text: str) -> web.Application:
    completion = json.dumps({
        "id": "bench", "object": "text_completion", "model": "bench",
        "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 64, "completion_tokens": 16, "total_tokens": 80},
    }).encode()
    chat = json.dumps({
        "id": "bench", "object": "chat.completion", "model": "bench",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 64, "completion_tokens": 16, "total_tokens": 80},
    }).encode()
    answered = {"requests": 0}

    def handler(body: bytes):
        async def handle(request: web.Request) -> web.Response:
            await request.read()
            if delay_s:
                await asyncio.sleep(delay_s)
            answered["requests"] += 1
            return web.Response(body=body, content_type="application/json")
        return handle

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(answered)

    app = web.Application()
    app.router.add_post("/v1/completions", handler(completion))
    app.router.add_post("/v1/chat/completions", handler(chat))
    app.router.add_get("/stats", stats)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--delay-ms", type=float, default=100.0)
    parser.add_argument("--text", default=TEXT)
    args = parser.parse_args()
    app = build_app(args.delay_ms / 1000.0, args.text)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=lambda *_: print("ready", flush=True),
                backlog=1024)


if __name__ == "__main__":
    main()
