"""Numbers in any surface form: digits ("1,234.5"), English words ("twelve and a half", "fifty-six"),
Japanese kanji numerals ("三十六", "十二と二分の一"), and cents read as dollars too ("10 cents" = 0.10)."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from reasonry.quality.normalisation import _NUMBER_RE

_EN_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
_EN_TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)}
_EN_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_EN_WORD = "(?:" + "|".join(sorted([*_EN_UNITS, *_EN_TENS, *_EN_SCALES], key=len, reverse=True)) + ")"
_EN_FRACTION = {"a half": Decimal("0.5"), "one half": Decimal("0.5"), "a quarter": Decimal("0.25"),
                "three quarters": Decimal("0.75")}
_EN_SPELLED_RE = re.compile(
    rf"(?<![\w-]){_EN_WORD}(?:(?:-|\s+|\s+and\s+){_EN_WORD})*"
    rf"(?P<frac>\s+and\s+(?:{'|'.join(_EN_FRACTION)}))?(?![\w-])"
)
_KANJI_DIGITS = {"〇": 0, "零": 0, "一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_KANJI_SCALES = {"十": 10, "百": 100, "千": 1000}
_KANJI = "[〇零一二三四五六七八九十百千万]"
_KANJI_RE = re.compile(rf"(?P<n>{_KANJI}+)(?:と(?P<den>{_KANJI}+|\d+)分の(?P<num>{_KANJI}+|\d+))?")
# a lone 一 is mostly part of a word (一番, 一緒, 一般): only with a counter does it count
_COUNTER = "つ個本匹人枚冊回日月年円分点歳台杯週時"


def _en_value(words: str) -> int:
    total = current = 0
    for word in re.split(r"[\s-]+", words):
        if word in _EN_UNITS or word in _EN_TENS:
            current += _EN_UNITS.get(word, 0) + _EN_TENS.get(word, 0)
        elif word == "hundred":
            current = max(current, 1) * 100
        elif word in _EN_SCALES:
            total += max(current, 1) * _EN_SCALES[word]
            current = 0
    return total + current


def _kanji_value(text: str) -> int | None:
    if text.isdigit():
        return int(text)
    total = section = digit = 0
    for ch in text:
        if ch in _KANJI_DIGITS:
            digit = digit * 10 + _KANJI_DIGITS[ch] if digit and ch in "〇零" else _KANJI_DIGITS[ch]
        elif ch in _KANJI_SCALES:
            section += max(digit, 1) * _KANJI_SCALES[ch]
            digit = 0
        elif ch == "万":
            total += (section + digit or 1) * 10_000
            section = digit = 0
    return total + section + digit


def numbers(text: str) -> list[tuple[Decimal, int, int]]:
    """(value, start, end) of every number in normalized `text`, in order of position."""
    out: list[tuple[Decimal, int, int]] = []
    for m in _NUMBER_RE.finditer(text):
        try:
            value = Decimal(m.group().replace(",", ""))
        except InvalidOperation:
            continue
        out.append((value, m.start(), m.end()))
        if re.match(r"\s*(?:cents?\b|¢)", text[m.end():m.end() + 8]):
            out.append((value / 100, m.start(), m.end()))
    for m in _EN_SPELLED_RE.finditer(text):
        words = m.group()[: m.start("frac") - m.start()] if m.group("frac") else m.group()
        value = Decimal(_en_value(words))
        if m.group("frac"):
            value += _EN_FRACTION[re.sub(r"^\s+and\s+", "", m.group("frac"))]
        out.append((value, m.start(), m.end()))
    for m in _KANJI_RE.finditer(text):
        if m.group("n") == "一" and not m.group("den") and text[m.end():m.end() + 1] not in _COUNTER:
            continue
        value = Decimal(_kanji_value(m.group("n")) or 0)
        if m.group("den"):
            den, num = _kanji_value(m.group("den")), _kanji_value(m.group("num"))
            if den:
                value += Decimal(num or 0) / Decimal(den)
        out.append((value, m.start(), m.end()))
    return sorted(out, key=lambda item: item[1])
