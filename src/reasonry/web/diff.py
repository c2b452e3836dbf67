"""Word-level diff of two texts (CJK per character), as (op, text) segments for textContent rendering."""

from __future__ import annotations

import difflib
import re

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef"
MAX_DIFF_CELLS = 4_000_000  # past tokens(old) x tokens(new) this, the changed middle is shown as replaced whole
TOKEN = re.compile(rf"\s+|[{_CJK}]|[^\s{_CJK}\W]+|[^\s]", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Whitespace runs, single CJK characters, words, and single punctuation marks; joined they give `text`."""
    return TOKEN.findall(text)


def word_diff(old: str | None, new: str | None) -> list[tuple[str, str]]:
    """Segments ("equal" | "delete" | "insert", text) turning `old` into `new`."""
    a, b = tokenize(old or ""), tokenize(new or "")
    segments: list[tuple[str, str]] = []
    # the common start and end need no matching; what is left is matched only while that stays cheap
    head = 0
    while head < min(len(a), len(b)) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < min(len(a), len(b)) - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    _add(segments, "equal", "".join(a[:head]))
    middle_a, middle_b = a[head: len(a) - tail], b[head: len(b) - tail]
    if len(middle_a) * len(middle_b) > MAX_DIFF_CELLS:
        _add(segments, "delete", "".join(middle_a))
        _add(segments, "insert", "".join(middle_b))
    else:
        matcher = difflib.SequenceMatcher(None, middle_a, middle_b, autojunk=False)
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op == "equal":
                _add(segments, "equal", "".join(middle_a[i1:i2]))
                continue
            _add(segments, "delete", "".join(middle_a[i1:i2]))
            _add(segments, "insert", "".join(middle_b[j1:j2]))
    _add(segments, "equal", "".join(a[len(a) - tail:]))
    return segments


def _add(segments: list[tuple[str, str]], op: str, text: str) -> None:
    if not text:
        return
    if segments and segments[-1][0] == op:
        segments[-1] = (op, segments[-1][1] + text)
    else:
        segments.append((op, text))


def diff_stats(segments: list[tuple[str, str]]) -> dict[str, int]:
    counts = {"equal": 0, "delete": 0, "insert": 0}
    for op, text in segments:
        counts[op] += len(tokenize(text.strip())) if text.strip() else 0
    return counts
