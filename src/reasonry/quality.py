"""Quality checks for generated reasoning: answer leakage, wrong language, truncation, repetition, length.

`check_one` looks at one result and returns at most one `Flag` per flag name. The `length` flag needs the
whole population of a model's results, so `check_one` never produces it: the caller computes
`length_outliers` over each model's reasoning lengths and appends `Flag("length", ...)` itself
(`report.render_report` does this for records it checks).

Leakage means the reasoning already states the final answer, which defeats the purpose of reasoning
written *before* the answer. The evidence used, strongest first:

* the reference answer (when given) appears in the reasoning;
* a number from the response that is not in the question appears in the reasoning
  (small integers only next to an answer cue such as "=" / "is" / "total" or with the same unit word);
* a quoted phrase of the response ("wind turbine", 「…」) appears in the reasoning;
* an explicit statement such as "the answer is 8" / "答えは55です";
* the response's answer phrase (what follows "… is" / "…は…です") is stated in the reasoning;
* a reasoning sentence restates the response's first or last sentence (ordered overlap of content words,
  or of character bigrams for Japanese);
* the reasoning and the response share long phrases that the question does not contain.

Everything that appears in the question is discounted: restating the question is not leakage.
"""

from __future__ import annotations

import math
import re
import statistics
import threading
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

FLAG_NAMES = ("leakage", "language", "truncated", "repetition", "length", "empty")


@dataclass
class Flag:
    """One quality problem found in a result.

    `span` is the matched text, an exact substring of the reasoning when `start`/`end` are set
    (`reasoning[start:end] == span`); `start`/`end` are None when the span lies elsewhere (e.g. the
    response) or there is nothing to point at.
    """

    name: str
    reason: str
    span: str | None = None
    start: int | None = None
    end: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Flag:
        return cls(
            name=str(data["name"]),
            reason=str(data.get("reason", "")),
            span=data.get("span"),
            start=data.get("start"),
            end=data.get("end"),
        )


@dataclass(frozen=True)
class CheckConfig:
    """Thresholds of every check. The defaults suit English and Japanese reasoning of a few sentences."""

    # language: ISO 639-1 code of the language the reasoning must be in; None skips the check.
    expected_language: str | None = None
    # flag only when the detected language has at least this (normalized) probability
    min_language_confidence: float = 0.8
    # texts shorter than this (stripped, in characters) are not language-checked
    min_chars: int = 20
    # repetition: an n-gram of `repetition_ngram` words (`repetition_cjk_ngram` characters for
    # Japanese/Chinese) occurring more than `repetition_max_repeats` times within `repetition_window`
    # tokens, or a block repeated back to back more than `repetition_max_repeats` times
    repetition_ngram: int = 4
    repetition_cjk_ngram: int = 10
    repetition_max_repeats: int = 3
    repetition_window: int = 150
    repetition_max_period: int = 20
    # a line of at least `repetition_min_line_chars` characters occurring `repetition_line_repeats` times
    repetition_line_repeats: int = 3
    repetition_min_line_chars: int = 10
    # length: robust z-score (median / MAD) beyond which a reasoning length is an outlier
    length_z: float = 3.0
    length_min_items: int = 8
    # leakage: integers below this need an answer cue or a shared unit word to count
    leakage_small_number: int = 10
    # quoted phrases shorter than this (characters) are ignored
    leakage_min_quote_chars: int = 2
    # ordered overlap of a response sentence's content words with one reasoning sentence
    leakage_overlap: float = 0.6
    leakage_cue_overlap: float = 0.5  # ... when the reasoning sentence has an answer cue ("so", "therefore")
    leakage_min_sentence_units: int = 2  # response sentences with fewer content units are not compared
    leakage_question_margin: float = 0.34  # overlap must beat the question's own overlap by this much
    # shared phrases absent from the question: one run of `leakage_min_phrase_words` content words (or a
    # capitalized name of two), or `leakage_min_total_phrase_words` words over runs of at least two
    leakage_min_phrase_words: int = 3
    leakage_min_total_phrase_words: int = 5
    # the same for Japanese, counted in kanji/katakana characters
    leakage_min_cjk_chars: int = 4
    leakage_min_total_cjk_chars: int = 8
    # longest answer phrase (words) taken from "X is <phrase>" in the response
    leakage_max_answer_words: int = 6


