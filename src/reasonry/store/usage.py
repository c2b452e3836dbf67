"""The usage ledger: per run and model, what was really generated (requests, failures, retries, tokens, seconds).

Rows are added to in the same transaction as the results they count, so a killed run never counts a result
twice and a resumed one adds only what it generated; results served from the cache are counted as `cached`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from reasonry.store.base import StoreBase

if TYPE_CHECKING:
    from reasonry.engines.base import Result


@dataclass
class Usage:
    """Counts to add to one (run, model) row of the ledger."""

    requests: int = 0
    failures: int = 0
    retries: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    engine_seconds: float = 0.0

    def __bool__(self) -> bool:
        return any(getattr(self, name) for name in USAGE_FIELDS)

    def count(self, result: Result, *, sent: bool = True) -> None:
        """Add one engine result; a request refused before the call (`sent=False`) counts as a failure only."""
        self.requests += sent
        self.failures += result.error is not None
        self.retries += result.retries
        self.prompt_tokens += result.prompt_tokens
        self.completion_tokens += result.completion_tokens


USAGE_FIELDS = tuple(f.name for f in fields(Usage))  # the ledger's columns, in table order


class UsageMixin(StoreBase):
    def add_usage(self, run_id: str, model: str, usage: Usage) -> None:
        if not usage:
            return
        values = asdict(usage)
        updates = ", ".join(f"{name}={name}+excluded.{name}" for name in USAGE_FIELDS)
        with self.transaction() as conn:
            conn.execute(
                f"INSERT INTO usage (run_id, model, {', '.join(USAGE_FIELDS)}, updated_at)"
                f" VALUES (?,?,{','.join('?' * len(USAGE_FIELDS))},?)"
                f" ON CONFLICT (run_id, model) DO UPDATE SET {updates}, updated_at=excluded.updated_at",
                (run_id, model, *(values[name] for name in USAGE_FIELDS), time.time()))

    def run_usage(self, run_id: str) -> dict[str, dict[str, Any]]:
        """model -> the ledger's counts for this run."""
        rows = self._all(f"SELECT model, {', '.join(USAGE_FIELDS)} FROM usage WHERE run_id=? ORDER BY model",
                         (run_id,))
        return {row["model"]: {name: row[name] for name in USAGE_FIELDS} for row in rows}
