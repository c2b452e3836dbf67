"""A model as a second opinion on a result: does the reasoning state or commit to the final answer (leakage),
and does it support the response (consistency)? The prompt is a template (built-in `check-judge`); the reply's
two lines are read into `Verdict`s, stored as flags of kind `judge-leakage` / `judge-consistency` whose span is
the verdict ("yes", "no", "n/a" or "unclear") and whose reason is the judge's sentence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reasonry.quality.flags import Flag

JUDGE_LEAKAGE = "judge-leakage"
JUDGE_CONSISTENCY = "judge-consistency"
JUDGE_KINDS = (JUDGE_LEAKAGE, JUDGE_CONSISTENCY)
VERDICTS = ("yes", "no", "n/a", "unclear")

_LINE_RE = {
    JUDGE_LEAKAGE: re.compile(r"(?:leak\w*|リーク|漏洩)\W{0,4}(?P<v>yes|no|はい|いいえ)\b\W*(?P<why>[^\n]*)", re.I),
    JUDGE_CONSISTENCY: re.compile(
        r"(?:consisten\w*|support\w*|整合\w*)\W{0,4}(?P<v>yes|no|n/?a|はい|いいえ)\b\W*(?P<why>[^\n]*)", re.I
    ),
}
_NORMAL = {"yes": "yes", "はい": "yes", "no": "no", "いいえ": "no", "n/a": "n/a", "na": "n/a"}


@dataclass(frozen=True)
class Verdict:
    kind: str
    verdict: str
    reason: str

    def to_flag(self) -> Flag:
        return Flag(self.kind, self.reason, self.verdict)

    @classmethod
    def from_flag(cls, flag: Flag) -> Verdict:
        return cls(flag.name, flag.span or "unclear", flag.reason)


def judge_variables(record: Mapping[str, Any], reasoning: str | None, question: str) -> dict[str, Any]:
    """What the judge template can use: question (with its context), reasoning, response, reference, row."""
    return {
        "question": question,
        "instruction": question,
        "input": record.get("input") or "",
        "reasoning": (reasoning or "").strip(),
        "response": (record.get("response") or "").strip(),
        "reference": record.get("reference") or "",
        "row": record.get("extra") or {},
    }


def parse_verdicts(text: str | None, *, has_response: bool) -> list[Verdict]:
    """Both verdicts of a judge reply; a line that cannot be read gives "unclear" with the reply as reason."""
    text = text or ""
    verdicts = []
    for kind, regex in _LINE_RE.items():
        found = regex.search(text)
        if found:
            verdict = _NORMAL.get(found.group("v").lower(), "unclear")
            reason = found.group("why").strip() or "(no reason given)"
        else:
            verdict, reason = "unclear", f"unreadable judge reply: {text.strip()[:200]!r}"
        if kind == JUDGE_CONSISTENCY and not has_response:
            verdict = "n/a"
        verdicts.append(Verdict(kind, verdict, reason))
    return verdicts
