"""The one interface every backend implements: requests in, results out (in completion order)."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from reasonry.config import ModelSpec, SamplingParams
from reasonry.errors import EngineError


@dataclass
class Request:
    """One model call. Exactly one of `prompt` (raw text) or `messages` (chat) is set.

    `prefill` is text the assistant turn starts with (special mode on chat models); the
    engine continues from it and the result's text does not repeat it.
    """

    key: str
    params: SamplingParams
    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    prefill: str | None = None
    sample_index: int = 0


@dataclass
class Result:
    key: str
    text: str = ""
    raw_text: str = ""
    reasoning: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    latency_s: float = 0.0
    error: str | None = None
    retries: int = 0  # attempts beyond the first that the engine made (HTTP retries)

    @property
    def ok(self) -> bool:
        return self.error is None


def request_key(
    spec: ModelSpec, prompt: str | None, messages: list[dict[str, str]] | None, prefill: str | None,
    params: SamplingParams, sample_index: int,
) -> str:
    """Hash of everything that determines a model call's output; same key, same cached result."""
    payload = {
        "engine": spec.kind,
        "model": spec.model,
        "adapter": spec.adapter,
        "base_url": spec.base_url if spec.kind == "openai" else None,
        "prompt": prompt,
        "messages": messages,
        "prefill": prefill,
        "params": params.canonical(),
        "sample": sample_index,
    }
    settings = spec.options.get("settings")
    if settings:  # engine settings that change the output (dtype, quantisation, sampler); absent by default
        payload["settings"] = settings
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def check_local_path(name: str, what: str) -> None:
    """A model or adapter written as a path (./x, /x, ~/x, x\\y) must exist; hub ids are left to the loader."""
    looks_local = name.startswith((".", "/", "~")) or "\\" in name
    if looks_local and not Path(name).expanduser().exists():
        raise EngineError(f"--model: {what} path '{name}' does not exist")


class Engine(ABC):
    """A loaded model. `generate` consumes requests lazily and yields results as they finish."""

    spec: ModelSpec
    concurrent = False  # True: generate/stream may be called from several threads at once (they share one batch)

    @abstractmethod
    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        """Yield one Result per Request, in completion order; failures come back as results with `error`."""

    def stream(self, request: Request) -> Iterator[str | Result]:
        """Yield text pieces as they are generated, then the final Result. Engines that cannot stream yield once."""
        result = next(iter(self.generate([request])))
        if result.text:
            yield result.text
        yield result

    def check(self, request: Request) -> str | None:
        """Why the engine would refuse `request` without running it (an empty or too long prompt), or None."""
        return None

    def render_chat(self, messages: list[dict[str, str]], prefill: str | None = None) -> str | None:
        """Render chat messages to a prompt string when the engine renders locally; None otherwise."""
        return None

    def count_tokens(self, text: str) -> int | None:
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free the model; engines that hold nothing leave it empty."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
