"""Every wire format reasonry writes or reads: think blocks, response markers, "question, blank line, input"."""

from __future__ import annotations

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
RESPONSE_MARKERS = ("<|response|>", "### Response:")
REASONING_MARKERS = ("<|reasoning|>", "### Reasoning:")
THINK_PREFILL = THINK_OPEN + "\n{reasoning}\n" + THINK_CLOSE + "\n\n"


def think_prefill(reasoning: str) -> str:
    """What a chat model's assistant turn starts with when the reasoning is given (special mode)."""
    return THINK_PREFILL.format(reasoning=reasoning)


def with_think_block(reasoning: str | None, text: str | None) -> str:
    """`<think>reasoning</think>` then the text; the text alone when there is no reasoning."""
    return think_prefill(reasoning) + (text or "") if reasoning else text or ""


def user_content(question: str, input_text: str | None) -> str:
    """The user turn of a row: the question, a blank line, then the input (when there is one)."""
    return question + (f"\n\n{input_text}" if input_text else "")
