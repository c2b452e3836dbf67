"""JSON API behind the Steer page: generate (streamed as NDJSON), history, accept, diff."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from reasonry.config import SamplingParams
from reasonry.errors import InputError, ReasonryError
from reasonry.tasks.steer import Budget, Steerer, Version, accept, get_version, history, threads
from reasonry.web.bodies import MAX_INT, AcceptBody, BatchAcceptBody, BatchBody, SteerBody, read_body
from reasonry.web.diff import diff_stats, word_diff

router = APIRouter(prefix="/api")
log = logging.getLogger(__name__)
MAX_NEW_TOKENS = 8192
PARAM_TYPES = {"temperature": float, "top_p": float, "top_k": int, "repetition_penalty": float,
               "max_new_tokens": int, "seed": int}


def steerer_of(request: Request) -> Steerer:
    return request.app.state.steerer


def public_message(request: Request, error: BaseException | str) -> str:
    """An error message for a web client: without the server's database path (and one line)."""
    message = str(error)
    store = getattr(request.app.state, "store", None)
    path = getattr(store, "path", None)
    if path is not None:
        for form in {str(path), str(path.resolve())}:
            message = message.replace(f" in {form}", "").replace(form, "the database")
    return " ".join(message.split())


def stream_error(request: Request, exc: Exception) -> str:
    """The message for an error raised after a stream's 200 was sent (unexpected ones are logged in full)."""
    if isinstance(exc, ReasonryError):
        return public_message(request, exc)
    log.exception("error while streaming %s", request.url.path)
    return public_message(request, f"internal error ({type(exc).__name__}: {exc})")


def version_id_of(value: int, name: str = "version") -> int:
    """A path/query version id the database can hold; a bigger one is simply not found."""
    if not 1 <= value <= MAX_INT:
        raise InputError(f"steering {name} {value} not found")
    return value


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
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise InputError(f"sampling parameter {name}: {value!r} is not a number")
        if PARAM_TYPES[name] is int and isinstance(value, float) and not value.is_integer():
            raise InputError(f"sampling parameter {name}: {value!r} is not a whole number")
        try:
            changes[name] = PARAM_TYPES[name](value)
        except (TypeError, ValueError, OverflowError):
            raise InputError(f"sampling parameter {name}: {value!r} is not a number") from None
        if PARAM_TYPES[name] is int and not -MAX_INT <= changes[name] <= MAX_INT:
            raise InputError(f"sampling parameter {name}: {value!r} is out of range")
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


def _steer_options(body: dict[str, Any], steerer: Steerer) -> dict[str, Any]:
    """Every field checked up front, so a bad one is a 400 before anything is generated or streamed."""
    fields = read_body(SteerBody, body)
    budget = None
    if fields.reasoning_budget is not None:
        budget = Budget(fields.reasoning_budget, fields.reasoning_min or 0, fields.budget_close or "")
    return {
        "budget": budget,
        "model": fields.model or None, "question": fields.question or "", "input_text": fields.input or "",
        "mode": fields.mode, "reasoning": fields.reasoning or None,
        "params": params_from(fields.params, steerer.params), "thread": fields.thread or None,
        "parent": fields.parent,
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
    if options["parent"] is not None:
        steerer.get(options["parent"])

    def lines() -> Iterator[str]:
        try:
            for piece in steerer.stream(model, question, input_text, **options):
                if isinstance(piece, Version):
                    yield json.dumps({"type": "version", "version": piece.to_dict()}, ensure_ascii=False) + "\n"
                else:
                    yield json.dumps({"type": "text", "text": piece}, ensure_ascii=False) + "\n"
        except Exception as exc:  # after the 200 an error can only be a line: never cut the stream
            yield json.dumps({"type": "error", "message": stream_error(request, exc)}, ensure_ascii=False) + "\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson", headers={"cache-control": "no-store"})


@router.get("/threads")
def thread_list(request: Request) -> dict[str, Any]:
    return {"threads": threads(steerer_of(request).store)}


@router.get("/threads/{thread}")
def thread_versions(request: Request, thread: str) -> dict[str, Any]:
    return {"thread": thread, "versions": [v.to_dict() for v in history(steerer_of(request).store, thread)]}


@router.get("/versions/{version_id}")
def version(request: Request, version_id: int) -> dict[str, Any]:
    return get_version(steerer_of(request).store, version_id_of(version_id)).to_dict()


@router.post("/versions/{version_id}/accept")
async def accept_version(request: Request, version_id: int) -> dict[str, Any]:
    body = read_body(AcceptBody, await json_body(request))
    return accept(steerer_of(request).store, version_id_of(version_id), body.accepted).to_dict()


@router.get("/diff")
def diff(request: Request, a: int, b: int) -> dict[str, Any]:
    store = steerer_of(request).store
    old, new = get_version(store, version_id_of(a)), get_version(store, version_id_of(b))
    response, reasoning = word_diff(old.response, new.response), word_diff(old.reasoning, new.reasoning)
    return {"a": a, "b": b, "response": response, "reasoning": reasoning,
            "stats": {"response": diff_stats(response), "reasoning": diff_stats(reasoning)}}


@router.get("/batch/runs")
def batch_runs(request: Request) -> dict[str, Any]:
    """Runs whose reasonings a batch can edit, newest first."""
    store = steerer_of(request).store
    return {"runs": [{"id": r["id"], "kind": r["kind"], "source": r.get("source"),
                      "models": [m["label"] for m in store.run_models(r["id"])]}
                     for r in store.list_runs(100) if r["kind"] in ("generate", "ensemble")]}


@router.post("/batch")
async def batch(request: Request) -> dict[str, Any]:
    """Apply one reasoning edit to a run's rows and regenerate the responses: the batch report."""
    from reasonry.tasks.steer_batch import Edit, steer_batch

    steerer = steerer_of(request)
    fields = read_body(BatchBody, await json_body(request))
    edit = Edit(fields.edit.kind or "", fields.edit.text or "", fields.edit.replacement or "")
    label, engine = steerer.engine(fields.model or None)
    run = fields.run or "last"
    params = params_from(fields.params, steerer.params)

    def work() -> dict[str, Any]:
        with steerer.locks[label]:
            return steer_batch(steerer.store, run, engine, edit, fmt=steerer.format_of(label),
                               model=fields.run_model or None, params=params, limit=fields.limit,
                               label=label).to_dict()

    return await run_in_threadpool(work)


@router.get("/batch/{batch_id}")
def batch_report(request: Request, batch_id: str) -> dict[str, Any]:
    from reasonry.tasks.steer_batch import load_report

    return load_report(steerer_of(request).store, batch_id).to_dict()


@router.post("/batch/{batch_id}/accept")
async def batch_accept(request: Request, batch_id: str) -> dict[str, Any]:
    from reasonry.tasks.steer_batch import accept_batch

    fields = read_body(BatchAcceptBody, await json_body(request))
    accepted = accept_batch(steerer_of(request).store, batch_id, changed_only=not fields.all,
                            without_flags=fields.without_flags)
    return {"accepted": [v.id for v in accepted]}
