"""OpenAI-compatible endpoints backed by the served models.

Extra body fields (the `openai` client's `extra_body`): `reasoning` (steer: the response is generated from
this reasoning, special mode), `mode` (reasoning | vanilla | special: render the seed's alpaca template from
the prompt / last user message), `input` (the alpaca input), `template` (chat | alpaca, for chat
completions; default chat when the model has a chat template), `top_k`, `repetition_penalty`.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from reasonry.config import SamplingParams
from reasonry.engines.base import Engine, Result
from reasonry.engines.base import Request as EngineRequest
from reasonry.errors import ConfigError, InputError, ReasonryError
from reasonry.extract import split_output
from reasonry.prompts.formats import RESPONSE_MARKERS, THINK_CLOSE, think_prefill
from reasonry.requests import build_request
from reasonry.tasks.steer import Steerer, build_prompt, parse_text
from reasonry.web.bodies import ChatBody, CompletionBody, OpenAIBody, read_body
from reasonry.web.steer_api import json_body, params_from, public_message, steerer_of, stream_error

router = APIRouter(prefix="/v1")
HOLD = 24  # characters held back while streaming, so a marker being written is not sent as text

Parse = Callable[[str], tuple[str | None, str | None]]
B = TypeVar("B", bound=OpenAIBody)
R = TypeVar("R")


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "code": None}},
                        status_code=status)


def _params(body: OpenAIBody, defaults: SamplingParams) -> SamplingParams:
    """The OpenAI fields mapped to /api's names and checked by the one `params_from` (so its caps apply)."""
    try:
        params = params_from(body.sampling(), defaults)
    except (InputError, ConfigError) as exc:  # the message names the request's fields, not the CLI flags
        message = re.sub(r"--([a-z-]+)", lambda m: m.group(1).replace("-", "_"), str(exc))
        raise InputError(message.replace("max_new_tokens", "max_tokens").replace("sampling parameter ", "")) from None
    stop = body.stop or []
    return params.with_(stop=(stop,) if isinstance(stop, str) else tuple(stop))


def _model(steerer: Steerer, body: OpenAIBody) -> tuple[str, Engine]:
    name = body.model
    served = ", ".join(steerer.engines)
    if name is None:
        raise InputError(f"the body needs \"model\": one of {served} (GET /v1/models)")
    if not isinstance(name, str) or name not in steerer.engines:
        raise InputError(f"model {name!r} is not served; GET /v1/models lists: {served}")
    return name, steerer.engines[name]


def _request(engine: Engine, params: SamplingParams, prompt: str | None, messages: list[dict[str, str]] | None,
             prefill: str | None) -> EngineRequest:
    return build_request(engine.spec, params, prompt=prompt, messages=messages, prefill=prefill, engine=engine)


def _has_chat_template(engine: Engine) -> bool:
    try:
        engine.render_chat([{"role": "user", "content": "x"}])
    except ConfigError:
        return False
    return True


def _usage(result: Result) -> dict[str, int]:
    return {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens}


def _generate(steerer: Steerer, label: str, request: EngineRequest) -> Result:
    with steerer.locks[label]:  # generate, not stream: a fault midway is retried, as nobody saw pieces yet
        result: Result | None = next(iter(steerer.engines[label].generate([request])), None)
    if result is None or result.error:
        raise ReasonryError(f"model {label}: {result.error if result else 'no result'}")
    return result


async def _reply(request: Request, steerer: Steerer, label: str, engine_request: EngineRequest) -> Result | JSONResponse:
    """The finished result, or a one-line 500 (a failed model; anything unexpected is logged in full)."""
    try:
        return await run_in_threadpool(_generate, steerer, label, engine_request)
    except Exception as exc:
        return _error(stream_error(request, exc), 500)


def _pieces(steerer: Steerer, label: str, request: EngineRequest) -> Iterator[str | Result]:
    with steerer.locks[label]:
        yield from steerer.engines[label].stream(request)


def _sse(data: Any) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


Events = Callable[[Any], list[dict[str, Any]]]


def _event_stream(request: Request, steerer: Steerer, label: str, engine_request: EngineRequest, on_text: Events,
                  on_end: Events, first: Sequence[dict[str, Any]] = ()) -> StreamingResponse:
    """The server-sent events of a stream=true completion: `first`, `on_text(piece)` for every piece of text,
    `on_end(result)` for the final result (or one error event), then [DONE]."""

    def events() -> Iterator[str]:
        yield from map(_sse, first)
        try:
            for piece in _pieces(steerer, label, engine_request):
                if not isinstance(piece, Result):
                    yield from map(_sse, on_text(piece))
                elif piece.error:
                    yield _sse({"error": {"message": public_message(request, piece.error)}})
                    break
                else:
                    yield from map(_sse, on_end(piece))
        except Exception as exc:  # after the 200 an error can only be an event: never cut the stream
            yield _sse({"error": {"message": stream_error(request, exc)}})
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


@router.get("/models")
def list_models(request: Request) -> dict[str, Any]:
    steerer = steerer_of(request)
    return {"object": "list", "data": [{"id": label, "object": "model", "created": 0, "owned_by": "reasonry"}
                                       for label in steerer.engines]}


