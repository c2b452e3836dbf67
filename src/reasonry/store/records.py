"""Typed records the store returns."""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

RESULT_FIELDS = (
    "text", "raw_text", "reasoning", "response", "prompt_tokens", "completion_tokens",
    "finish_reason", "latency_s", "error",
)


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


@dataclass
class StoredResult:
    key: str
    text: str | None
    raw_text: str | None
    reasoning: str | None
    response: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str | None
    latency_s: float | None
    error: str | None


class RunRecord(dict[str, Any]):
    """One (row, model, sample, column) of a run: the input row's fields and its stored result.

    A dict (callers add fields such as `flags`), with the fields every reader relies on as properties.
    """

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> RunRecord:
        record = cls(row)
        record["extra"] = json.loads(record["extra"])
        return record

    @staticmethod
    def reasoning_of(record: Mapping[str, Any]) -> str | None:
        """The generated reasoning, else the one given in the question file (special mode)."""
        generated = record.get("reasoning")
        return generated if generated is not None else record.get("given_reasoning")

    @property
    def final_reasoning(self) -> str | None:
        return self.reasoning_of(self)

    @property
    def row_index(self) -> int:
        return int(self["row_index"])

    @property
    def model(self) -> str:
        return str(self["model"])

    @property
    def key(self) -> str | None:
        return self.get("request_key")

    @property
    def failed(self) -> bool:
        return self.get("error") is not None
