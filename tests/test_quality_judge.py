"""`reasonry check --judge`: verdicts from a model served over HTTP, stored beside the rule-based flags, cached,
and compared with them in the check summary and the report."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reasonry.quality.judge import parse_verdicts
from reasonry.store import Store
from tests.cli_helpers import cli_json
from tests.fault_server import FaultServer
from tests.test_check_cli import CLEAN_REASONING, SEED_QUESTION, SEED_REASONING, SEED_RESPONSE, make_run


class JudgeServer(FaultServer):
    """The test server answering as a strict judge: leakage when the reasoning section of the prompt holds
    "12.49" or "Thursday"; the reasoning supports the response unless it says "unrelated"."""

    @property
    def calls(self) -> int:
        return sum(self.attempts.values())

    @staticmethod
    def verdict(prompt: str) -> str:
        reasoning = prompt.split("### Reasoning:", 1)[1].split("### Response:", 1)[0]
        leak = any(word in reasoning for word in ("12.49", "Thursday"))
        supports = "unrelated" not in reasoning
        return (f"LEAKAGE: {'yes' if leak else 'no'} - {'it states the value' if leak else 'only the method'}\n"
                f"CONSISTENT: {'yes' if supports else 'no'} - checked against the response")

    def _success(self, path: str, body: dict[str, Any], text: str) -> dict[str, Any]:
        content = self.verdict(body["messages"][-1]["content"])
        choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        usage = {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70}
        return {"id": "j", "object": "chat.completion", "model": body["model"], "choices": [choice], "usage": usage}


@pytest.fixture
def judge_server() -> Iterator[JudgeServer]:
    with JudgeServer() as server:
        yield server


def _verdict_rows(db: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT name, span, reason FROM flags WHERE name LIKE 'judge-%' ORDER BY key, name"
                            ).fetchall()


def test_parse_verdicts() -> None:
    [leak, consistent] = parse_verdicts("LEAKAGE: Yes - it says 12.\nCONSISTENT: no — wrong number", has_response=True)
    assert (leak.verdict, leak.reason, consistent.verdict) == ("yes", "it says 12.", "no")
    [leak, consistent] = parse_verdicts("**Leakage**: no\nConsistent: n/a", has_response=True)
    assert (leak.verdict, consistent.verdict) == ("no", "n/a")
    [leak, consistent] = parse_verdicts("I cannot tell.", has_response=False)
    assert leak.verdict == "unclear" and "I cannot tell." in leak.reason and consistent.verdict == "n/a"


def test_check_with_judge_end_to_end(tmp_path: Path, judge_server: JudgeServer) -> None:
    db = tmp_path / "r.db"
    store = Store(db)
    items: list[dict[str, Any]] = [
        {"question": SEED_QUESTION, "reasoning": SEED_REASONING, "response": SEED_RESPONSE},
        {"question": SEED_QUESTION, "reasoning": CLEAN_REASONING, "response": SEED_RESPONSE},
        # the rule misses this one and the judge catches it: they disagree
        {"question": "If today is Monday, what day will it be in 10 days?",
         "reasoning": "Counting on from Monday by a week and three days lands on Thursday.", "response": None},
        {"question": "What is 2+2?", "reasoning": "An unrelated text about the weather today.", "response": "4"},
    ]
    run_id = make_run(store, items)
    store.close()
    spec = f"openai:judge@{judge_server.url}"
    summary = cli_json("check", run_id, "--db", str(db), "--judge", spec, "--json")
    judge = summary["judge"]["models"]["m1"]
    assert judge_server.calls == 4 and summary["judge"]["generated"] == 4
    assert (judge["judged"], judge["compared"], judge["agree"], judge["judge_only"]) == (4, 4, 3, 1)
    assert judge["consistency"] == {"yes": 2, "no": 1, "n/a": 1, "unclear": 0}
    rows = _verdict_rows(db)
    assert [(name, span) for name, span, _ in rows].count(("judge-leakage", "yes")) == 2
    assert all(reason for _, _, reason in rows)
    # rule-based flags are stored beside the verdicts and unchanged by them
    assert summary["models"]["m1"]["counts"]["leakage"] == 1

    again = cli_json("check", run_id, "--db", str(db), "--judge", spec, "--json")
    assert judge_server.calls == 4 and again["judge"]["cached"] == 4  # the executor's cache answers
    plain = cli_json("check", run_id, "--db", str(db), "--json")
    assert plain["judge"]["models"]["m1"]["agree"] == 3 and _verdict_rows(db) == rows  # kept without --judge

    from reasonry.web.browse import run_rows

    reader = Store.existing(db)
    page = run_rows(reader, run_id, models=None, text="", page=1)
    reader.close()
    shown = {flag["name"] for row in page.rows for cells in row["cells"].values() for cell in cells
             for flag in cell["flags"]}
    assert shown == {"leakage", "truncated"}  # rule flags (the row without a response: truncated), not verdicts

    out = tmp_path / "report.html"
    cli_json("report", run_id, "--db", str(db), "-o", str(out), "--json")
    html = out.read_text(encoding="utf-8")
    assert "Rule-based leakage flag vs judge" in html and "3/4 (75.0%)" in html
