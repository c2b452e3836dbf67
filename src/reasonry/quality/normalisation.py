"""Text basics shared by the checks: NFKC normalisation with offsets back to the raw text, sentences,
content units (stemmed words, CJK bigrams), a bounded LCS, phrase search."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

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


_LCS_MAX_CELLS = (
    1_000_000  # a bigger table (20,000 x 5,000 units of degenerate output) would take many seconds
)


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
