"""Steering: generate a reasoning, edit it, regenerate the response from it, keep every version.

Modes (seed 003): `reasoning` (the model writes the reasoning, then usually a response), `special` (a given
reasoning, the model writes the response; chat models get it prefilled inside `<think>`), `continue` (a
reasoning prefix the model continues, then responds), `vanilla` (straight to the response, for comparison).
Any prompt format with a reasoning section works (tasks/steer_formats.py: alpaca, phi2, user .j2, chat);
`budget=Budget(N)` ends the reasoning after N tokens and asks for the response (two calls, any engine).

Python API::

    steerer = Steerer(Store("reasonry.db"), {"qwen": load_engine(parse_model_spec("hf:Qwen/..."))})
    first = steerer.run("qwen", "How many fruits ...?")
    fixed = steerer.run("qwen", first.question, mode="special", reasoning=edited_text, parent=first.id)
    more = steerer.run("qwen", "", mode="continue", reasoning="Books are not fruit, so", parent=first.id)
    short = steerer.run("qwen", first.question, budget=Budget(128, minimum=32, close=" Time to answer."))
    steerer.accept(fixed.id)
    pairs = preference_pairs(steerer.store)
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from reasonry.config import SamplingParams
from reasonry.engines.base import Engine, Request, Result
from reasonry.errors import ConfigError, InputError
from reasonry.extract import split_output
from reasonry.prompts.formats import user_content
from reasonry.requests import build_request
from reasonry.store import Store
from reasonry.tasks.steer_formats import MODES, Prompt, SteerFormat, steer_format  # noqa: F401 - re-exported

VERSION_COLUMNS = (
    "id", "thread", "parent_id", "created_at", "model", "mode", "question", "input", "reasoning", "response",
    "raw_text", "params", "seconds", "prompt_tokens", "completion_tokens", "edited", "accepted", "note",
)


@dataclass
class Version:
    """One stored generation of a steering thread."""

    id: int
    thread: str
    parent_id: int | None
    created_at: float
    model: str
    mode: str
    question: str
    input: str
    reasoning: str | None
    response: str | None
    raw_text: str | None
    params: dict[str, Any]
    seconds: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    edited: bool
    accepted: bool
    note: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Version:
        data = {name: row[name] for name in VERSION_COLUMNS}
        data["params"] = json.loads(data["params"] or "{}")
        data["edited"], data["accepted"] = bool(data["edited"]), bool(data["accepted"])
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def new_thread_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def build_prompt(mode: str, question: str, input_text: str = "", reasoning: str | None = None, *,
                 chat: bool = False, fmt: SteerFormat | None = None
                 ) -> tuple[str | None, list[dict[str, str]] | None, str | None]:
    """(prompt, messages, prefill) for one steering call in `fmt` (default: the seed's alpaca, or chat)."""
    built = (fmt or steer_format("alpaca", chat=chat)).build(mode, question, input_text, reasoning)
    return built.prompt, built.messages, built.prefill


def parse_text(mode: str, text: str, given_reasoning: str | None,
               fmt: SteerFormat | None = None) -> tuple[str | None, str | None]:
    """(reasoning, response) of a generation in `mode`; in continue mode `text` follows the given prefix."""
    fmt = fmt or steer_format("alpaca")
    if mode == "reasoning":
        return fmt.split(text)
    if mode == "continue":
        reasoning, response = fmt.split((given_reasoning or "") + text)
        return reasoning, response
    _, response = split_output(text, "response")
    return (given_reasoning if mode == "special" else None), response


@dataclass(frozen=True)
class Budget:
    """A thinking budget: end the reasoning after `tokens` new tokens (closing it with `close`, when given) and
    make the model respond; a reasoning that ends before `minimum` tokens is resumed after `resume`."""

    tokens: int
    minimum: int = 0
    close: str = ""
    resume: str = "\nWait,"
    max_resumes: int = 3

    def __post_init__(self) -> None:
        if self.tokens < 1:
            raise ConfigError("--reasoning-budget must be >= 1 token")
        if not 0 <= self.minimum <= self.tokens:
            raise ConfigError("--reasoning-min must be between 0 and --reasoning-budget")


class Steerer:
    """Runs steering generations on named engines and records each one in `steer_versions`.

    `template` is the prompt format of the raw (not --chat) models: `alpaca` (seed 003), `phi2` (seed 000, with
    `role`/`system`), or a `.j2` file with a reasoning slot (see tasks.steer_formats)."""

    def __init__(self, store: Store, engines: Mapping[str, Engine], *, chat: bool | Mapping[str, bool] = False,
                 params: SamplingParams | None = None, template: str = "alpaca", role: str | None = None,
                 system: str | None = None) -> None:
        if not engines:
            raise ConfigError("give at least one --model")
        self.store = store
        self.engines = dict(engines)
        self.chat = chat
        self.params = params or SamplingParams()
        self.template = template
        self.formats = {False: steer_format(template, role=role, system=system),
                        True: steer_format(template, chat=True, role=role, system=system)}
        # One generation at a time per model, except engines that batch concurrent requests themselves (hf).
        self.locks = {label: contextlib.nullcontext() if getattr(engine, 'concurrent', False) else threading.Lock()
                      for label, engine in self.engines.items()}

    @property
    def models(self) -> list[str]:
        return list(self.engines)

    def uses_chat(self, model: str) -> bool:
        return bool(self.chat.get(model, False)) if isinstance(self.chat, Mapping) else self.chat

    def format_of(self, model: str) -> SteerFormat:
        return self.formats[self.uses_chat(model)]

    def engine(self, model: str | None) -> tuple[str, Engine]:
        label = model or self.models[0]
        if label not in self.engines:
            raise InputError(f"model {label!r} is not served; choose one of {', '.join(self.engines)}")
        return label, self.engines[label]

    def request(self, model: str, mode: str, question: str, input_text: str = "", reasoning: str | None = None,
                params: SamplingParams | None = None) -> Request:
        label, engine = self.engine(model)
        built = self.format_of(label).build(mode, question, input_text, reasoning)
        return make_request(engine, built, params or self.params)

    def stream(self, model: str | None, question: str, input_text: str = "", *, mode: str = "reasoning",
               reasoning: str | None = None, params: SamplingParams | None = None, thread: str | None = None,
               parent: int | None = None, note: str | None = None, budget: Budget | None = None,
               extra: Mapping[str, Any] | None = None) -> Iterator[str | Version]:
        """Yield the generated text in pieces, then the stored Version.

        mode `continue`: `reasoning` is a prefix the model continues inside the reasoning section; `budget`
        (reasoning/continue modes) ends the reasoning after that many tokens and asks for the response."""
        parent_version = self.get(parent) if parent is not None else None
        if parent_version is not None:
            thread = thread or parent_version.thread
            question = question or parent_version.question
            input_text = input_text or parent_version.input
        if not question.strip():
            raise InputError("the question is empty")
        label, engine = self.engine(model)
        fmt = self.format_of(label)
        params = params or self.params
        request = self.request(label, mode, question, input_text, reasoning, params)  # checks mode and reasoning
        info: dict[str, Any] = {}
        with self.locks[label]:
            started = time.perf_counter()
            if budget is not None and mode in ("reasoning", "continue"):
                outcome = yield from budgeted(engine, fmt, question, input_text, reasoning or "", budget, params)
                parsed_reasoning, response, result, info = outcome
            else:
                result = yield from _streamed(engine, request, label)
                parsed_reasoning, response = parse_text(mode, result.text, reasoning, fmt)
            seconds = time.perf_counter() - started
        edited = mode in ("special", "continue") and (
            parent_version is None or (parsed_reasoning or "") != (parent_version.reasoning or ""))
        raw = result.raw_text or result.text
        if mode == "continue" and budget is None:
            raw = (reasoning or "") + raw
        yield record_version(
            self.store, thread=thread or new_thread_id(), parent_id=parent, model=label, mode=mode, question=question,
            input_text=input_text, reasoning=parsed_reasoning, response=response, raw_text=raw,
            params={**params.to_dict(), "chat": self.uses_chat(label), "template": fmt.name, "key": request.key,
                    **({"prefix": reasoning} if mode == "continue" else {}), **info, **dict(extra or {})},
            seconds=seconds, prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
            edited=edited, note=note)

    def run(self, model: str | None, question: str, input_text: str = "", **options: Any) -> Version:
        """Generate and record one version (see `stream` for the options)."""
        version = None
        for piece in self.stream(model, question, input_text, **options):
            if isinstance(piece, Version):
                version = piece
        assert version is not None
        return version

    def get(self, version_id: int) -> Version:
        return get_version(self.store, version_id)

    def accept(self, version_id: int, accepted: bool = True) -> Version:
        return accept(self.store, version_id, accepted)


def make_request(engine: Engine, call: Prompt, params: SamplingParams) -> Request:
    """The request for one steering call (a raw prompt, or chat messages with a prefill the engine renders locally
    when it can), through the one request builder."""
    return build_request(engine.spec, params, prompt=call.prompt, messages=call.messages, prefill=call.prefill,
                         engine=engine)


def _streamed(engine: Engine, request: Request, label: str) -> Iterator[str | Result]:
    result: Result | None = None
    for piece in engine.stream(request):
        if isinstance(piece, Result):
            result = piece
        else:
            yield piece
    if result is None or result.error is not None:
        raise InputError(f"model {label}: generation failed ({result.error if result else 'no result'})")
    return result


def budgeted(engine: Engine, fmt: SteerFormat, question: str, input_text: str, prefix: str, budget: Budget,
             params: SamplingParams) -> Iterator[str | Result]:
    """Two calls through the plain Engine interface: the reasoning up to `budget.tokens` new tokens (stopping
    at the section end; resumed after `budget.resume` while shorter than `budget.minimum`), then the response
    from the closed reasoning. Returns (reasoning, response, last result, info for the version's params)."""
    label = str(engine.spec)
    stop = tuple(dict.fromkeys((fmt.end_marker, *params.stop)))
    reasoning, used, resumes, hit = prefix, 0, 0, False
    prompt_tokens = 0
    while True:
        left = budget.tokens - used
        call = fmt.inside(question, input_text, reasoning)
        request = make_request(engine, call, params.with_(max_new_tokens=left, stop=stop))
        result = yield from _streamed(engine, request, label)
        prompt_tokens = prompt_tokens or result.prompt_tokens
        used += result.completion_tokens
        text = result.text
        if fmt.end_marker in text:
            text = text[: text.index(fmt.end_marker)]
        reasoning += text
        if result.finish_reason == "length" or used >= budget.tokens:
            hit = True
            break
        if used >= budget.minimum or resumes >= budget.max_resumes:
            break
        reasoning = reasoning.rstrip() + budget.resume
        resumes += 1
        yield budget.resume
    reasoning = reasoning.rstrip() + (budget.close if hit else "")
    yield fmt.section_end
    call = fmt.build("special", question, input_text, reasoning)
    request = make_request(engine, call, params)
    answer = yield from _streamed(engine, request, label)
    _, response = split_output(answer.text, "response")
    answer.raw_text = reasoning + fmt.section_end + answer.text
    answer.prompt_tokens = prompt_tokens
    answer.completion_tokens += used
    info = {"reasoning_budget": budget.tokens, "reasoning_min": budget.minimum, "reasoning_tokens": used,
            "budget_hit": hit, "resumed": resumes, **({"budget_close": budget.close} if budget.close else {})}
    return reasoning.strip(), response, answer, info




def record_version(store: Store, *, thread: str, parent_id: int | None, model: str, mode: str, question: str,
                   input_text: str, reasoning: str | None, response: str | None, raw_text: str | None,
                   params: Mapping[str, Any], seconds: float | None, prompt_tokens: int | None = None,
                   completion_tokens: int | None = None, edited: bool = False, note: str | None = None) -> Version:
    """Store a version (generated here or elsewhere) and return it."""
    version_id = store.add_version(
        thread=thread, parent_id=parent_id, model=model, mode=mode, question=question, input_text=input_text,
        reasoning=reasoning, response=response, raw_text=raw_text, params=params, seconds=seconds,
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, edited=edited, note=note)
    return get_version(store, version_id)


def get_version(store: Store, version_id: int) -> Version:
    row = store.version_row(version_id)
    if row is None:
        raise InputError(f"steering version {version_id} not found in {store.path}; `reasonry steer history` lists them")
    return Version.from_row(row)


def history(store: Store, thread: str | None = None, limit: int = 200) -> list[Version]:
    """Versions of one thread, oldest first; without a thread, the latest `limit` versions of all threads."""
    return [Version.from_row(r) for r in store.version_rows(thread=thread, limit=limit)]


def threads(store: Store, limit: int = 100) -> list[dict[str, Any]]:
    """Threads, most recently changed first: id, first question, number of versions, accepted count."""
    return store.thread_rows(limit)


def accept(store: Store, version_id: int, accepted: bool = True) -> Version:
    """Mark a version as a training example (or unmark it)."""
    get_version(store, version_id)
    store.set_accepted(version_id, accepted)
    return get_version(store, version_id)


def chain(store: Store, version: Version) -> list[Version]:
    """The edit chain ending at `version`, root first."""
    versions = [version]
    while versions[-1].parent_id is not None and len(versions) < 10_000:
        try:
            parent = get_version(store, versions[-1].parent_id)
        except InputError:
            break
        if parent.id in {v.id for v in versions}:
            break
        versions.append(parent)
    return versions[::-1]


def original_of(store: Store, version: Version) -> Version | None:
    """The unsteered response `version` improves on: its chain's root when that has a response, else the
    thread's first vanilla version of the same model, else the earliest earlier version in the chain with one."""
    versions = chain(store, version)
    if versions[0].id != version.id and versions[0].response:
        return versions[0]
    row = store.first_vanilla_row(version.thread, version.model, version.id)
    if row is not None:
        return Version.from_row(row)
    return next((v for v in versions[:-1] if v.response), None)


def preference_pairs(store: Store) -> list[dict[str, Any]]:
    """One DPO pair per accepted version: chosen = the accepted version, rejected = the original it was
    steered from (see `original_of`). Pairs whose responses are identical or missing are skipped."""
    rows = store.version_rows(accepted_only=True)
    pairs = []
    for row in rows:
        chosen = Version.from_row(row)
        rejected = original_of(store, chosen)
        if rejected is None or not chosen.response or not rejected.response:
            continue
        if chosen.response.strip() == rejected.response.strip():
            continue
        prompt = user_content(chosen.question, chosen.input)
        pairs.append({
            "prompt": prompt, "chosen": chosen.response, "rejected": rejected.response,
            "question": chosen.question, "input": chosen.input,
            "chosen_reasoning": chosen.reasoning, "rejected_reasoning": rejected.reasoning,
            "chosen_id": chosen.id, "rejected_id": rejected.id, "thread": chosen.thread, "model": chosen.model,
            "batch": chosen.params.get("batch"), "edit": chosen.params.get("edit"),
        })
    return pairs