# --------------------------------------------------------------------------------------------- text basics

_KANA = "\u3041-\u3096\u30a1-\u30fa\u30fc"
_HAN = "\u3005\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK = _KANA + _HAN
_KANA_RE = re.compile(f"[{_KANA}]")
_HAN_RE = re.compile(f"[{_HAN}]")
_HIRAGANA_RE = re.compile("[\u3041-\u3096]")
_CJK_RUN_RE = re.compile(f"[{_CJK}]+")
_NON_CJK_LETTER = rf"(?:(?![{_CJK}])[^\W\d_])"
_WORD = rf"(?:(?![{_CJK}])[^\W_])+(?:['.\-](?:(?![{_CJK}])[^\W_])+)*"
_UNIT_RE = re.compile(rf"(?P<w>{_WORD})|(?P<c>[{_CJK}]+)")
_SENTENCE_END_RE = re.compile(r"(?<=[.!?;])\s+|(?<=[。!?;])|\n+")
_OPENING_QUOTES = frozenset("\"'“‘「『«")
_CLOSING_QUOTES = frozenset("\"'”’」』»")
_TERMINAL = set(".!?。」』)）\"'”’…:：`*")

_STOPWORDS = frozenset(
    """a an the and or but if then than so as of at by for from in into on onto to with without about
    above below over under between through during before after again further once here there when where
    why how what which who whom whose this that these those it its itself i me my mine myself we us our
    ours you your yours he him his she her hers they them their theirs is are was were be been being am
    have has had having do does did doing will would shall should can could may might must also just
    very too only own same other such each every any some all both either neither more most less least
    much many few one's up down out off s t let let's via per i'm it's that's there's""".split()
)
# function-like hiragana bigrams that say nothing about content
_STOP_BIGRAMS = frozenset(
    "です ます でし まし した して する ある いる ので から ため こと もの よう ょう この その あの など "
    "には では とは でも ても への てい いま れる られ せる なる なり".split()
)
_NUMBER_RE = re.compile(r"(?<![A-Za-z0-9.,])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![0-9]|[.,]\d)")
_LIST_MARKER_RE = re.compile(r"^\s*\d+[.)]\s", re.MULTILINE)


@dataclass(frozen=True)
class _Norm:
    """NFKC-normalized, lowercased text with a map from each of its characters back to the original."""

    text: str
    index: tuple[int, ...]

    def original(self, start: int, end: int) -> tuple[int, int]:
        if end <= start:
            return self.index[start], self.index[start]
        return self.index[start], self.index[end - 1] + 1


def _normalize(raw: str) -> _Norm:
    chars: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(raw):
        for c in unicodedata.normalize("NFKC", ch).lower():
            chars.append(c)
            index.append(i)
    index.append(len(raw))
    return _Norm("".join(chars), tuple(index))


def _norm(raw: str | None) -> str:
    return _normalize(raw or "").text


def _squash(text: str) -> str:
    """Letters, digits and CJK only: for containment tests that ignore spacing and punctuation."""
    return "".join(ch for ch in text if ch.isalnum())


def _stem(word: str) -> str:
    word = word.lower().replace("’", "'")
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith("es") and word[-3] in "sxz" or word.endswith(("ches", "shes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _sentences(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    pos = 0
    for m in _SENTENCE_END_RE.finditer(text):
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, len(text)))
    out = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            out.append((s, e))
    return out


@dataclass(frozen=True)
class _Unit:
    key: str
    start: int
    end: int


def _units(text: str, start: int = 0, end: int | None = None) -> list[_Unit]:
    """Content units in order: stemmed non-stopwords, and character bigrams of CJK runs."""
    units: list[_Unit] = []
    for m in _UNIT_RE.finditer(text, start, len(text) if end is None else end):
        if m.group("w"):
            key = _stem(m.group("w"))
            if key not in _STOPWORDS:
                units.append(_Unit(key, m.start(), m.end()))
            continue
        run = m.group("c")
        if len(run) == 1:
            units.append(_Unit(run, m.start(), m.end()))
        for i in range(len(run) - 1):
            gram = run[i : i + 2]
            if gram not in _STOP_BIGRAMS:
                units.append(_Unit(gram, m.start() + i, m.start() + i + 2))
    return units


