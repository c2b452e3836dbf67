"""JSON API behind the Steer page: generate (streamed as NDJSON), history, accept, diff."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from reasonry.config import SamplingParams
from reasonry.errors import InputError, ReasonryError
from reasonry.tasks.steer import Steerer, Version, accept, get_version, history, threads
from reasonry.web.diff import diff_stats, word_diff

router = APIRouter(prefix="/api")
MAX_NEW_TOKENS = 8192
PARAM_TYPES = {"temperature": float, "top_p": float, "top_k": int, "repetition_penalty": float,
               "max_new_tokens": int, "seed": int}


def steerer_of(request: Request) -> Steerer:
    return request.app.state.steerer


def params_from(body: Any, defaults: SamplingParams) -> SamplingParams:
    """Sampling parameters from a JSON object of overrides (unknown keys are refused)."""
    if body is None:
        return defaults
    if not isinstance(body, dict):
        raise InputError("params must be an object")
    changes: dict[str, Any] = {}
    for name, value in body.items():
        if name not in PARAM_TYPES:
            raise InputError(f"unknown sampling parameter {name!r}; known: {', '.join(PARAM_TYPES)}")
        if value is None or value == "":
            continue
        try:
            changes[name] = PARAM_TYPES[name](value)
        except (TypeError, ValueError):
            raise InputError(f"sampling parameter {name}: {value!r} is not a number") from None
    if changes.get("max_new_tokens", 0) > MAX_NEW_TOKENS:
        raise InputError(f"max_new_tokens must be <= {MAX_NEW_TOKENS}")
    return defaults.with_(**changes)


async def json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise InputError("the body is not JSON") from None
    if not isinstance(body, dict):
        raise InputError("the body must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name) or ""
    if not isinstance(value, str):
        raise InputError(f"{name} must be a string")
    return value


def _steer_options(body: dict[str, Any], steerer: Steerer) -> dict[str, Any]:
    parent = body.get("parent")
    return {
        "model": body.get("model") or None, "question": _text(body, "question"), "input_text": _text(body, "input"),
        "mode": body.get("mode") or "reasoning", "reasoning": body.get("reasoning") or None,
        "params": params_from(body.get("params"), steerer.params), "thread": body.get("thread") or None,
        "parent": int(parent) if parent not in (None, "") else None,
    }


@router.get("/models")
def models(request: Request) -> dict[str, Any]:
    steerer = steerer_of(request)
    return {"models": [{"label": label, "spec": str(engine.spec), "chat": steerer.uses_chat(label)}
                       for label, engine in steerer.engines.items()],
            "params": steerer.params.to_dict()}


@router.post("/steer")
async def steer(request: Request) -> dict[str, Any]:
    steerer = steerer_of(request)
    options = _steer_options(await json_body(request), steerer)
    model, question, input_text = options.pop("model"), options.pop("question"), options.pop("input_text")
    version = await run_in_threadpool(lambda: steerer.run(model, question, input_text, **options))
    return version.to_dict()


@router.post("/steer/stream")
async def steer_stream(request: Request) -> StreamingResponse:
    """NDJSON lines: {"type": "text", "text"} while generating, then {"type": "version"} or {"type": "error"}."""
    steerer = steerer_of(request)
    options = _steer_options(await json_body(request), steerer)
    model, question, input_text = options.pop("model"), options.pop("question"), options.pop("input_text")
    steerer.engine(model)

    def lines() -> Iterator[str]:
        try:
            for piece in steerer.stream(model, question, input_text, **options):
                if isinstance(piece, Version):
                    yield json.dumps({"type": "version", "version": piece.to_dict()}, ensure_ascii=False) + "\n"
                else:
                    yield json.dumps({"type": "text", "text": piece}, ensure_ascii=False) + "\n"
        except ReasonryError as exc:
            yield json.dumps({"type": "error", "message": str(exc)}, ensure_ascii=False) + "\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson", headers={"cache-control": "no-store"})


@router.get("/threads")
def thread_list(request: Request) -> dict[str, Any]:
    return {"threads": threads(steerer_of(request).store)}


@router.get("/threads/{thread}")
def thread_versions(request: Request, thread: str) -> dict[str, Any]:
    return {"thread": thread, "versions": [v.to_dict() for v in history(steerer_of(request).store, thread)]}


@router.get("/versions/{version_id}")
def version(request: Request, version_id: int) -> dict[str, Any]:
    return get_version(steerer_of(request).store, version_id).to_dict()


@router.post("/versions/{version_id}/accept")
async def accept_version(request: Request, version_id: int) -> dict[str, Any]:
    body = await json_body(request)
    return accept(steerer_of(request).store, version_id, bool(body.get("accepted", True))).to_dict()


@router.get("/diff")
def diff(request: Request, a: int, b: int) -> dict[str, Any]:
    store = steerer_of(request).store
    old, new = get_version(store, a), get_version(store, b)
    response, reasoning = word_diff(old.response, new.response), word_diff(old.reasoning, new.reasoning)
    return {"a": a, "b": b, "response": response, "reasoning": reasoning,
            "stats": {"response": diff_stats(response), "reasoning": diff_stats(reasoning)}}
