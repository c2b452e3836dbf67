"""Split a model's raw output into reasoning and response (markers, <think> blocks, special tokens)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from reasonry.prompts.formats import REASONING_MARKERS, RESPONSE_MARKERS, THINK_CLOSE, THINK_OPEN

# A model that keeps going after its answer usually starts a new example with one of these.
NEXT_EXAMPLE = re.compile(r"<\|system\|>|<\|instruction\|>|^### Instruction:", re.MULTILINE)


def cut_text_after_last_token(text: str, token: str) -> str | None:
    """The seed's cut: everything after the last `token`, stripped; None when absent."""
    position = text.rfind(token)
    if position == -1:
        return None
    return text[position + len(token):].strip()


def strip_special_tokens(text: str, special_tokens: Iterable[str]) -> str:
    keep = set(RESPONSE_MARKERS) | set(REASONING_MARKERS) | {THINK_OPEN, THINK_CLOSE}
    for token in sorted(set(special_tokens) - keep, key=len, reverse=True):
        if token:
            text = text.replace(token, "")
    return text


def split_output(text: str, produces: str = "reasoning") -> tuple[str | None, str | None]:
    """Return (reasoning, response) from generated text.

    `produces` says what the prompt asked the model to write first: "reasoning" (the prompt ends at a
    reasoning tag, so a response follows a response marker) or "response".
    """
    if THINK_CLOSE in text or text.lstrip().startswith(THINK_OPEN):
        return _split_think(text)
    for marker in RESPONSE_MARKERS:
        if marker in text:
            before = text[: text.find(marker)]
            response = cut_text_after_last_token(text, marker) or ""
            return _clean_reasoning(before), _cut_next_example(response)
    if produces == "reasoning":
        return _clean_reasoning(text), None
    return None, _cut_next_example(text.strip())


def _split_think(text: str) -> tuple[str | None, str | None]:
    start = text.find(THINK_OPEN)
    body = text[start + len(THINK_OPEN):] if start != -1 else text
    if THINK_CLOSE not in body:
        return body.strip(), None
    reasoning, response = body.split(THINK_CLOSE, 1)
    return reasoning.strip(), _cut_next_example(response.strip())


def _clean_reasoning(text: str) -> str:
    text = text.strip()
    for marker in REASONING_MARKERS:
        if text.startswith(marker):
            text = text[len(marker):].strip()
    return _cut_next_example(text)


def _cut_next_example(text: str) -> str:
    match = NEXT_EXAMPLE.search(text)
    return text[: match.start()].rstrip() if match and match.start() > 0 else text
