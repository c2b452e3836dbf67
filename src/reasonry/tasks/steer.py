"""Steering: generate a reasoning, edit it, regenerate the response from it, keep every version.

Modes (seed 003): `reasoning` (alpaca-reasoning: the model writes the reasoning, then usually a response),
`special` (alpaca-special: a given reasoning, the model writes the response; chat models get it prefilled
inside `<think>`), `vanilla` (alpaca-vanilla: straight to the response, for comparison).

Python API::

    steerer = Steerer(Store("reasonry.db"), {"qwen": load_engine(parse_model_spec("hf:Qwen/..."))})
    first = steerer.run("qwen", "How many fruits ...?")
    fixed = steerer.run("qwen", first.question, mode="special", reasoning=edited_text, parent=first.id)
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
from reasonry.engines.base import Engine, Request, Result, request_key
from reasonry.errors import ConfigError, InputError
from reasonry.extract import split_output
from reasonry.prompts.library import load_template
from reasonry.store import Store

MODES = ("reasoning", "special", "vanilla")
TEMPLATES = {"reasoning": "alpaca-reasoning", "special": "alpaca-special", "vanilla": "alpaca-vanilla"}
THINK_PREFILL = "<think>\n{reasoning}\n</think>\n\n"

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
                 chat: bool = False) -> tuple[str | None, list[dict[str, str]] | None, str | None]:
    """(prompt, messages, prefill) for one steering call: the seed's alpaca text, or chat messages."""
    if mode not in MODES:
        raise ConfigError(f"--mode {mode!r}: choose one of {', '.join(MODES)}")
    if mode == "special" and not (reasoning or "").strip():
        raise InputError("mode special needs a reasoning (--reasoning TEXT or @file.txt)")
    if chat:
        content = question + (f"\n\n{input_text}" if input_text else "")
        prefill = THINK_PREFILL.format(reasoning=reasoning) if mode == "special" else None
        return None, [{"role": "user", "content": content}], prefill
    variables = {"instruction": question, "input": input_text}
    if mode == "special":
        variables["reasoning"] = reasoning or ""
    return load_template(TEMPLATES[mode]).render(**variables), None, None


def parse_text(mode: str, text: str, given_reasoning: str | None) -> tuple[str | None, str | None]:
    """(reasoning, response) of a generation in `mode`."""
    if mode == "reasoning":
        return split_output(text, "reasoning")
    _, response = split_output(text, "response")
    return (given_reasoning if mode == "special" else None), response


class Steerer:
    """Runs steering generations on named engines and records each one in `steer_versions`."""

    def __init__(self, store: Store, engines: Mapping[str, Engine], *, chat: bool | Mapping[str, bool] = False,
                 params: SamplingParams | None = None) -> None:
        if not engines:
            raise ConfigError("give at least one --model")
        self.store = store
        self.engines = dict(engines)
        self.chat = chat
        self.params = params or SamplingParams()
        # One generation at a time per model, except engines that batch concurrent requests themselves (hf).
        self.locks = {label: contextlib.nullcontext() if getattr(engine, 'concurrent', False) else threading.Lock()
                      for label, engine in self.engines.items()}

    @property
    def models(self) -> list[str]:
        return list(self.engines)

    def uses_chat(self, model: str) -> bool:
        return bool(self.chat.get(model, False)) if isinstance(self.chat, Mapping) else self.chat

    def engine(self, model: str | None) -> tuple[str, Engine]:
        label = model or self.models[0]
        if label not in self.engines:
            raise InputError(f"model {label!r} is not served; choose one of {', '.join(self.engines)}")
        return label, self.engines[label]

    def request(self, model: str, mode: str, question: str, input_text: str = "", reasoning: str | None = None,
                params: SamplingParams | None = None) -> Request:
        label, engine = self.engine(model)
        prompt, messages, prefill = build_prompt(mode, question, input_text, reasoning, chat=self.uses_chat(label))
        if messages is not None:
            rendered = engine.render_chat(messages, prefill)
            if rendered is not None:
                prompt, messages, prefill = rendered, None, None
        params = params or self.params
        key = request_key(engine.spec, prompt, messages, prefill, params, 0)
        return Request(key=key, params=params, prompt=prompt, messages=messages, prefill=prefill)

    def stream(self, model: str | None, question: str, input_text: str = "", *, mode: str = "reasoning",
               reasoning: str | None = None, params: SamplingParams | None = None, thread: str | None = None,
               parent: int | None = None, note: str | None = None) -> Iterator[str | Version]:
        """Yield the generated text in pieces, then the stored Version."""
        parent_version = self.get(parent) if parent is not None else None
        if parent_version is not None:
            thread = thread or parent_version.thread
            question = question or parent_version.question
            input_text = input_text or parent_version.input
        if not question.strip():
            raise InputError("the question is empty")
        label, engine = self.engine(model)
        request = self.request(label, mode, question, input_text, reasoning, params)
        result: Result | None = None
        with self.locks[label]:
            started = time.perf_counter()
            for piece in engine.stream(request):
                if isinstance(piece, Result):
                    result = piece
                else:
                    yield piece
            seconds = time.perf_counter() - started
        if result is None or result.error is not None:
            raise InputError(f"model {label}: generation failed ({result.error if result else 'no result'})")
        parsed_reasoning, response = parse_text(mode, result.text, reasoning)
        edited = mode == "special" and (parent_version is None or reasoning != parent_version.reasoning)
        yield self.record(
            thread=thread or new_thread_id(), parent_id=parent, model=label, mode=mode, question=question,
            input_text=input_text, reasoning=parsed_reasoning, response=response,
            raw_text=result.raw_text or result.text,
            params={**request.params.to_dict(), "chat": self.uses_chat(label), "key": request.key},
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

    def record(self, **fields: Any) -> Version:
        return record_version(self.store, **fields)

    def get(self, version_id: int) -> Version:
        return get_version(self.store, version_id)

    def history(self, thread: str | None = None, limit: int = 200) -> list[Version]:
        return history(self.store, thread, limit)

    def accept(self, version_id: int, accepted: bool = True) -> Version:
        return accept(self.store, version_id, accepted)


def record_version(store: Store, *, thread: str, parent_id: int | None, model: str, mode: str, question: str,
                   input_text: str, reasoning: str | None, response: str | None, raw_text: str | None,
                   params: Mapping[str, Any], seconds: float | None, prompt_tokens: int | None = None,
                   completion_tokens: int | None = None, edited: bool = False, note: str | None = None) -> Version:
    """Store a version (generated here or elsewhere) and return it."""
    with store.transaction() as conn:
        cursor = conn.execute(
            "INSERT INTO steer_versions (thread, parent_id, created_at, model, mode, question, input, reasoning,"
            " response, raw_text, params, seconds, prompt_tokens, completion_tokens, edited, note)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (thread, parent_id, time.time(), model, mode, question, input_text, reasoning, response, raw_text,
             json.dumps(dict(params), ensure_ascii=False), round(seconds, 4) if seconds is not None else None,
             prompt_tokens, completion_tokens, int(edited), note))
        version_id = cursor.lastrowid
    assert version_id is not None
    return get_version(store, version_id)


