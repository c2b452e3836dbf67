"""Read debate outputs: challenge lists, answers and judge scores. Never raises on model text."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from reasonry.extract import REASONING_MARKERS
from reasonry.paragraphs import parse_items
from reasonry.store import StoredResult

# The rebuttal template asks for '### Rebuttals:'; models also write it bold, plain or as a heading.
_REBUTTALS_RE = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*|__)?[ \t]*(?:rebuttals|counter[- ]?arguments|counterarguments|反論一覧)"
    r"[ \t]*(?:\*\*|__)?[ \t]*(?:[:：][ \t]*(?:\*\*|__)?|$)",
    re.IGNORECASE | re.MULTILINE,
)
_SCORE_RE = re.compile(r"score\s*(?:\*\*)?\s*[:=]?\s*(?:\*\*)?\s*(\d{1,2}(?:\.\d+)?)", re.IGNORECASE)
_OUT_OF_RE = re.compile(r"(\d{1,2}(?:\.\d+)?)\s*(?:/|out\s+of)\s*10\b", re.IGNORECASE)
_NUMBER_RE = re.compile(r"(?<![\d.])(\d{1,2}(?:\.\d+)?)(?![\d.]*\d)")

NO_REBUTTALS = "no '### Rebuttals:' section in model output (its reasoning is kept)"
NO_RESPONSE = "no '### Response:' section in model output (its reasoning is kept)"


@dataclass
class Parsed:
    """What one model output gives a node: items (challenges) or a text (answer), else an error."""

    items: list[str] = field(default_factory=list)
    text: str | None = None
    reasoning: str | None = None
    raw_text: str = ""
    error: str | None = None


def _engine_error(result: StoredResult | None) -> Parsed | None:
    if result is None:
        return Parsed(error="no result stored (interrupted?); run the same command again")
    if result.error is not None:
        return Parsed(raw_text=result.raw_text or "", error=f"engine: {result.error}")
    return None


def _clean_reasoning(text: str) -> str | None:
    text = text.strip()
    for marker in REASONING_MARKERS:
        if text.startswith(marker):
            text = text[len(marker):].strip()
    return text or None


def parse_challenges(result: StoredResult | None, move: str, n: int, *, require_question: bool) -> Parsed:
    """N questions or rebuttals from one output. Rebuttals keep the reasoning written before their list."""
    failed = _engine_error(result)
    if failed is not None:
        return failed
    assert result is not None
    raw = result.raw_text or result.text or ""
    reasoning, body = result.reasoning, result.response
    if move == "rebuttals":
        markers = list(_REBUTTALS_RE.finditer(result.text or ""))
        if markers:
            text = result.text or ""
            reasoning, body = _clean_reasoning(text[: markers[-1].start()]), text[markers[-1].end():]
        elif body is None:
            return Parsed(reasoning=_clean_reasoning(result.text or ""), raw_text=raw, error=NO_REBUTTALS)
    if body is None:
        return Parsed(reasoning=reasoning, raw_text=raw, error=NO_RESPONSE)
    parsed = parse_items(body, n, require_question=require_question and move == "questions")
    return Parsed(items=parsed.items, reasoning=reasoning, raw_text=raw, error=parsed.error)


def parse_answer(result: StoredResult | None) -> Parsed:
    failed = _engine_error(result)
    if failed is not None:
        return failed
    assert result is not None
    raw = result.raw_text or result.text or ""
    if not (result.response or "").strip():
        error = NO_RESPONSE if result.response is None else "the model's response is empty"
        return Parsed(reasoning=result.reasoning, raw_text=raw, error=error)
    return Parsed(text=result.response.strip(), reasoning=result.reasoning, raw_text=raw)


def parse_score(text: str | None) -> float | None:
    """A 1-10 score from a judge's reply: 'Score: 7', '8/10', '7 out of 10', or the first number."""
    if not text:
        return None
    for pattern in (_SCORE_RE, _OUT_OF_RE, _NUMBER_RE):
        for match in pattern.finditer(text):
            value = float(match.group(1))
            if 1 <= value <= 10:
                return value
    return None


def judge_score(result: StoredResult | None) -> float | None:
    if result is None or result.error is not None:
        return None
    return parse_score(result.response) or parse_score(result.text)
