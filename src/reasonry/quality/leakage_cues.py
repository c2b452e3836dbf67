"""Where a reasoning presents something as the answer: answer cues, numbers with their units, stated
clauses, quoted phrases and explicit "the answer is …" statements (the building blocks of leakage.py)."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from reasonry.quality.flags import CheckConfig
from reasonry.quality.normalisation import (
    _CJK,
    _CJK_RUN_RE,
    _CLOSING_QUOTES,
    _HAN,
    _LIST_MARKER_RE,
    _OPENING_QUOTES,
    _STOPWORDS,
    _WORD,
    _find_phrase,
    _is_cjk_text,
    _sentences,
    _squash,
    _stem,
    _units,
)
from reasonry.quality.numbers import numbers


@dataclass(frozen=True)
class _Evidence:
    reason: str
    start: int
    end: int


@dataclass(frozen=True)
class _Texts:
    reasoning: str  # normalized
    response: str  # normalized
    question: str  # normalized
    reasoning_sentences: tuple[tuple[int, int], ...]
    response_names: frozenset[str] = frozenset()  # words of multi-word capitalized names in the response
    cut_off: bool = False  # generation stopped at the token limit: the text has no real last sentence


_HEDGES = (
    r"(?:about|approximately|approx\.?|around|roughly|exactly|nearly|almost|just|only|simply|precisely|"
    r"definitely|certainly|surely|indeed|clearly)"
)
_EN_CUE_BEFORE_RE = re.compile(
    r"(?:\b(?:is|are|was|were|be|equals?|equal to|gives?|giving|yields?|makes?|leaves?|left with|means?|"
    r"answer|result|total(?:s| of)?|therefore|thus|hence|so|get|becomes?|comes to)\b|[=:≈→])"
    rf"\s*(?:(?:{_HEDGES}|the|a|an)\s+)*[\"'“«「『(~$€£¥]?\s*$"
)
_JA_CUE_BEFORE_RE = re.compile(
    r"(?:答え|正解|解答|結論|結果|合計|全部で|つまり|したがって|従って|よって|すなわち|なので|約|計)"
    r"(?:は|が|として|で|:)?\s*[「『\"]?\s*$"
)
_HYPOTHETICAL_RE = re.compile(
    r"\b(?:whether|if|unless|suppose|supposing|assume|assuming|check|test|decide|determine)\b"
)
_JA_NUMBER_CUE_RE = re.compile(r"(?:は|が|で|=|:|約|計)\s*$")
_JA_COPULA_AFTER_RE = re.compile(
    r"^[」』\"]?\s*(?:です|だ|である|となり|になり|でしょう|と言え|といえ|と考えられ)"
)
_STRONG_CUE_RE = re.compile(
    r"\b(?:therefore|thus|hence|so|answer|result|conclude|conclusion|in total|altogether|which means)\b|"
    r"答え|正解|結論|したがって|従って|よって|つまり|なので|合計"
)
_QUOTE_RE = re.compile(
    r'"([^"\n]{1,80})"|“([^”\n]{1,80})”|「([^」\n]{1,80})」|『([^』\n]{1,80})』|«\s*([^»\n]{1,80}?)\s*»'
    r"|(?<![^\W_])'([^'\n]{1,80})'(?![^\W_])"
)
_EN_EXPLICIT_RE = re.compile(
    r"\b(?:(?:the|my|our|final|correct|right)\s+)*(?:answer|result|solution|option|choice)"
    r"(?:\s+(?:to|for|of)\s+(?:this|the|that|your|our)\s+(?:\w+\s+)?(?:question|problem|puzzle|riddle))?\s*"
    r"(?:is|would be|will be|should be|=|:)\s*(?P<x>[^.\n!?;]{1,80})"
)
_JA_EXPLICIT_RE = re.compile(r"(?:最終的な)?(?:答え|正解|解答|結論)\s*(?:は|:|=)\s*(?P<x>[^。\n、!?]{1,40})")
_JA_EXPLICIT_END_RE = re.compile(r"(?:です|だ|である|となります|になります|でしょう|となる|になる)$")
_POLARITY = frozenset({"yes", "no", "true", "false", "はい", "いいえ"})
_EN_VAGUE_START = frozenset(
    "not to that what which how whether unclear unknown likely probably found obtained determined "
    "going given based simple clear straightforward in by a an the".split()
)
_JA_VAGUE_START_RE = re.compile(r"^(?:何|どの|どう|いく|誰|どこ|いつ|なぜ|まだ|不明|わから|次の|以下)")
_EN_COPULA_RE = re.compile(r"\b(?:is|are|was|were|would be|will be|equals|means)\s+|\s*[=:]\s*")
_JA_PREDICATE_RE = re.compile(
    r"(?:は|が)\s*(?P<x>[^、。は]{1,20}?)\s*(?:です|だ|である|となります|になります|でしょう|と言えます)[。!]*$"
)


def _numbers(text: str) -> list[tuple[Decimal, int, int]]:
    return numbers(text)


def _unit_after(text: str, end: int) -> str:
    """The word (or CJK character) right after a number: "7 fruits" -> "fruit", "560円" -> "円"."""
    m = re.match(rf"[ \t\u3000]*(?:(?P<w>(?=[^\W\d_]){_WORD})|(?P<c>[{_CJK}]))", text[end : end + 40])
    if not m:
        return ""
    unit = _stem(m.group("w")) if m.group("w") else m.group("c")
    return "" if unit in _STOPWORDS else unit


def _number_cue_before(text: str, start: int) -> bool:
    before = text[max(0, start - 40) : start]
    return bool(_EN_CUE_BEFORE_RE.search(before) or _JA_NUMBER_CUE_RE.search(before))


def _response_numbers(response: str, question: str) -> dict[Decimal, set[str]]:
    """Numbers of the response absent from the question, each with the unit words that follow it."""
    in_question = {v for v, _, _ in _numbers(question)}
    markers = {m.end() - 2 for m in _LIST_MARKER_RE.finditer(response)}
    found: dict[Decimal, set[str]] = defaultdict(set)
    for value, _start, end in _numbers(response):
        if value in in_question or end in markers:
            continue
        found[value].add(_unit_after(response, end))
    return found


def _number_evidence(
    texts: _Texts, numbers: Mapping[Decimal, set[str]], source: str, config: CheckConfig
) -> _Evidence | None:
    for value, start, end in _numbers(texts.reasoning):
        if value not in numbers:
            continue
        small = value == value.to_integral_value() and abs(value) < config.leakage_small_number
        unit = _unit_after(texts.reasoning, end)
        if small and not (_number_cue_before(texts.reasoning, start) or (unit and unit in numbers[value])):
            continue
        return _Evidence(f"reasoning contains {source} number {texts.reasoning[start:end]}", start, end)
    return None


def _restates_question(texts: _Texts, start: int, end: int) -> bool:
    """True when the clause holding a stated phrase ("LUNA is black") is copied from the question."""
    window = _squash(texts.reasoning[start:end])
    return bool(window) and window in _squash(texts.question)


def _clause_start(before: str) -> int:
    breaks = [m.end() for m in re.finditer(r"[、。,.!?;:\n]", before)]
    return breaks[-1] if breaks else 0


def _stated_clause(texts: _Texts, start: int, end: int) -> int | None:
    """Start of the clause presenting a phrase as the answer ("Ken is the shortest", "答えは…", "…です"),
    or None when the phrase is merely mentioned, asked about, or copied from the question."""
    lo = max(0, start - 40)
    before = texts.reasoning[lo:start]
    ja = _JA_CUE_BEFORE_RE.search(before)
    if ja:
        return lo + ja.start()
    if _JA_COPULA_AFTER_RE.search(texts.reasoning[end : end + 12]):
        clause = lo + _clause_start(before)
        return None if _restates_question(texts, max(clause, start - 4), end) else clause
    en = _EN_CUE_BEFORE_RE.search(before)
    if not en:
        return None
    if _HYPOTHETICAL_RE.search(before[_clause_start(before[: en.start()]) : en.start()]):
        return None
    subject = re.search(r"(\S+)\s*$", before[: en.start()])
    clause = lo + (subject.start() if subject else en.start())
    return None if _restates_question(texts, clause, end) else clause


def _subject_near(texts: _Texts, subject: frozenset[str], start: int) -> int | None:
    """Where at least half of the response's subject words occur shortly before `start`, if they do."""
    if not subject:
        return start
    last = {u.key: u.start for u in _units(texts.reasoning, max(0, start - 60), start) if u.key in subject}
    if 2 * len(last) < len(subject):
        return None
    return min(last.values())