def _bigrams(keys: Sequence[str]) -> set[tuple[str, str]]:
    return set(zip(keys, keys[1:], strict=False))


_LCS_MAX_CELLS = 1_000_000  # a bigger table (20,000 x 5,000 units of degenerate output) would take many seconds


class _LcsBudget:
    """LCS table cells one leakage check may fill, so many long sentences cannot add up to seconds either."""

    def __init__(self, cells: int = 4 * _LCS_MAX_CELLS) -> None:
        self.left = cells

    def spend(self, a: int, b: int) -> bool:
        self.left -= min(a * b, _LCS_MAX_CELLS)
        return self.left >= 0


def _lcs(a: Sequence[str], b: Sequence[str]) -> list[int]:
    """Indexes into `b` of one longest common subsequence of `a` and `b`.

    The table is quadratic: past `_LCS_MAX_CELLS` cells only the leading parts are compared (`a` to at most
    the square root of the bound, `b` to what then fits), so an overlong pair gives a lower bound, quickly.
    """
    if len(a) * len(b) > _LCS_MAX_CELLS:
        a = a[: max(1, min(len(a), math.isqrt(_LCS_MAX_CELLS)))]
        b = b[: max(1, _LCS_MAX_CELLS // len(a))]
    rows = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) - 1, -1, -1):
        for j in range(len(b) - 1, -1, -1):
            rows[i][j] = rows[i + 1][j + 1] + 1 if a[i] == b[j] else max(rows[i + 1][j], rows[i][j + 1])
    i = j = 0
    matched: list[int] = []
    while i < len(a) and j < len(b):
        if a[i] == b[j]:
            matched.append(j)
            i += 1
            j += 1
        elif rows[i + 1][j] >= rows[i][j + 1]:
            i += 1
        else:
            j += 1
    return matched


def _is_cjk_text(text: str) -> bool:
    cjk = len(_KANA_RE.findall(text)) + len(_HAN_RE.findall(text))
    latin = sum(1 for ch in text if ch.isalpha()) - cjk
    return cjk > 0 and cjk >= 0.3 * (cjk + latin)


def _find_phrase(haystack: str, phrase: str) -> list[tuple[int, int]]:
    """Occurrences of `phrase` in `haystack` (both normalized), flexible on whitespace, on word bounds."""
    parts = phrase.split()
    if not parts:
        return []
    pattern = r"\s+".join(re.escape(p) for p in parts)
    if re.match(_NON_CJK_LETTER + r"|\d", phrase):
        pattern = r"(?<![^\W_])" + pattern
    if re.search(r"(?:" + _NON_CJK_LETTER + r"|\d)$", phrase):
        pattern += r"(?![^\W_])"
    return [(m.start(), m.end()) for m in re.finditer(pattern, haystack)]


# --------------------------------------------------------------------------------------------- language

_langid_lock = threading.Lock()
_langid_identifier: Any = None


def _identifier() -> Any:
    global _langid_identifier
    with _langid_lock:
        if _langid_identifier is None:
            from langid.langid import LanguageIdentifier, model

            _langid_identifier = LanguageIdentifier.from_modelstring(model, norm_probs=True)
        return _langid_identifier


_CODE_OR_URL_RE = re.compile(r"```.*?```|`[^`\n]*`|\bhttps?://\S+", re.DOTALL)


