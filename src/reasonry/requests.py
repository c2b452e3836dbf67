"""The one place a model Request is built: from a rendered prompt or chat messages, keyed, size-capped.

generate, ensemble, translate, steer, debate and the web /v1 endpoints all build requests here, so the
content-addressed key and the prompt-size cap are the same whoever asks.
"""

from __future__ import annotations

from reasonry.config import ModelSpec, SamplingParams
from reasonry.engines.base import Engine, Request, request_key
from reasonry.errors import InputError

# A prompt above this many characters is refused before any engine sees it (an oversized row must fail alone,
# not exhaust the memory of the whole run). About 250k tokens of English: more than any supported context.
MAX_PROMPT_CHARS = 1_000_000


class PromptTooLarge(InputError):
    """A rendered prompt (or chat) larger than MAX_PROMPT_CHARS."""


def prompt_size(prompt: str | None, messages: list[dict[str, str]] | None, prefill: str | None) -> int:
    return len(prompt or "") + sum(len(m.get("content") or "") for m in messages or ()) + len(prefill or "")


def check_size(prompt: str | None, messages: list[dict[str, str]] | None = None, prefill: str | None = None,
               *, where: str = "prompt") -> None:
    size = prompt_size(prompt, messages, prefill)
    if size > MAX_PROMPT_CHARS:
        raise PromptTooLarge(f"{where}: {size:,} characters, over the {MAX_PROMPT_CHARS:,}-character limit; "
                             "shorten the question/input or the template")


def build_request(spec: ModelSpec, params: SamplingParams, *, prompt: str | None = None,
                  messages: list[dict[str, str]] | None = None, prefill: str | None = None, sample_index: int = 0,
                  engine: Engine | None = None, where: str = "prompt") -> Request:
    """A keyed Request. With `engine`, chat messages the engine renders locally become the prompt text.

    Raises PromptTooLarge (an InputError) when the prompt exceeds MAX_PROMPT_CHARS.
    """
    check_size(prompt, messages, prefill, where=where)
    if messages is not None and engine is not None:
        rendered = engine.render_chat(messages, prefill)
        if rendered is not None:  # rendered locally: the prompt text is the request
            prompt, messages, prefill = rendered, None, None
    key = request_key(spec, prompt, messages, prefill, params, sample_index)
    return Request(key=key, params=params, prompt=prompt, messages=messages, prefill=prefill,
                   sample_index=sample_index)


def error_request(spec: ModelSpec, params: SamplingParams, error: str, sample_index: int = 0) -> Request:
    """A placeholder Request for a row that cannot become a prompt; its key records the error, not a prompt."""
    key = request_key(spec, f"error:{error}", None, None, params, sample_index)
    return Request(key=key, params=params, prompt=None, sample_index=sample_index)