def _phrase_evidence(
    texts: _Texts, phrase: str, what: str, *, need_cue: bool, subject: frozenset[str] = frozenset()
) -> _Evidence | None:
    for start, end in _find_phrase(texts.reasoning, phrase):
        clause: int | None = start
        if need_cue:
            clause = _stated_clause(texts, start, end)
            near = _subject_near(texts, subject, start) if clause is not None else None
            if clause is None or near is None:
                continue
            clause = min(clause, near)
        cue = " stated as the answer" if need_cue else ""
        if (
            texts.reasoning[end : end + 1] in _CLOSING_QUOTES
            and texts.reasoning[start - 1 : start] in _OPENING_QUOTES
        ):
            end += 1
        return _Evidence(f"reasoning contains {what} '{phrase}'{cue}", clause, end)
    return None


def _in_question(texts: _Texts, phrase: str) -> bool:
    squashed = _squash(phrase)
    return bool(squashed) and squashed in _squash(texts.question)


def _is_distinctive(phrase: str) -> bool:
    """Several content words (or 3+ kanji/katakana): specific enough to count wherever it appears."""
    content_cjk = len(re.findall(f"[{_HAN}\u30a1-\u30fa\u30fc]", phrase))
    words = [u for u in _units(phrase) if not _CJK_RUN_RE.fullmatch(u.key)]
    return len(words) >= 2 or content_cjk >= 3