def detect_language(text: str) -> tuple[str, float]:
    """(ISO 639-1 code, probability) of `text`, offline.

    langid (its model ships inside the package) with normalized probabilities, except that text where
    kana/kanji dominate (at least 30% of the letters) is Japanese when it has kana, and Chinese or Japanese
    (whichever langid ranks higher) when it is kanji only; below that share the CJK characters are left out.
    Returns ("", 0.0) for text without letters.
    """
    text = _CODE_OR_URL_RE.sub(" ", text or "")
    kana = len(_KANA_RE.findall(text))
    han = len(_HAN_RE.findall(text))
    cjk = kana + han
    latin = sum(1 for ch in text if ch.isalpha()) - cjk
    if cjk + latin == 0:
        return "", 0.0
    share = cjk / (cjk + latin)
    if cjk and share >= 0.3:
        if kana >= 0.05 * cjk:
            return "ja", round(min(1.0, 0.5 + share), 4)
        ranked = dict(_identifier().rank(text))
        lang = "ja" if ranked.get("ja", 0.0) > ranked.get("zh", 0.0) else "zh"
        return lang, round(min(1.0, 0.5 + share), 4)
    # a few quoted Japanese words must not outweigh the sentence around them
    lang, prob = _identifier().classify(_CJK_RUN_RE.sub(" ", text) if cjk else text)
    return str(lang), float(prob)


def _check_language(reasoning: str, config: CheckConfig) -> Flag | None:
    expected = (config.expected_language or "").lower().split("-")[0].split("_")[0]
    if not expected or len(reasoning.strip()) < config.min_chars:
        return None
    lang, prob = detect_language(reasoning)
    if not lang or lang == expected or prob < config.min_language_confidence:
        return None
    return Flag("language", f"reasoning looks like '{lang}' (p={prob:.2f}), expected '{expected}'")


# --------------------------------------------------------------------------------------------- truncation


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


# --------------------------------------------------------------------------------------------- repetition


@dataclass(frozen=True)
class _Token:
    key: str
    start: int
    end: int


def _repetition_tokens(text: str) -> tuple[list[_Token], bool]:
    if _is_cjk_text(text):
        return [_Token(ch, i, i + 1) for i, ch in enumerate(text) if ch.isalnum()], True
    return [_Token(m.group().lower(), m.start(), m.end()) for m in re.finditer(_WORD, text)], False


def _tandem_repeat(
    tokens: Sequence[_Token], min_tokens: int, config: CheckConfig
) -> tuple[int, int, int] | None:
    """(first token, period, copies) of a block repeated back to back more than the allowed times."""
    keys = [t.key for t in tokens]
    for period in range(1, config.repetition_max_period + 1):
        run = 0
        for i in range(len(keys) - period):
            run = run + 1 if keys[i] == keys[i + period] else 0
            copies = run // period + 1
            if copies > config.repetition_max_repeats and copies * period >= min_tokens:
                return i - run + 1, period, copies
    return None


def _windowed_ngram(
    tokens: Sequence[_Token], n: int, cjk: bool, config: CheckConfig
) -> tuple[int, int] | None:
    """(first token, occurrences) of an n-gram occurring too often within the window."""
    window = config.repetition_window * (2 if cjk else 1)
    positions: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i in range(len(tokens) - n + 1):
        gram = tuple(t.key for t in tokens[i : i + n])
        if not cjk and all(k in _STOPWORDS for k in gram):
            continue
        seen = positions[gram]
        if seen and i - seen[-1] < n:
            continue
        seen.append(i)
        inside = [p for p in seen if i - p <= window]
        if len(inside) > config.repetition_max_repeats:
            return inside[0], len(inside)
    return None


def _repeated_line(text: str, config: CheckConfig) -> tuple[str, int, int] | None:
    counts: Counter[str] = Counter()
    first: dict[str, int] = {}
    for m in re.finditer(r"[^\n]+", text):
        line = m.group().strip()
        if len(line) < config.repetition_min_line_chars:
            continue
        counts[line] += 1
        first.setdefault(line, m.start() + m.group().index(line))
        if counts[line] >= config.repetition_line_repeats:
            return line, first[line], counts[line]
    return None


