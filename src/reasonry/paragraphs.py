"""Split a model's free-form answer into the list items it was asked for.

BONSAI prompts ask for N paragraphs that each begin with ``PARAGRAPH:`` (or for N rebuttals), but
models answer with numbered lists, bullets, bold or Japanese labels, headings, prefaces,
conclusions, code fences and ``<think>`` blocks. :func:`parse_items` recognises those shapes and
never raises on any text.

Recognition order, first match wins:

1. ``paragraph``: explicit labels (``PARAGRAPH:``, ``**Paragraph 2:**``, ``段落１：``,
   ``Rebuttal 1:``, ``Question 3:``, ``【質問1】``...). Reported as ``heading`` when every label is
   a markdown heading (``### Question 1``). Skipped when a numbered or bullet list runs both
   before and after the first label (the labels are then parts of list items), or when a lone
   label is followed by a list of two or more items (an echoed question or a header), unless
   ``n == 1``.
2. ``numbered`` / ``bullet``: at least two top-level markers; the list that is less indented
   (then: starts first) wins, deeper markers are sub-items joined into their parent.
3. ``heading``: at least two markdown headings of one level (or, without any, two bold-only lines).
   A heading that is only a label ("Question 1") is dropped; any other heading text starts the item.
4. ``blank-lines``: at least two blank-line separated pieces once prefaces and closings are removed.
5. ``none``: a single unstructured blob becomes a single item (not an error).

Before that, ``<think>…</think>`` blocks, anything before a stray ``</think>`` and everything after
an unclosed ``<think>`` are removed, code fences are unwrapped, and a reasoning section that ends
in a single header line ("Rebuttals:", "Final answer:") is dropped with that header.

Text before the first item is dropped as a preface. A closing piece ("In conclusion, ...",
"まとめると...", "以上", "Let me know ...") is dropped, as is a trailing unindented paragraph that
only the last item has. Neither rule ever drops the only remaining content.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

STYLES = ("paragraph", "numbered", "bullet", "heading", "blank-lines", "none")

EMPTY_ERROR = "model output is empty"
NO_ITEMS_ERROR = "no list items found in model output"
NO_QUESTION_ERROR = "no list item contains a question mark"


@dataclass
class ParsedList:
    """Items found in one model output.

    ``dropped`` holds what was removed: prefaces, closings and empty pieces as written, and items
    cut by ``require_question`` or ``n`` as cleaned text. ``error`` is set exactly when ``items``
    is empty.
    """

    items: list[str]
    dropped: list[str] = field(default_factory=list)
    style: str = "none"
    error: str | None = None


_FAMILIES = ("paragraph", "rebuttal", "question")
_FAMILY_WORDS = {
    "paragraph": r"paragraph|para|fact[- ]?based\s++question|fbq|段落|パラグラフ",
    "rebuttal": r"rebuttal|counter[- ]?argument|counter[- ]?point|反論|反駁",
    "question": r"question|質問|問い|問題|q(?=\s*+\#?\s*+\d)|問(?=\s*+\d)",
}
_LABEL_RE = re.compile(
    r"^\s*+(?P<heading>\#{1,6}\s*+)?"
    r"(?:(?:[-*+•・]|\d{1,3}[.)．）])\s*+)?"
    r"(?:\*\*|__)?\s*+(?P<bracket>[【\[]\s*+)?"
    r"(?:第\s*+\d{1,3}\s*+の?\s*+)?"
    + "(?:"
    + "|".join(f"(?P<{name}>{words})" for name, words in _FAMILY_WORDS.items())
    + ")"
    + r"\s*+\#?\s*+(?P<num>\d{1,3})?"
    r"\s*+(?:[(（][^)）]{0,60}[)）])?"
    r"\s*+(?:\*\*|__)?\s*+(?P<close>[】\]])?"
    r"\s*+(?P<sep>[:：]|[.)](?!\d)|[．）]|[-–—](?=\s))?"
    r"\s*+(?:\*\*|__)?\s*+(?P<rest>.*)$",
    re.IGNORECASE,
)
_STOP_RE = re.compile(
    r"^\s*+(?:\#{1,6}\s*+)?(?:\*\*|__)?\s*+(?:original\s++)?(?:argument|claim|answer|主張|元の主張|回答)"
    r"\s*+\#?\s*+\d{0,3}\s*+(?:\*\*|__)?\s*+[:：]",
    re.IGNORECASE,
)
_LIST_HEADER_RE = re.compile(
    r"^\s*+(?:\#{1,6}\s*+)?(?:\*\*|__)?\s*+(?:(?:here\s++are|my|the|final|your)\s++)*"
    r"(?:\d{1,3}\s++)?(?:fact[- ]?based\s++)?"
    r"(?:rebuttals|counter[- ]?arguments|counter[- ]?points|paragraphs|questions|answer|output|response"
    r"|最終回答|回答|出力|反論一覧|質問一覧|段落一覧)"
    r"\s*+(?:\*\*|__)?\s*+[:：]?\s*+(?:\*\*|__)?\s*+$",
    re.IGNORECASE,
)
_NUMBER_RE = re.compile(
    r"^(?P<indent>\s*+)(?:\*\*|__)?\s*+"
    r"(?:\(\d{1,3}\)|（\d{1,3}）|\[\d{1,3}\]|\d{1,3}(?:[.)](?!\d)|[．）、])|[\u2460-\u249b\u2776-\u2793])"
    r"\s*+(?:\*\*|__)?\s*+(?P<rest>.*)$"
)
_BULLET_RE = re.compile(r"^(?P<indent>\s*+)(?P<mark>[-*+](?=\s)|[•・●○◦▪■□‣⁃►▶➢✓✔])\s*+(?P<rest>.*)$")
_LEADING_MARKER_RE = re.compile(
    r"^(?:\#{1,6}(?=\s)|[-*+](?=\s)|[•・●○◦▪■□‣⁃►▶➢✓✔]|\(\d{1,3}\)|（\d{1,3}）|\[\d{1,3}\]"
    r"|\d{1,3}(?:[.)](?!\d)|[．）、])|[\u2460-\u249b\u2776-\u2793])\s*+"
)
_HEADING_RE = re.compile(r"^\s{0,3}(?P<hashes>\#{1,6})(?:\s++(?P<rest>.*))?$")
_BOLD_LINE_RE = re.compile(r"^\s*+(\*\*|__)(?P<rest>[^*_]+?)\1\s*+[:：]?\s*+$")
_PREFACE_RE = re.compile(
    r"^(?:(?:sure|certainly|of\s+course|okay|ok|absolutely|here\s+(?:are|is)|here's|below\s+(?:are|is)"
    r"|the\s+following)\b|以下|承知|かしこまりました|はい[、。])",
    re.IGNORECASE,
)
_CLOSING_RE = re.compile(
    r"^(?:(?:in\s+conclusion|in\s+summary|to\s+summari[sz]e|to\s+sum\s+up|in\s+short|conclusion|summary"
    r"|final\s+thoughts|let\s+me\s+know|i\s+hope|hope\s+this|feel\s+free|each\s+of\s+these"
    r"|these\s+(?:\w+\s+)?(?:questions|rebuttals|paragraphs))\b|overall\s*+[,，]"
    r"|まとめると|まとめ(?:[:：\s]|$)|結論として|結論(?:[:：\s]|$)|全体として|要するに|以上"
    r"|これらの(?:質問|問い|反論|段落))",
    re.IGNORECASE,
)
_THINK_BLOCK_RE = re.compile(r"<(think|thinking|reasoning)>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_THINK_OPEN_RE = re.compile(r"<(?:think|thinking|reasoning)>", re.IGNORECASE)
_THINK_CLOSE_RE = re.compile(r"</(?:think|thinking|reasoning)\s*>", re.IGNORECASE)
_FENCE_RE = re.compile(r"^\s*+(?:`{3,}|~{3,})[^`]*$")
_RULE_RE = re.compile(r"^\s*+(?:[-*_=]\s*+){3,}$")
_QUOTE_RE = re.compile(r"^\s*+(?:>\s?)+")
_INLINE_LABEL_RE = re.compile(
    r"(?<=[.?!。？！\"”)\]])[^\S\n]++(?=(?:\*\*)?(?:PARAGRAPH|REBUTTAL)(?:\s*+\d{1,3})?\s*+(?:\*\*)?\s*+[:：])"
)
_SENTENCE_END_RE = re.compile(r"[.!?。！？」』)\"”]$")
_ALNUM_RE = re.compile(r"[^\W_]")
_BOLD_UNDERSCORE_RE = re.compile(r"(?<!\w)__(?=\S)(.+?)(?<=\S)__(?!\w)")


class _Label(NamedTuple):
    family: str
    rest: str
    heading: bool


@dataclass
class _Block:
    """One item in the making: ``lines[0]`` is the text after its marker, the rest raw lines."""

    head: str
    indent: int
    lines: list[str]

    @property
    def raw(self) -> str:
        return "\n".join([self.head, *self.lines[1:]]).strip()


_Split = tuple[str, list[str], list[_Block]]  # style, unkept pieces, items in the making
_Starts = tuple[int, dict[int, str]]  # indent of a list, line index -> text after each item's marker


def parse_items(text: str, n: int | None = None, *, require_question: bool = False) -> ParsedList:
    """Split ``text`` into list items; keep at most ``n`` of them.

    With ``require_question`` an item without "?" or "？" is dropped. Never raises on any string;
    an output without usable items gives ``items == []`` and an ``error``.
    """
    if n is not None and n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    dropped: list[str] = []
    lines = _cut_before_list_header(_prepare(text), dropped)
    if not any(line.strip() for line in lines):
        return ParsedList([], dropped, "none", NO_ITEMS_ERROR if text.strip() else EMPTY_ERROR)
    style, blocks = _split(lines, n, dropped)
    dropped.extend(_trim_epilogue(blocks))
    items = _finish(blocks, dropped)
    if not items:
        return ParsedList([], dropped, style, NO_ITEMS_ERROR)
    if require_question:
        dropped.extend(item for item in items if not _has_question(item))
        items = [item for item in items if _has_question(item)]
        if not items:
            return ParsedList([], dropped, style, NO_QUESTION_ERROR)
    if n is not None:
        dropped.extend(items[n:])
        items = items[:n]
    return ParsedList(items, dropped, style, None)


def _has_question(item: str) -> bool:
    return "?" in item or "？" in item


# --- normalisation ---------------------------------------------------------------------------


def _prepare(text: str) -> list[str]:
    text = _INLINE_LABEL_RE.sub(_break_before_label, _strip_think(text.replace("\ufeff", "")))
    lines = []
    for line in text.splitlines():
        if _FENCE_RE.match(line):
            continue
        line = _QUOTE_RE.sub("", line).expandtabs(4).rstrip()
        lines.append("" if _RULE_RE.match(line) else line)
    return lines


def _break_before_label(match: re.Match[str]) -> str:
    """Put a mid-line "PARAGRAPH:" on its own line unless only a list marker precedes it."""
    line_start = match.string.rfind("\n", 0, match.start()) + 1
    before = match.string[line_start : match.start()]
    return "\n" if _ALNUM_RE.search(_strip_markers(_unbold(before))) else match.group()


def _strip_think(text: str) -> str:
    text = _THINK_BLOCK_RE.sub("\n", text)
    closes = list(_THINK_CLOSE_RE.finditer(text))
    if closes:
        text = text[closes[-1].end() :]
    # An unclosed <think> means the model ran out of tokens while reasoning: nothing after it is an answer.
    opened = _THINK_OPEN_RE.search(text)
    return text[: opened.start()] if opened else text


def _cut_before_list_header(lines: list[str], dropped: list[str]) -> list[str]:
    """Drop a reasoning section that ends in a single header such as "Rebuttals:" or "Final answer:"."""
    headers = [i for i, line in enumerate(lines) if _LIST_HEADER_RE.match(line)]
    if len(headers) != 1:
        return lines
    cut = headers[0]
    if not any(line.strip() for line in lines[:cut]) or not any(line.strip() for line in lines[cut + 1 :]):
        return lines
    dropped.append("\n".join(lines[: cut + 1]).strip())
    return lines[cut + 1 :]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _unbold(text: str) -> str:
    return _BOLD_UNDERSCORE_RE.sub(r"\1", text.replace("**", ""))


def _strip_markers(text: str) -> str:
    text = text.strip()
    while match := _LEADING_MARKER_RE.match(text):
        text = text[match.end() :].strip()
    return text


# --- splitting -------------------------------------------------------------------------------


def _split(lines: list[str], n: int | None, dropped: list[str]) -> tuple[str, list[_Block]]:
    numbered = _list_starts(lines, _NUMBER_RE)
    bullets = _list_starts(lines, _BULLET_RE, same_mark=True)
    found = _split_labels(lines, (numbered[1], bullets[1]), n) or _split_lists(lines, numbered, bullets)
    found = found or _split_headings(lines) or _split_blank(lines)
    style, preface, blocks = found
    dropped.extend(preface)
    return style, blocks


def _collect(
    lines: list[str], starts: dict[int, str], stops: frozenset[int] = frozenset()
) -> tuple[list[str], list[_Block]]:
    """Cut ``lines`` at ``starts`` (index -> text after the marker); ``stops`` end an item unkept."""
    unkept: list[list[str]] = [[]]
    blocks: list[_Block] = []
    current = unkept[0]
    for i, line in enumerate(lines):
        if i in starts:
            blocks.append(_Block(line.strip(), _indent(line), [starts[i]]))
            current = blocks[-1].lines
        elif i in stops:
            unkept.append([line])
            current = unkept[-1]
        else:
            current.append(line)
    pieces = ["\n".join(piece).strip() for piece in unkept]
    return [piece for piece in pieces if piece], blocks


def _label_match(line: str) -> _Label | None:
    match = _LABEL_RE.match(line)
    if not match:
        return None
    sep, rest = match["sep"], match["rest"]
    separated = sep in (":", "：") or bool(sep and match["num"]) or bool(match["bracket"] and match["close"])
    if not separated and rest.strip(" \t#*_"):
        return None
    family = next(name for name in _FAMILIES if match[name] is not None)
    return _Label(family, rest, match["heading"] is not None)


def _labels_inside_list(
    starts: dict[int, str], labels: dict[int, _Label], list_lines: dict[int, str], n: int | None
) -> bool:
    """A list running across the first label, or following a lone label (an echoed question or a header)."""
    first = min(starts)
    others = [i for i in list_lines if i not in labels]
    after = sum(i > first for i in others)
    if after and any(i < first for i in others):
        return True
    return len(starts) == 1 and n != 1 and after >= 2


def _split_labels(lines: list[str], list_starts: tuple[dict[int, str], ...], n: int | None) -> _Split | None:
    labels = {i: label for i, line in enumerate(lines) if (label := _label_match(line))}
    if not labels:
        return None
    counts = Counter(label.family for label in labels.values())
    family = max(_FAMILIES, key=lambda name: (counts[name], -_FAMILIES.index(name)))
    starts = {i: label.rest for i, label in labels.items() if label.family == family}
    if any(_labels_inside_list(starts, labels, list_lines, n) for list_lines in list_starts):
        return None
    stops = frozenset(i for i, line in enumerate(lines) if i not in starts and _STOP_RE.match(line))
    preface, blocks = _collect(lines, starts, stops)
    style = "heading" if all(labels[i].heading for i in starts) else "paragraph"
    return style, preface, blocks


def _list_starts(lines: list[str], pattern: re.Pattern[str], *, same_mark: bool = False) -> _Starts:
    """Top-level list markers: the least indented (give or take one space), of the first bullet kind."""
    matches = {i: match for i, line in enumerate(lines) if (match := pattern.match(line))}
    if not matches:
        return 0, {}
    base = min(len(match["indent"]) for match in matches.values())
    top = {i: match for i, match in matches.items() if len(match["indent"]) <= base + 1}
    if same_mark:
        mark = top[min(top)]["mark"]
        top = {i: match for i, match in top.items() if match["mark"] == mark}
    return base, {i: match["rest"] for i, match in top.items()}


def _split_lists(lines: list[str], numbered: _Starts, bullets: _Starts) -> _Split | None:
    candidates = [
        (indent, min(starts), style, starts)
        for style, (indent, starts) in (("numbered", numbered), ("bullet", bullets))
        if len(starts) >= 2
    ]
    if not candidates:
        return None
    *_, style, starts = min(candidates, key=lambda candidate: candidate[:2])
    preface, blocks = _collect(lines, starts)
    return style, preface, blocks


def _heading_title(text: str) -> str:
    text = text.strip().rstrip("#").strip()
    if match := _NUMBER_RE.match(text):
        text = match["rest"]
    label = _label_match(text)
    if label is not None:
        text = label.rest
    return "" if text.strip(" \t#*_").isdigit() else text


def _split_headings(lines: list[str]) -> _Split | None:
    headings = {i: match for i, line in enumerate(lines) if (match := _HEADING_RE.match(line))}
    levels = Counter(len(match["hashes"]) for match in headings.values())
    level = min((lv for lv, count in levels.items() if count >= 2), default=None)
    if level is not None:
        first = min(i for i, match in headings.items() if len(match["hashes"]) == level)
        starts = {
            i: _heading_title(match["rest"] or "")
            for i, match in headings.items()
            if i >= first and len(match["hashes"]) <= level
        }
    else:
        bold = {i: match["rest"] for i, line in enumerate(lines) if (match := _BOLD_LINE_RE.match(line))}
        if len(bold) < 2:
            return None
        starts = {i: _heading_title(title) for i, title in bold.items()}
    preface, blocks = _collect(lines, starts)
    return "heading", preface, blocks


def _pieces(lines: list[str]) -> list[list[str]]:
    pieces: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            pieces[-1].append(line)
        elif pieces[-1]:
            pieces.append([])
    return [piece for piece in pieces if piece]


def _is_preface(line: str) -> bool:
    text = _unbold(line.strip())
    if _HEADING_RE.match(text) or text.endswith((":", "：")):
        return True
    return bool(_PREFACE_RE.match(text)) and not _has_question(text)


def _drop_preface(pieces: list[list[str]]) -> list[str]:
    dropped = []
    while pieces and _is_preface(pieces[0][0]) and (len(pieces) > 1 or len(pieces[0]) > 1):
        dropped.append(pieces[0].pop(0).strip())
        if not pieces[0]:
            pieces.pop(0)
    return dropped


def _is_closing(piece: list[str]) -> bool:
    return bool(_CLOSING_RE.match(_strip_markers(_unbold(piece[0]))))


def _split_blank(lines: list[str]) -> _Split:
    pieces = _pieces(lines)
    dropped = _drop_preface(pieces)
    while len(pieces) > 1 and _is_closing(pieces[-1]):
        dropped.append("\n".join(pieces.pop()).strip())
    blocks = [_Block(piece[0].strip(), min(map(_indent, piece)), piece) for piece in pieces]
    return ("blank-lines" if len(blocks) >= 2 else "none"), dropped, blocks


# --- finishing -------------------------------------------------------------------------------


def _paragraph_starts(block: _Block) -> list[int]:
    """Indices in ``block.lines`` where a blank-line separated paragraph begins."""
    starts, blank = [], True
    for i, line in enumerate(block.lines):
        if line.strip() and blank:
            starts.append(i)
        blank = not line.strip()
    return starts


def _closing_cut(block: _Block) -> int | None:
    lines = block.lines
    for i in range(1, len(lines)):
        text = lines[i].strip()
        if not text or _indent(lines[i]) > block.indent:
            continue
        previous = lines[i - 1].strip()
        if (not previous or _SENTENCE_END_RE.search(previous)) and _CLOSING_RE.match(_unbold(text)):
            return i
    return None


def _excess_cut(blocks: list[_Block]) -> int | None:
    """Where the last item grows paragraphs that no other item has (an unindented epilogue)."""
    last = blocks[-1]
    usual = max(len(_paragraph_starts(block)) for block in blocks[:-1])
    starts = _paragraph_starts(last)
    if len(starts) <= usual or usual == 0:
        return None
    if any(_indent(last.lines[i]) > last.indent for i in starts[usual:]):
        return None
    return starts[usual]


def _trim_epilogue(blocks: list[_Block]) -> list[str]:
    if not blocks:
        return []
    last = blocks[-1]
    cut = _closing_cut(last)
    if cut is None and len(blocks) >= 2:
        cut = _excess_cut(blocks)
    if cut is None:
        return []
    tail = "\n".join(last.lines[cut:]).strip()
    if _has_question(tail) and not _has_question(" ".join(last.lines[:cut])):
        return []
    del last.lines[cut:]
    return [tail]


def _clean(lines: list[str]) -> str:
    parts = [_strip_markers(line) for line in lines]
    return _strip_markers(_unbold(" ".join(part for part in parts if part)))


def _finish(blocks: list[_Block], dropped: list[str]) -> list[str]:
    cleaned = []
    for block in blocks:
        text = _clean(block.lines)
        if _ALNUM_RE.search(text):
            cleaned.append(text)
        elif block.raw:
            dropped.append(block.raw)
    closing = [bool(_CLOSING_RE.match(text)) for text in cleaned]
    if all(closing):
        return cleaned
    dropped.extend(text for text, is_closing in zip(cleaned, closing, strict=True) if is_closing)
    return [text for text, is_closing in zip(cleaned, closing, strict=True) if not is_closing]