async def _read(request: Request, kind: type[B], build: Callable[[Engine, B, SamplingParams], R]
                ) -> tuple[Steerer, B, str, R]:
    """A /v1 request's body and served model, and what `build` makes of them and the sampling parameters."""
    steerer = steerer_of(request)
    body = read_body(kind, await json_body(request))
    label, engine = _model(steerer, body)
    built = build(engine, body, _params(body, steerer.params))
    engine_request = built[0] if isinstance(built, tuple) else built
    problem = engine.check(engine_request)  # refused before any 200: a 400 also for stream=true
    if problem:
        raise InputError(f"model {label}: {problem}")
    return steerer, body, label, built


def _completion_request(engine: Engine, body: CompletionBody, params: SamplingParams) -> EngineRequest:
    prompt = body.prompt if isinstance(body.prompt, str) else body.prompt[0]
    if body.mode is not None:
        prompt, _, _ = build_prompt(body.mode, prompt, body.input or "", body.reasoning)
    return _request(engine, params, prompt, None, None)


@router.post("/completions")
async def completions(request: Request) -> Any:
    try:
        steerer, body, label, engine_request = await _read(request, CompletionBody, _completion_request)
    except ReasonryError as exc:
        return _error(public_message(request, exc))
    mode = body.mode
    ident, created = "cmpl-" + secrets.token_hex(8), int(time.time())

    def chunk(text: str, finish: str | None) -> dict[str, Any]:
        return {"id": ident, "object": "text_completion", "created": created, "model": label,
                "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]}

    if body.stream:
        return _event_stream(request, steerer, label, engine_request, lambda piece: [chunk(piece, None)],
                             lambda result: [{**chunk("", result.finish_reason), "usage": _usage(result)}])
    result = await _reply(request, steerer, label, engine_request)
    if isinstance(result, JSONResponse):
        return result
    reply = chunk(result.text, result.finish_reason)
    if mode is not None:
        reasoning, response = parse_text(mode, result.text, body.reasoning)
        reply["choices"][0].update(reasoning=reasoning, response=response)
    return {**reply, "usage": _usage(result)}


def _chat_request(engine: Engine, body: ChatBody, params: SamplingParams) -> tuple[EngineRequest, Parse]:
    messages = [{"role": str(m.get("role", "user")), "content": m["content"]} for m in body.messages]
    mode = body.mode
    reasoning = body.reasoning or None
    style = body.template or ("chat" if _has_chat_template(engine) else "alpaca")
    if style == "chat" and mode in (None, "special"):
        prefill = think_prefill(reasoning) if reasoning else None
        if reasoning:
            return _request(engine, params, None, messages, prefill), lambda text: (reasoning, text.strip())
        return _request(engine, params, None, messages, None), lambda text: split_output(text, "response")
    users = [m["content"] for m in messages if m["role"] == "user"]
    if not users:
        raise InputError("messages need a user message (the question)")
    mode = mode or "reasoning"
    prompt, _, _ = build_prompt(mode, users[-1], body.input or "", reasoning)
    return _request(engine, params, prompt, None, None), lambda text: parse_text(mode, text, reasoning)


@router.post("/chat/completions")
async def chat_completions(request: Request) -> Any:
    try:
        steerer, body, label, (engine_request, parse) = await _read(request, ChatBody, _chat_request)
    except ReasonryError as exc:
        return _error(public_message(request, exc))
    ident, created = "chatcmpl-" + secrets.token_hex(8), int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {"id": ident, "object": "chat.completion.chunk", "created": created, "model": label,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    if body.stream:
        deltas = _Deltas(parse)
        return _event_stream(
            request, steerer, label, engine_request, lambda piece: [chunk(d, None) for d in deltas.feed(piece)],
            lambda result: [*(chunk(d, None) for d in deltas.feed("", final=True)),
                            {**chunk({}, result.finish_reason), "usage": _usage(result)}],
            first=[chunk({"role": "assistant", "content": ""}, None)])
    result = await _reply(request, steerer, label, engine_request)
    if isinstance(result, JSONResponse):
        return result
    reasoning, response = parse(result.text)
    message = {"role": "assistant", "content": response or "", "reasoning_content": reasoning}
    return {"id": ident, "object": "chat.completion", "created": created, "model": label,
            "choices": [{"index": 0, "message": message, "finish_reason": result.finish_reason}],
            "usage": _usage(result)}


class _Deltas:
    """Turns growing raw text into reasoning_content / content deltas, holding back a marker's length."""

    def __init__(self, parse: Parse) -> None:
        self.parse = parse
        self.text = ""
        self.sent = {"reasoning_content": "", "content": ""}

    def feed(self, piece: str, final: bool = False) -> list[dict[str, str]]:
        self.text += piece
        reasoning, response = self.parse(self.text)
        if not final and not self._settled(response or ""):
            response = ""  # a response marker still to come would turn this text into the reasoning
        out = []
        for name, value in (("reasoning_content", reasoning or ""), ("content", response or "")):
            sent = self.sent[name]
            ready = value if final else value[: max(0, len(value) - HOLD)]
            if len(ready) > len(sent) and ready.startswith(sent):
                out.append({name: ready[len(sent):]})
                self.sent[name] = ready
        return out

    def _settled(self, response: str) -> bool:
        """Whether the response read so far stays the response when more text arrives."""
        if not response or any(mark in self.text for mark in (*RESPONSE_MARKERS, THINK_CLOSE)):
            return True
        probe = self.parse(self.text + "\n" + RESPONSE_MARKERS[-1] + "\n.")[1] or ""
        return probe.startswith(response)