def _check_repetition(reasoning: str, config: CheckConfig) -> Flag | None:
    tokens, cjk = _repetition_tokens(reasoning)
    n = config.repetition_cjk_ngram if cjk else config.repetition_ngram
    tandem = _tandem_repeat(tokens, n, config)
    if tandem:
        first, period, copies = tandem
        s, e = tokens[first].start, tokens[first + period - 1].end
        return Flag(
            "repetition", f"'{reasoning[s:e]}' repeated {copies} times in a row", reasoning[s:e], s, e
        )
    windowed = _windowed_ngram(tokens, n, cjk, config)
    if windowed:
        first, count = windowed
        s, e = tokens[first].start, tokens[first + n - 1].end
        reason = f"'{reasoning[s:e]}' occurs {count} times within {config.repetition_window} tokens"
        return Flag("repetition", reason, reasoning[s:e], s, e)
    line = _repeated_line(reasoning, config)
    if line:
        text, s, count = line
        return Flag("repetition", f"the line '{text}' occurs {count} times", text, s, s + len(text))
    return None


# --------------------------------------------------------------------------------------------- leakage


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
    r"\b(?:(?:the|my|our|final|correct|right)\s+)*(?:answer|result|solution|option|choice)\s*"
    r"(?:is|would be|will be|should be|=|:)\s*(?P<x>[^.\n!?;]{1,80})"
)
_JA_EXPLICIT_RE = re.compile(r"(?:最終的な)?(?:答え|正解|解答|結論)\s*(?:は|:|=)\s*(?P<x>[^。\n、!?]{1,40})")
_JA_EXPLICIT_END_RE = re.compile(r"(?:です|だ|である|となります|になります|でしょう|となる|になる)$")
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
    out = []
    for m in _NUMBER_RE.finditer(text):
        try:
            out.append((Decimal(m.group().replace(",", "")), m.start(), m.end()))
        except InvalidOperation:
            continue
    return out


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


def _answer_phrase(sentence: str, texts: _Texts, config: CheckConfig) -> tuple[str, frozenset[str]] | None:
    """What the response's sentence asserts and the content words of its subject:
    "<subject> is <phrase>" or "<subject>は<phrase>です"."""
    ja = _JA_PREDICATE_RE.search(sentence)
    if ja:
        phrase, subject = ja.group("x"), sentence[: ja.start()]
    else:
        copulas = list(_EN_COPULA_RE.finditer(sentence))
        if not copulas:
            return None
        phrase, subject = sentence[copulas[-1].end() :], sentence[: copulas[-1].start()]
    phrase = re.sub(rf"^(?:(?:{_HEDGES}|the|a|an|約)\s*)+", "", phrase.strip(" .!?。\"'“”「」『』«»"))
    phrase = phrase.strip(" .!?。\"'“”「」『』«»")
    if not phrase or len(phrase.split()) > config.leakage_max_answer_words or not _units(phrase):
        return None
    if _NUMBER_RE.fullmatch(phrase):
        return None  # numbers have their own check
    subject_units = frozenset(u.key for u in _units(subject))
    question_units = {u.key for u in _units(texts.question)}
    if _in_question(texts, phrase) and subject_units - question_units:
        return None  # the answer is the subject ("Paris is the capital"), not the predicate
    return phrase, subject_units


_POLARITY = frozenset({"yes", "no", "true", "false", "はい", "いいえ"})
_CLAUSE_BREAK_RE = re.compile(
    r"\s*(?:[,;、]|\b(?:and|but|because|since|while|although|though|whereas|so)\b)\s*"
)


def _claims(text: str) -> list[str]:
    """The response's first and last sentences, and their clauses ("Bob is the liar", "Alice tells ...")."""
    claims: list[str] = []
    for sentence in _key_sentences(text):
        claims.append(sentence)
        clauses = [c for c in _CLAUSE_BREAK_RE.split(sentence) if c]
        claims.extend(clauses if len(clauses) > 1 else [])
    return list(dict.fromkeys(claims))


def _short_answer(texts: _Texts, config: CheckConfig) -> tuple[str, frozenset[str]] | None:
    """A response of a few words ("Negative.", "B) Carbon dioxide", "cat") is the answer phrase itself."""
    text = re.sub(r"^\s*[a-e][).:]\s+", "", texts.response).strip(" .!?。\"'“”「」『』«»\n")
    too_long = (
        len(text) > 20 if _is_cjk_text(text) else len(text.split()) > config.leakage_max_answer_words // 2 + 1
    )
    if not text or too_long or _NUMBER_RE.fullmatch(text) or not _units(text):
        return None
    if _squash(text) in _POLARITY or re.fullmatch(r"[a-z]", text):
        return None  # "No." / "B": too common to spot; only explicit "the answer is no" counts
    return text, frozenset()