def _quote_evidence(texts: _Texts, config: CheckConfig) -> _Evidence | None:
    for m in _QUOTE_RE.finditer(texts.response):
        phrase = next(g for g in m.groups() if g is not None).strip().strip(".,!?。、")
        if len(phrase) < config.leakage_min_quote_chars or not any(ch.isalnum() for ch in phrase):
            continue
        need_cue = _in_question(texts, phrase)
        found = _phrase_evidence(texts, phrase, "the response's quoted phrase", need_cue=need_cue)
        if found:
            return found
    return None


def _explicit_is_concrete(x: str, has_response: bool) -> bool:
    x = x.strip().strip("\"'“”「」『』").strip()
    if not x:
        return False
    if _is_cjk_text(x):
        x = _JA_EXPLICIT_END_RE.sub("", x).strip()
        return bool(x) and len(x) <= 20 and not _JA_VAGUE_START_RE.match(x)
    words = x.split()
    first = words[0].strip(",:;\"'“”")
    if first in _EN_VAGUE_START:
        return False
    if re.search(r"\d", x) or first in _POLARITY:
        return True
    return len(words) <= (3 if not has_response else 4)


def _explicit_evidence(texts: _Texts) -> _Evidence | None:
    for regex in (_EN_EXPLICIT_RE, _JA_EXPLICIT_RE):
        for m in regex.finditer(texts.reasoning):
            if _explicit_is_concrete(m.group("x"), bool(texts.response.strip())):
                end = m.start("x") + len(m.group("x").rstrip())
                return _Evidence(
                    f"reasoning states an answer: '{texts.reasoning[m.start() : end]}'", m.start(), end
                )
    return None


def _key_sentences(text: str) -> list[str]:
    spans = _sentences(text)
    picked = [spans[0], spans[-1]] if spans else []
    return [text[s:e] for s, e in dict.fromkeys(picked)]