def get_version(store: Store, version_id: int) -> Version:
    row = store.conn.execute("SELECT * FROM steer_versions WHERE id=?", (version_id,)).fetchone()
    if row is None:
        raise InputError(f"steering version {version_id} not found in {store.path}; `reasonry steer history` lists them")
    return Version.from_row(row)


def history(store: Store, thread: str | None = None, limit: int = 200) -> list[Version]:
    """Versions of one thread, oldest first; without a thread, the latest `limit` versions of all threads."""
    if thread:
        rows = store.conn.execute("SELECT * FROM steer_versions WHERE thread=? ORDER BY id", (thread,)).fetchall()
    else:
        rows = store.conn.execute("SELECT * FROM (SELECT * FROM steer_versions ORDER BY id DESC LIMIT ?) ORDER BY id",
                                  (limit,)).fetchall()
    return [Version.from_row(r) for r in rows]


def threads(store: Store, limit: int = 100) -> list[dict[str, Any]]:
    """Threads, most recently changed first: id, first question, number of versions, accepted count."""
    rows = store.conn.execute(
        "SELECT thread, MIN(id) AS first_id, MAX(created_at) AS updated_at, COUNT(*) AS versions,"
        " SUM(accepted) AS accepted FROM steer_versions GROUP BY thread ORDER BY updated_at DESC LIMIT ?",
        (limit,)).fetchall()
    out = []
    for row in rows:
        first = store.conn.execute("SELECT question FROM steer_versions WHERE id=?", (row["first_id"],)).fetchone()
        out.append({**dict(row), "question": first["question"]})
    return out


def accept(store: Store, version_id: int, accepted: bool = True) -> Version:
    """Mark a version as a training example (or unmark it)."""
    get_version(store, version_id)
    with store.transaction() as conn:
        conn.execute("UPDATE steer_versions SET accepted=? WHERE id=?", (int(accepted), version_id))
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
    row = store.conn.execute("SELECT * FROM steer_versions WHERE thread=? AND model=? AND mode='vanilla' AND id<>?"
                             " AND response IS NOT NULL AND response<>'' ORDER BY id LIMIT 1",
                             (version.thread, version.model, version.id)).fetchone()
    if row is not None:
        return Version.from_row(row)
    return next((v for v in versions[:-1] if v.response), None)


def preference_pairs(store: Store) -> list[dict[str, Any]]:
    """One DPO pair per accepted version: chosen = the accepted version, rejected = the original it was
    steered from (see `original_of`). Pairs whose responses are identical or missing are skipped."""
    rows = store.conn.execute("SELECT * FROM steer_versions WHERE accepted=1 ORDER BY id").fetchall()
    pairs = []
    for row in rows:
        chosen = Version.from_row(row)
        rejected = original_of(store, chosen)
        if rejected is None or not chosen.response or not rejected.response:
            continue
        if chosen.response.strip() == rejected.response.strip():
            continue
        prompt = chosen.question + (f"\n\n{chosen.input}" if chosen.input else "")
        pairs.append({
            "prompt": prompt, "chosen": chosen.response, "rejected": rejected.response,
            "question": chosen.question, "input": chosen.input,
            "chosen_reasoning": chosen.reasoning, "rejected_reasoning": rejected.reasoning,
            "chosen_id": chosen.id, "rejected_id": rejected.id, "thread": chosen.thread, "model": chosen.model,
        })
    return pairs