def _answer_phrase_evidence(texts: _Texts, config: CheckConfig) -> _Evidence | None:
    candidates = [_answer_phrase(sentence, texts, config) for sentence in _claims(texts.response)]
    for found in [_short_answer(texts, config), *candidates]:
        if found is None:
            continue
        phrase, subject = found
        if _in_question(texts, phrase) or not _is_distinctive(phrase):
            evidence = _phrase_evidence(
                texts, phrase, "the response's answer", need_cue=True, subject=subject
            )
        else:
            evidence = _phrase_evidence(texts, phrase, "the response's answer", need_cue=False)
        if evidence:
            return evidence
    return None


def _sentence_overlap_evidence(texts: _Texts, config: CheckConfig) -> _Evidence | None:
    budget = _LcsBudget()
    question_keys = {u.key for u in _units(texts.question)}
    question_sentences = [
        [u.key for u in _units(texts.question, s, e)] for s, e in _sentences(texts.question)
    ]
    for which, sentence in zip(("first", "last"), _key_sentences(texts.response), strict=False):
        target = [u.key for u in _units(sentence)]
        if len(target) < config.leakage_min_sentence_units:
            continue
        in_question = max((len(_lcs(target, q)) / len(target) for q in question_sentences), default=0.0)
        for s, e in texts.reasoning_sentences:
            units = _units(texts.reasoning, s, e)
            has_cue = bool(_STRONG_CUE_RE.search(texts.reasoning[s:e]))
            threshold = config.leakage_cue_overlap if has_cue else config.leakage_overlap
            # the LCS is at most the shorter side: skip sentences that cannot reach the threshold
            if len(units) < max(threshold * len(target), config.leakage_min_sentence_units):
                continue
            if not budget.spend(len(target), len(units)):
                return None
            matched = [units[j].key for j in _lcs(target, [u.key for u in units])]
            ratio = len(matched) / len(target)
            if ratio < threshold or len(matched) < config.leakage_min_sentence_units:
                continue
            novel = any(k not in question_keys for k in matched)
            if novel or ratio - in_question >= config.leakage_question_margin:
                reason = f"a reasoning sentence restates the response's {which} sentence ({ratio:.0%} of its content)"
                return _Evidence(reason, s, e)
    return None


def _word_runs(texts: _Texts) -> list[list[str]]:
    """Runs of the response's content words whose bigrams all occur in the reasoning and that hold a word
    absent from the question."""
    response = [u.key for u in _units(texts.response) if not _CJK_RUN_RE.fullmatch(u.key)]
    reasoning = _bigrams([u.key for u in _units(texts.reasoning) if not _CJK_RUN_RE.fullmatch(u.key)])
    question_words = {u.key for u in _units(texts.question)}
    runs: list[list[str]] = []
    current: list[str] = []
    for pair in zip(response, response[1:], strict=False):
        if pair in reasoning:
            current = current or [pair[0]]
            current.append(pair[1])
            continue
        runs.append(current)
        current = []
    runs.append(current)
    return [run for run in runs if any(key not in question_words for key in run)]


def _cjk_runs(texts: _Texts) -> list[str]:
    """Greedy longest substrings of the response's CJK text found in the reasoning but not the question."""
    runs: list[str] = []
    for m in _CJK_RUN_RE.finditer(texts.response[:1500]):
        run, i = m.group(), 0
        while i < len(run) - 1:
            j = i + 1
            while j < len(run) and run[i : j + 1] in texts.reasoning:
                j += 1
            piece = run[i:j]
            if len(piece) >= 2 and piece not in texts.question:
                runs.append(piece)
            i = max(j, i + 1)
    return runs


def _content_chars(piece: str) -> int:
    return len(piece) - len(_HIRAGANA_RE.findall(piece))


