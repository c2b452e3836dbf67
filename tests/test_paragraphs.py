"""Tests for reasonry.paragraphs.parse_items.

The corpus lives in tests/data/paragraphs/: each NN_name.txt is a hand-written model output and
its NN_name.json holds the expected result: ``style``, ``items``, ``dropped``, optionally ``n``,
``require_question``, ``error`` and a ``note`` on a decision the case documents (for example that
an unstructured blob becomes a single item with style "none", not an error).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reasonry.paragraphs import (
    EMPTY_ERROR,
    NO_ITEMS_ERROR,
    NO_QUESTION_ERROR,
    STYLES,
    ParsedList,
    parse_items,
)

CORPUS = Path(__file__).parent / "data" / "paragraphs"
CASES = sorted(CORPUS.glob("*.txt"))
LIST_MARKER_RE = re.compile(r"^(?:[-*+]\s|[•・]|\d{1,3}[.)](?:\s|$)|\(\d{1,3}\)|（\d{1,3}）|[①-⑳]|#{1,6}\s)")
JAPANESE_RE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")

SEED = "\n\n".join(
    f"PARAGRAPH: Fact {i} happened in 20{10 + i}. Another fact follows it. Why did fact {i} happen?"
    for i in range(1, 6)
)


def _expected(case: Path) -> dict[str, Any]:
    return json.loads(case.with_suffix(".json").read_text(encoding="utf-8"))


def _parse_case(case: Path) -> tuple[ParsedList, dict[str, Any]]:
    expected = _expected(case)
    text = case.read_text(encoding="utf-8")
    result = parse_items(text, expected.get("n"), require_question=expected.get("require_question", False))
    return result, expected


def test_corpus_is_large_and_bilingual() -> None:
    assert len(CASES) >= 24
    texts = [case.read_text(encoding="utf-8") for case in CASES]
    assert sum(bool(JAPANESE_RE.search(text)) for text in texts) >= 8
    assert sum(not JAPANESE_RE.search(text) for text in texts) >= 16
    assert all(case.with_suffix(".json").is_file() for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.stem for case in CASES])
def test_corpus_case(case: Path) -> None:
    result, expected = _parse_case(case)
    assert result.items == expected["items"]
    assert result.style == expected["style"]
    assert result.dropped == expected["dropped"]
    assert result.error == expected.get("error")


@pytest.mark.parametrize("case", CASES, ids=[case.stem for case in CASES])
def test_corpus_items_are_clean(case: Path) -> None:
    result, _ = _parse_case(case)
    assert result.style in STYLES
    for item in result.items:
        assert item == item.strip() and "\n" not in item and "**" not in item
        assert not LIST_MARKER_RE.match(item)
        assert not re.match(r"(?i)(paragraph|rebuttal|counter-argument|段落|質問|反論)\s*\d*\s*[:：]", item)


def test_seed_format_gives_five_questions() -> None:
    result = parse_items(SEED, 5, require_question=True)
    assert result.style == "paragraph"
    assert result.error is None and result.dropped == []
    assert result.items[0] == "Fact 1 happened in 2011. Another fact follows it. Why did fact 1 happen?"
    assert len(result.items) == 5


def test_n_keeps_the_first_items_and_drops_the_rest() -> None:
    result = parse_items(SEED, 2)
    assert [item[:6] for item in result.items] == ["Fact 1", "Fact 2"]
    assert [item[:6] for item in result.dropped] == ["Fact 3", "Fact 4", "Fact 5"]


def test_n_larger_than_found_is_not_an_error() -> None:
    result = parse_items("1. One?\n2. Two?", 5)
    assert result.items == ["One?", "Two?"]
    assert result.error is None


@pytest.mark.parametrize("n", [0, -1])
def test_n_below_one_is_rejected(n: int) -> None:
    with pytest.raises(ValueError, match="n must be at least 1"):
        parse_items(SEED, n)


def test_require_question_drops_statements_before_counting_n() -> None:
    text = "1. A statement.\n2. Why is the sky blue?\n3. Another statement.\n4. 空はなぜ青いのか？\n5. How?"
    result = parse_items(text, 2, require_question=True)
    assert result.items == ["Why is the sky blue?", "空はなぜ青いのか？"]
    assert result.dropped == ["A statement.", "Another statement.", "How?"]


def test_require_question_with_no_question_is_an_error() -> None:
    result = parse_items("- The sky is blue.\n- Grass is green.", require_question=True)
    assert result.items == []
    assert result.error == NO_QUESTION_ERROR
    assert result.dropped == ["The sky is blue.", "Grass is green."]


def test_require_question_finds_a_question_mark_anywhere() -> None:
    result = parse_items(
        "PARAGRAPH: Is this first? It is.\nPARAGRAPH: No question here.", require_question=True
    )
    assert result.items == ["Is this first? It is."]


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t\n", "\u3000"])
def test_empty_output(text: str) -> None:
    assert parse_items(text) == ParsedList([], [], "none", EMPTY_ERROR)


@pytest.mark.parametrize(
    "text", ["<think>only reasoning</think>", "```\n```", "PARAGRAPH:\nPARAGRAPH 2:", "- \n* \n1."]
)
def test_output_without_items(text: str) -> None:
    result = parse_items(text)
    assert result.items == []
    assert result.error == NO_ITEMS_ERROR


def test_think_block_before_labels_is_ignored() -> None:
    text = "<think>\nPARAGRAPH: draft, not an answer\n</think>\nPARAGRAPH: Real one?\nPARAGRAPH: Real two?"
    assert parse_items(text).items == ["Real one?", "Real two?"]


def test_conclusion_item_is_kept_when_it_is_all_there_is() -> None:
    result = parse_items("Overall, the argument fails because it ignores selection effects.")
    assert result.items == ["Overall, the argument fails because it ignores selection effects."]
    assert result.style == "none"


def test_conclusion_as_last_numbered_item_is_dropped() -> None:
    result = parse_items("1. Why A?\n2. Why B?\n3. In summary, A and B matter.")
    assert result.items == ["Why A?", "Why B?"]
    assert result.dropped == ["In summary, A and B matter."]


def test_closing_phrase_that_carries_the_question_is_kept() -> None:
    result = parse_items("PARAGRAPH: A rose. Why?\nPARAGRAPH: B fell.\nOverall, why did B fall?")
    assert result.items == ["A rose. Why?", "B fell. Overall, why did B fall?"]


def test_trailing_remark_only_the_last_item_has_is_dropped() -> None:
    text = "PARAGRAPH: One. Why one?\nPARAGRAPH: Two. Why two?\n\nI tried to focus on root causes."
    result = parse_items(text)
    assert result.items == ["One. Why one?", "Two. Why two?"]
    assert result.dropped == ["I tried to focus on root causes."]


def test_sub_bullets_join_their_parent() -> None:
    text = "- Top one.\n  - Sub a.\n    - Sub sub.\n  - Sub b?\n- Top two?"
    assert parse_items(text).items == ["Top one. Sub a. Sub sub. Sub b?", "Top two?"]


def test_bullets_under_numbers_are_sub_items() -> None:
    text = "1. First.\n- detail?\n2. Second.\n- detail two?"
    result = parse_items(text)
    assert result.style == "numbered"
    assert result.items == ["First. detail?", "Second. detail two?"]


def test_decimal_numbers_do_not_start_items() -> None:
    text = "1) Output rose by\n2.5 percent in 2024. Why?\n2) Prices fell. Why?"
    assert parse_items(text).items == ["Output rose by 2.5 percent in 2024. Why?", "Prices fell. Why?"]


def test_lone_label_before_a_list_is_a_header() -> None:
    result = parse_items(
        "Question: What causes inflation?\n1. Why did money supply grow?\n2. Why did energy rise?"
    )
    assert result.style == "numbered"
    assert result.items == ["Why did money supply grow?", "Why did energy rise?"]
    assert result.dropped == ["Question: What causes inflation?"]


def test_lone_label_before_a_list_is_one_item_when_one_is_asked() -> None:
    result = parse_items("Rebuttal:\n1. The sample is small.\n2. The effect is not causal.", 1)
    assert result.style == "paragraph"
    assert result.items == ["The sample is small. The effect is not causal."]


def test_labels_inside_numbered_items_stay_in_them() -> None:
    text = "1. Topic one.\nRebuttal: first.\n2. Topic two.\nRebuttal: second."
    result = parse_items(text)
    assert result.style == "numbered"
    assert result.items == ["Topic one. Rebuttal: first.", "Topic two. Rebuttal: second."]


def test_long_whitespace_runs_parse_quickly() -> None:
    hostile = "PARAGRAPH" + " " * 20_000 + "x\n" + "# " + " " * 20_000 + "y\n" + "1." + "\u3000" * 20_000
    started = time.perf_counter()
    parse_items(hostile * 3)
    assert time.perf_counter() - started < 2.0


FRAGMENTS = [
    *(
        "PARAGRAPH:|PARAGRAPH 1:|**Paragraph 2:**|paragraph:|段落１：|質問1：|反論：|Rebuttal 1:|Counter-argument:"
        "|【質問1】|### Question 1|## |# |1.|1)|(1)|１．|①|- |* |• |・|**|__|```|~~~|---|<think>|</think>"
        "|Here are 5 questions:|In conclusion,|まとめると|以上|Overall,|Rebuttals:|Argument 1:|Why?|なぜか？"
        "|text|?|：|:|>|[1]|Q1:|10.|1.5"
    ).split("|"),
    *[" ", "  ", "\u3000", "\t", "\n", "\n\n", "\r\n"],
]
TEXTS = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=40).map("".join),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=TEXTS, n=st.one_of(st.none(), st.integers(min_value=1, max_value=6)), require_question=st.booleans()
)
def test_parse_items_never_raises_and_returns_clean_items(
    text: str, n: int | None, require_question: bool
) -> None:
    result = parse_items(text, n, require_question=require_question)
    assert result.style in STYLES
    assert (result.error is None) == bool(result.items)
    if n is not None:
        assert len(result.items) <= n
    for item in result.items:
        assert item and item == item.strip()
        assert not LIST_MARKER_RE.match(item), item
        if require_question:
            assert "?" in item or "？" in item
