"""The `truncated` flag: stopped at the token limit, or a section the format asks for is missing."""

from __future__ import annotations

from reasonry.quality.flags import Flag
from reasonry.quality.normalisation import _TERMINAL, _sentences


def _tail_fragment(text: str) -> tuple[str, int]:
    stripped = text.rstrip()
    sentences = _sentences(stripped)
    start = sentences[-1][0] if sentences else 0
    start = max(start, len(stripped) - 120)
    return stripped[start:], start


def _ends_mid_sentence(text: str) -> bool:
    stripped = text.rstrip()
    return bool(stripped) and stripped[-1] not in _TERMINAL


def _check_truncated(
    reasoning: str, response: str | None, finish_reason: str | None, expected_section: bool
) -> Flag | None:
    if (finish_reason or "").lower() == "length":
        last_in_reasoning = not (response or "").strip()
        last = reasoning if last_in_reasoning else (response or "")
        reason = "generation stopped at the token limit (finish_reason=length)"
        if not _ends_mid_sentence(last):
            return Flag("truncated", reason)
        fragment, start = _tail_fragment(last)
        reason += "; the text ends mid-sentence"
        if last_in_reasoning:
            return Flag("truncated", reason, fragment, start, start + len(fragment))
        return Flag("truncated", reason, fragment)
    if expected_section and not reasoning.strip():
        return Flag("truncated", "the reasoning section is missing")
    if expected_section and response is not None and not response.strip():
        return Flag("truncated", "the response section is missing")
    return None