def _locate_words(texts: _Texts, run: Sequence[str]) -> tuple[int, int]:
    units = [u for u in _units(texts.reasoning) if not _CJK_RUN_RE.fullmatch(u.key)]
    keys = [u.key for u in units]
    for i in range(len(keys) - 1):
        if keys[i : i + 2] == list(run[:2]):
            j = i + 2
            while j < len(keys) and j - i < len(run) and keys[j] == run[j - i]:
                j += 1
            return units[i].start, units[j - 1].end
    return 0, 0


def _shared_phrase_evidence(texts: _Texts, config: CheckConfig) -> _Evidence | None:
    runs = _word_runs(texts)
    long_runs = [
        r
        for r in runs
        if len(r) >= config.leakage_min_phrase_words
        or (len(r) >= 2 and all(k in texts.response_names for k in r))
    ]
    if long_runs or sum(len(r) for r in runs) >= config.leakage_min_total_phrase_words:
        best = max(runs, key=len)
        start, end = _locate_words(texts, best)
        shown = "; ".join(" ".join(r) for r in runs[:4])
        return _Evidence(
            f"reasoning shares the response's phrases absent from the question: {shown}", start, end
        )
    pieces = [p for p in _cjk_runs(texts) if _content_chars(p) >= 2]
    long_pieces = [p for p in pieces if _content_chars(p) >= config.leakage_min_cjk_chars]
    total = sum(_content_chars(p) for p in pieces if _content_chars(p) >= 3)
    if long_pieces or total >= config.leakage_min_total_cjk_chars:
        best = max(pieces, key=_content_chars)
        start = texts.reasoning.find(best)
        shown = "、".join(pieces[:4])
        reason = f"reasoning shares the response's phrases absent from the question: {shown}"
        return _Evidence(reason, start, start + len(best))
    return None


def _reference_evidence(texts: _Texts, reference: str, config: CheckConfig) -> _Evidence | None:
    ref = _norm(reference).strip().strip(" .!?。\"'“”「」『』")
    if not ref:
        return None
    ref_numbers = _numbers(ref)
    leftover = _NUMBER_RE.sub("", ref)
    if ref_numbers and len(_squash(leftover)) <= 4:
        in_question = {v for v, _, _ in _numbers(texts.question)}
        numbers = {v: {_unit_after(ref, e)} for v, _, e in ref_numbers if v not in in_question}
        return _number_evidence(texts, numbers, "the reference answer's", config)
    need_cue = _in_question(texts, ref) or len(_squash(ref)) <= 3
    found = _phrase_evidence(texts, ref, "the reference answer", need_cue=need_cue)
    if found or need_cue:
        return found
    target = [u.key for u in _units(ref)]
    if len(target) < 4:
        return None
    budget = _LcsBudget()
    for s, e in texts.reasoning_sentences:
        units = [u.key for u in _units(texts.reasoning, s, e)]
        if len(units) < 0.8 * len(target):
            continue
        if not budget.spend(len(target), len(units)):
            return None
        if len(_lcs(target, units)) >= 0.8 * len(target):
            return _Evidence("a reasoning sentence contains most of the reference answer", s, e)
    return None


def _leakage_evidence(texts: _Texts, reference: str | None, config: CheckConfig) -> _Evidence | None:
    if reference and reference.strip():
        found = _reference_evidence(texts, reference, config)
        if found:
            return found
    has_response = bool(texts.response.strip())
    checks = [
        lambda: (
            _number_evidence(
                texts, _response_numbers(texts.response, texts.question), "the response's", config
            )
            if has_response
            else None
        ),
        lambda: _quote_evidence(texts, config) if has_response else None,
        lambda: _explicit_evidence(texts),
        lambda: _answer_phrase_evidence(texts, config) if has_response else None,
        lambda: _sentence_overlap_evidence(texts, config) if has_response else None,
        lambda: _shared_phrase_evidence(texts, config) if has_response else None,
    ]
    for check in checks:
        found = check()
        if found:
            return found
    return None


