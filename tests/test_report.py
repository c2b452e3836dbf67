"""The HTML report: self-contained, escaped, with per-model numbers and highlighted spans."""

from __future__ import annotations

import re
from pathlib import Path

from reasonry.quality import CheckConfig, Flag
from reasonry.report import highlight, render_report

EVIL = "I think <script>alert(1)</script> and <img src=x onerror=alert(1)> then answer 12.49."


def _records() -> list[dict]:
    leak = "I calculate the square root of 156 as approximately 12.49."
    return [
        {
            "model": "phi-2",
            "row_id": "r1",
            "question": "Find the square root of 156.",
            "reasoning": leak,
            "response": "The square root of 156 is approximately 12.49.",
            "prompt_tokens": 40,
            "completion_tokens": 50,
            "latency_s": 2.0,
            "finish_reason": "stop",
            "error": None,
            "flags": [Flag("leakage", "reasoning contains the response's number 12.49", "12.49", 52, 57)],
        },
        {
            "model": "phi-2",
            "row_id": "r2",
            "question": "What is <b>bold</b>?",
            "reasoning": EVIL,
            "response": "<script>alert(2)</script>",
            "prompt_tokens": 30,
            "completion_tokens": 30,
            "latency_s": 1.0,
            "finish_reason": "length",
            "error": None,
            "flags": [
                {
                    "name": "leakage",
                    "reason": "<script>x</script>",
                    "span": "<script>alert(1)</script>",
                    "start": 8,
                    "end": 33,
                },
                {
                    "name": "truncated",
                    "reason": "finish_reason=length",
                    "span": None,
                    "start": None,
                    "end": None,
                },
            ],
        },
        {
            "model": "llama-3 <img src=y>",
            "row_id": "r3",
            "question": "Find the square root of 156.",
            "reasoning": "I consider basic mathematical concepts, specifically algebra and arithmetic.",
            "response": "The square root of 156 is approximately 12.49.",
            "prompt_tokens": 40,
            "completion_tokens": 80,
            "latency_s": 4.0,
            "finish_reason": "stop",
            "error": None,
            "flags": [],
        },
        {
            "model": "llama-3 <img src=y>",
            "row_id": "r4",
            "question": "q",
            "reasoning": None,
            "response": None,
            "prompt_tokens": None,
            "completion_tokens": None,
            "latency_s": None,
            "finish_reason": None,
            "error": "timeout <script>",
            "flags": [],
        },
    ]


def _render(tmp_path: Path, records: list[dict], **kwargs) -> str:
    out = render_report(
        "Report <script>alert(0)</script>", records, tmp_path / "sub" / "report.html", **kwargs
    )
    assert out == tmp_path / "sub" / "report.html"
    assert not [p for p in out.parent.iterdir() if p.name != "report.html"]  # no temp file left behind
    return out.read_text(encoding="utf-8")


def test_report_escapes_untrusted_text(tmp_path: Path) -> None:
    page = _render(tmp_path, _records())
    lowered = page.lower()
    assert "<script" not in lowered and "<img" not in lowered
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "timeout &lt;script&gt;" in page  # the error message is listed, escaped


def test_report_is_self_contained(tmp_path: Path) -> None:
    page = _render(tmp_path, _records())
    assert "https://" not in page
    assert all(url.startswith("http://www.w3.org/") for url in re.findall(r"http://\S+", page))
    assert page.count("<svg") == 3
    for tag in re.findall(r"<[a-zA-Z][^>]*>", page):
        assert "src=" not in tag and not re.search(r"href=\"(?!#)", tag), tag


def test_report_has_per_model_numbers(tmp_path: Path) -> None:
    page = _render(tmp_path, _records())
    row = re.search(r"<tr>\s*<td>phi-2</td>(.*?)</tr>", page, re.DOTALL)
    assert row is not None
    cells = re.findall(r"<td>(.*?)</td>", row.group(1))
    assert cells[:2] == ["2", "0"]  # rows, errors
    assert cells[4] == "27.5"  # median tokens/s of 50/2.0 and 30/1.0
    assert "2 (100.0%)" in cells  # both phi-2 results are flagged for leakage


def test_flagged_span_is_marked(tmp_path: Path) -> None:
    page = _render(tmp_path, _records())
    assert "<mark>12.49</mark>" in page
    assert "<mark>&lt;script&gt;alert(1)&lt;/script&gt;</mark>" in page


def test_records_without_flags_are_checked(tmp_path: Path) -> None:
    records = _records()
    for record in records:
        record.pop("flags")
    page = _render(tmp_path, records, config=CheckConfig(expected_language="en"))
    assert "<mark>12.49</mark>" in page
    assert 'id="flag-leakage"' in page


def test_report_checks_with_the_rule_check_stores(tmp_path: Path) -> None:
    """The reference answer counts, and a vanilla prompt's empty reasoning is not flagged (as in `check`)."""
    base = {"model": "m", "question": "Round sqrt(156).", "finish_reason": "stop", "error": None}
    with_reference = {**base, "row_id": "a", "reasoning": "The root is roughly 12.49 here.", "response": None,
                      "reference": "12.490"}
    vanilla = {**base, "row_id": "b", "reasoning": "", "response": "About 12.49.", "produces": "response"}
    page = _render(tmp_path, [with_reference, vanilla])
    assert "<mark>12.49</mark>" in page and 'id="flag-leakage"' in page
    assert 'id="flag-empty"' not in page and 'id="flag-truncated"' not in page


def test_highlight_escapes_every_part() -> None:
    text = "a<b>c & d"
    assert str(highlight(text, [(1, 4), (3, 5)])) == "a<mark>&lt;b&gt;c</mark> &amp; d"
    assert str(highlight(text, [])) == "a&lt;b&gt;c &amp; d"
