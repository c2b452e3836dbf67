"""The `repetition` flag: a block repeated back to back, an n-gram too frequent in a window, a repeated line."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from reasonry.quality.flags import CheckConfig, Flag
from reasonry.quality.normalisation import _STOPWORDS, _WORD, _is_cjk_text


@dataclass(frozen=True)
class _Token:
    key: str
    start: int
    end: int


_LONG_TOKEN = 30


def _repetition_tokens(text: str) -> tuple[list[_Token], bool]:
    if _is_cjk_text(text):
        return [_Token(ch, i, i + 1) for i, ch in enumerate(text) if ch.isalnum()], True
    tokens: list[_Token] = []
    for m in re.finditer(_WORD, text):
        if len(m.group()) < _LONG_TOKEN:
            tokens.append(_Token(m.group().lower(), m.start(), m.end()))
        else:  # a run like "123456789123456789..." loops inside one word: look at its characters
            tokens.extend(_Token(ch, m.start() + i, m.start() + i + 1) for i, ch in enumerate(m.group().lower()))
    return tokens, False


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