def _name_keys(raw: str | None) -> frozenset[str]:
    """Stemmed words of capitalized sequences of two or more words ("Jane Austen", "Fushimi Inari Shrine")."""
    raw = raw or ""
    keys: set[str] = set()
    run: list[re.Match[str]] = []
    for m in [*re.finditer(_WORD, raw), None]:
        adjacent = m is not None and run and raw[run[-1].end() : m.start()] == " "
        if m is not None and m.group()[0].isupper() and (adjacent or not run):
            run.append(m)
            continue
        if len(run) >= 2:
            keys.update(_stem(_norm(w.group())) for w in run)
        run = [m] if m is not None and m.group()[0].isupper() else []
    return frozenset(keys)


def _check_leakage(
    reasoning: str, response: str | None, question: str, reference: str | None, config: CheckConfig
) -> Flag | None:
    norm = _normalize(reasoning)
    texts = _Texts(
        norm.text, _norm(response), _norm(question), tuple(_sentences(norm.text)), _name_keys(response)
    )
    found = _leakage_evidence(texts, reference, config)
    if found is None:
        return None
    start, end = norm.original(found.start, found.end)
    if end <= start:
        return Flag("leakage", found.reason)
    return Flag("leakage", found.reason, reasoning[start:end], start, end)


# --------------------------------------------------------------------------------------------- public API


def check_one(
    reasoning: str | None,
    response: str | None,
    *,
    question: str = "",
    reference: str | None = None,
    finish_reason: str | None = None,
    expected_section: bool = True,
    config: CheckConfig = CheckConfig(),
) -> list[Flag]:
    """Flags of one result, at most one per name, never `length` (see `length_outliers`).

    `expected_section`: the output format asks for a reasoning section (and a response section when
    `response` is not None); an empty one means the model stopped early or ignored the format.
    Pass `response=None` when the task produces no response section.
    """
    reasoning = reasoning or ""
    flags: list[Flag | None] = []
    if not reasoning.strip():
        flags.append(Flag("empty", "the reasoning is empty"))
    flags.append(_check_truncated(reasoning, response, finish_reason, expected_section))
    if reasoning.strip():
        flags.append(_check_language(reasoning, config))
        flags.append(_check_repetition(reasoning, config))
        flags.append(_check_leakage(reasoning, response, question or "", reference, config))
    return [f for f in flags if f is not None]


def length_outliers(lengths: Sequence[int], config: CheckConfig = CheckConfig()) -> list[int]:
    """Indexes of lengths whose robust z-score exceeds `config.length_z`; none below `length_min_items`.

    z = 0.6745 * (x - median) / MAD; when more than half the lengths are equal (MAD = 0) the mean
    absolute deviation (scaled by 1.2533) stands in for it.
    """
    if len(lengths) < max(config.length_min_items, 2):
        return []
    median = statistics.median(lengths)
    deviations = [abs(x - median) for x in lengths]
    scale = statistics.median(deviations) / 0.6745
    if scale == 0:
        scale = 1.2533 * statistics.fmean(deviations)
    if scale == 0:
        return []
    return [i for i, d in enumerate(deviations) if d / scale > config.length_z]


def _flag_name(flag: Flag | Mapping[str, Any]) -> str:
    return flag.name if isinstance(flag, Flag) else str(flag["name"])


def summarize(flags_per_result: Iterable[tuple[str, Sequence[Flag | Mapping[str, Any]]]]) -> dict[str, dict]:
    """Per model: n results, `counts`/`rates` of results carrying each flag name, and `flagged`/`flagged_rate`
    for results with any flag. Every name in FLAG_NAMES is present (0 when unseen)."""
    models: dict[str, dict[str, Any]] = {}
    for model, flags in flags_per_result:
        entry = models.setdefault(model, {"n": 0, "flagged": 0, "counts": dict.fromkeys(FLAG_NAMES, 0)})
        entry["n"] += 1
        names = {_flag_name(f) for f in flags}
        entry["flagged"] += bool(names)
        for name in names:
            entry["counts"][name] = entry["counts"].get(name, 0) + 1
    for entry in models.values():
        n = entry["n"]
        entry["rates"] = {name: count / n for name, count in entry["counts"].items()}
        entry["flagged_rate"] = entry["flagged"] / n
    return models
