"""Quality checks: precision/recall on a hand-labelled set, and unit tests of each check."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from reasonry import quality
from reasonry.errors import ConfigError
from reasonry.quality import (
    FLAG_NAMES,
    CheckConfig,
    Flag,
    check_one,
    detect_language,
    length_outliers,
    summarize,
)
from reasonry.quality.checks import check_record

LABELLED = Path(__file__).parent / "data" / "quality" / "labelled.jsonl"


def _rows() -> list[dict[str, Any]]:
    with LABELLED.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _check(row: dict[str, Any]) -> list[Flag]:
    return check_one(
        row["reasoning"],
        row["response"],
        question=row["question"],
        reference=row.get("reference"),
        config=CheckConfig(expected_language=row["expected_language"]),
    )


def _precision_recall(pairs: list[tuple[bool, bool]]) -> tuple[float, float]:
    tp = sum(pred and gold for pred, gold in pairs)
    fp = sum(pred and not gold for pred, gold in pairs)
    fn = sum(gold and not pred for pred, gold in pairs)
    return tp / max(tp + fp, 1), tp / max(tp + fn, 1)


@pytest.fixture(scope="module")
def predictions() -> list[tuple[dict[str, Any], list[Flag]]]:
    return [(row, _check(row)) for row in _rows()]


def test_labelled_set_is_varied() -> None:
    rows = _rows()
    assert len(rows) >= 40
    assert {r["expected_language"] for r in rows} >= {"en", "ja"}
    for flag in ("leakage", "language"):
        labels = [r["labels"][flag] for r in rows]
        assert any(labels) and not all(labels)
    reasonings = {r["reasoning"] for r in rows}
    assert any(r.startswith("I calculate the square root of 156 as approximately 12.49.") for r in reasonings)
    assert any(
        r.startswith("To accurately solve this problem, I consider basic mathematical concepts")
        for r in reasonings
    )


@pytest.mark.parametrize(
    ("flag", "floor_precision", "floor_recall"), [("leakage", 0.8, 0.75), ("language", 0.9, 0.9)]
)
def test_precision_recall(predictions: list, flag: str, floor_precision: float, floor_recall: float) -> None:
    pairs = [(any(f.name == flag for f in flags), row["labels"][flag]) for row, flags in predictions]
    precision, recall = _precision_recall(pairs)
    misses = [
        row["id"] for row, flags in predictions if any(f.name == flag for f in flags) != row["labels"][flag]
    ]
    print(
        f"\n[quality] {flag}: precision={precision:.3f} recall={recall:.3f} over {len(pairs)} rows; wrong: {misses}"
    )
    assert precision >= floor_precision
    assert recall >= floor_recall


def test_spans_are_exact_substrings(predictions: list) -> None:
    for row, flags in predictions:
        for flag in flags:
            if flag.start is not None:
                assert row["reasoning"][flag.start : flag.end] == flag.span, (row["id"], flag)


def test_seed_leak_points_at_the_number() -> None:
    reasoning = "I calculate the square root of 156 as approximately 12.49. This is done by finding a number."
    [flag] = check_one(
        reasoning, "The square root of 156 is approximately 12.49.", question="Find the square root of 156."
    )
    assert flag.name == "leakage" and flag.span == "12.49" and "12.49" in flag.reason


def test_question_numbers_are_not_leakage() -> None:
    reasoning = "I divide the 180 km by the 2.5 hours."
    assert (
        check_one(reasoning, "It is 72 km/h.", question="A train travels 180 km in 2.5 hours. Speed?") == []
    )


def test_reference_compared_numerically() -> None:
    flags = check_one(
        "The root is roughly 12.49 here.", None, question="Round sqrt(156).", reference="12.490"
    )
    assert [f.name for f in flags] == ["leakage"] and flags[0].span == "12.49"


def test_explicit_answer_without_response() -> None:
    flags = check_one("等差数列の和の公式を使うと、答えは55です。", None, question="1から10までの和は？")
    assert [f.name for f in flags] == ["leakage"]
    assert check_one("I recall the formula for the sum.", None, question="Sum of 1..10?") == []


def test_fullwidth_text_maps_back_to_original_offsets() -> None:
    reasoning = "計算すると約１２．４９になります。"
    [flag] = check_one(reasoning, "約12.49です。", question="156の平方根は？")
    assert flag.span == "１２．４９" and reasoning[flag.start : flag.end] == flag.span


def test_empty_reasoning() -> None:
    for reasoning in (None, "", "  \n "):
        names = [f.name for f in check_one(reasoning, "The answer.")]
        assert names == ["empty", "truncated"]
    assert [f.name for f in check_one("", "x", expected_section=False)] == ["empty"]


def test_truncated_by_length_mid_sentence() -> None:
    reasoning = "First I list the items. Then I check whether the number of pears eaten is"
    [flag] = check_one(reasoning, None, finish_reason="length")
    assert flag.name == "truncated" and "mid-sentence" in flag.reason
    assert (
        reasoning[flag.start : flag.end] == flag.span == "Then I check whether the number of pears eaten is"
    )


def test_truncated_by_length_at_sentence_end_and_missing_response() -> None:
    [flag] = check_one("I list the items.", "Seven fruits.", finish_reason="length")
    assert flag.name == "truncated" and "mid-sentence" not in flag.reason
    [flag] = check_one("I list the items and count the fruit.", "", finish_reason="stop")
    assert flag.name == "truncated" and "response" in flag.reason
    assert check_one("I list the items and count the fruit.", "", expected_section=False) == []
    assert check_one("I list the items and count the fruit.", None, finish_reason="stop") == []


@pytest.mark.parametrize(
    ("reasoning", "piece"),
    [
        (
            "I think about the apples. " + "I need to count the fruit again. " * 5,
            "I need to count the fruit again.",
        ),
        ("I check it " + "and then I check it " * 4 + "and stop.", "and then I check it"),
        ("ルナの色を確認します。" + "ルナは黒い猫なので白ではない。" * 4, "ルナは黒い猫なので白ではない"),
        (
            "Plan:\n- visit the temple early\nlunch\n- visit the temple early\n- visit the temple early\n",
            "- visit the temple early",
        ),
        ("Counting: " + "123456789" * 6, "123456789"),  # a loop inside one long "word" (real SmolLM2 output)
    ],
)
def test_repetition(reasoning: str, piece: str) -> None:
    [flag] = [f for f in check_one(reasoning, None, expected_section=False) if f.name == "repetition"]
    same_cycle = sorted(flag.span.split()) == sorted(piece.split())  # any rotation of the loop will do
    assert flag.span in piece or same_cycle
    assert reasoning[flag.start : flag.end] == flag.span


def test_no_repetition_in_ordinary_text() -> None:
    reasoning = (
        "To find the square root I first bracket the number between two perfect squares. The square root of 144 "
        "is 12 and the square root of 169 is 13, so the square root lies between them. I refine the estimate "
        "by trying decimals and checking the square of each guess against the target."
    )
    assert not [f for f in check_one(reasoning, None, expected_section=False) if f.name == "repetition"]


def test_language_flag_and_short_text_skip() -> None:
    ja = CheckConfig(expected_language="ja")
    [flag] = check_one(
        "I recall basic facts about Japanese geography and the seat of government.", None, config=ja
    )
    assert flag.name == "language" and "'en'" in flag.reason and "'ja'" in flag.reason
    assert check_one("Short text.", None, config=ja) == []
    assert check_one("問題文の条件を確認し、それぞれの色を比較して判断します。", None, config=ja) == []
    assert (
        check_one("I check each of the colours.", None, config=CheckConfig(expected_language="EN-us")) == []
    )


def test_expected_language_by_name_or_code_and_unknown_refused() -> None:
    english = "I check each of the colours and compare them with the list in the question before I answer."
    for name in ("English", "english", "en", "en-GB"):
        assert CheckConfig(expected_language=name).expected_language == "en"
        assert check_one(english, None, config=CheckConfig(expected_language=name)) == []
    assert CheckConfig(expected_language="Japanese").expected_language == "ja"
    with pytest.raises(ConfigError, match="'klingon'"):
        CheckConfig(expected_language="klingon")


def test_chat_response_cut_at_the_token_limit_is_truncated() -> None:
    record = {"reasoning": "", "response": "The answer is that the pears", "finish_reason": "length",
              "produces": "response"}
    assert [f.name for f in check_record(record, CheckConfig())] == ["truncated"]
    assert check_record({**record, "finish_reason": "stop", "response": "It is 7."}, CheckConfig()) == []
    assert [f.name for f in check_record({**record, "response": "", "finish_reason": "stop"}, CheckConfig())] == [
        "empty"]


def test_detect_language_japanese_dominance() -> None:
    assert detect_language("Pythonのlist comprehensionを使い、forループよりも簡潔に書きます。")[0] == "ja"
    assert detect_language("I recall that the word 「猫」 means cat in everyday Japanese usage.")[0] == "en"
    assert detect_language("我会回忆基本的颜色理论，然后选择一个颜色。")[0] == "zh"
    assert detect_language("12345 !!!") == ("", 0.0)


def test_detect_language_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network disabled in this test")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(quality.language, "_langid_identifier", None)  # force loading the model under the patch
    lang, prob = detect_language("これは日本語の文章です。")
    assert lang == "ja" and 0.8 <= prob <= 1.0
    lang, prob = detect_language("This is an ordinary English sentence about the weather today.")
    assert lang == "en" and 0.8 <= prob <= 1.0
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_length_outliers() -> None:
    config = CheckConfig()
    assert length_outliers([10, 10000, 12], config) == []
    lengths = [100, 110, 95, 105, 98, 102, 4000, 97, 3]
    assert length_outliers(lengths, config) == [6, 8]
    assert length_outliers([100] * 9 + [5000], config) == [9]
    assert length_outliers([100] * 12, config) == []
    assert length_outliers(lengths, CheckConfig(length_z=1000)) == []


def test_summarize_counts_results_not_flags() -> None:
    leak = Flag("leakage", "x")
    results = [
        ("m1", [leak, Flag("repetition", "y")]),
        ("m1", []),
        ("m2", [{"name": "language", "reason": "z", "span": None, "start": None, "end": None}]),
        ("m1", [leak]),
    ]
    summary = summarize(results)
    assert summary["m1"]["n"] == 3 and summary["m1"]["counts"]["leakage"] == 2
    assert summary["m1"]["rates"]["leakage"] == pytest.approx(2 / 3)
    assert summary["m1"]["flagged"] == 2 and summary["m1"]["flagged_rate"] == pytest.approx(2 / 3)
    assert summary["m2"]["rates"]["language"] == 1.0
    assert set(FLAG_NAMES) <= set(summary["m2"]["counts"])


def test_flag_dict_round_trip() -> None:
    flag = Flag("leakage", "reason", "12.49", 3, 8)
    assert Flag.from_dict(flag.to_dict()) == flag


def test_long_degenerate_cjk_output_is_checked_quickly() -> None:
    import random
    import time

    from reasonry.quality import check_one

    rng = random.Random(0)
    chars = "あいうえおかきくけこさしすせそたちつてと"
    reasoning = "".join(rng.choice(chars) for _ in range(20_000))
    response = "".join(rng.choice(chars) for _ in range(5_000))
    for text in (reasoning, "。".join(reasoning[i:i + 1000] for i in range(0, 20_000, 1000))):
        started = time.perf_counter()
        check_one(text, response, question="何ですか？")
        assert time.perf_counter() - started < 2


def test_word_diff_of_long_unrelated_texts_is_quick_and_whole() -> None:
    import random
    import time

    from reasonry.web.diff import word_diff

    rng = random.Random(1)
    old = "same start " + "".join(rng.choice("あい ") for _ in range(20_000)) + " same end"
    new = "same start " + "".join(rng.choice("うえ ") for _ in range(20_000)) + " same end"
    started = time.perf_counter()
    segments = word_diff(old, new)
    assert time.perf_counter() - started < 2
    assert "".join(text for op, text in segments if op != "insert") == old
    assert "".join(text for op, text in segments if op != "delete") == new
