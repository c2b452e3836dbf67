"""Data-hygiene marks: which results of a run `dedup` found duplicate and `decontaminate` found contaminated,
so that `export` can leave them out. One row per (run, result key, kind)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from reasonry.store.base import StoreBase, marks


class HygieneMixin(StoreBase):
    def replace_marks(self, run_id: str, kind: str, found: Iterable[tuple[str, dict[str, Any]]],
                      settings: dict[str, Any]) -> int:
        """Replace the run's marks of `kind` with `found` ((result key, detail) pairs) in one transaction."""
        rows = [(run_id, key, kind, json.dumps(detail, ensure_ascii=False)) for key, detail in found]
        with self.transaction() as conn:
            conn.execute("DELETE FROM hygiene_marks WHERE run_id=? AND kind=?", (run_id, kind))
            conn.executemany("INSERT OR REPLACE INTO hygiene_marks (run_id, key, kind, detail) VALUES (?,?,?,?)",
                             rows)
            conn.execute("INSERT OR REPLACE INTO hygiene_checks (run_id, kind, settings, checked_at) VALUES (?,?,?,?)",
                         (run_id, kind, json.dumps(settings, ensure_ascii=False), time.time()))
        return len(rows)

    def unchecked_kinds(self, run_id: str, kinds: Sequence[str]) -> list[str]:
        """Which of `kinds` were never run on this run."""
        done = {row[0] for row in self._all("SELECT kind FROM hygiene_checks WHERE run_id=?", (run_id,))}
        return [kind for kind in kinds if kind not in done]

    def marked_keys(self, run_id: str, kinds: Sequence[str]) -> set[str]:
        """Result keys of the run marked with any of `kinds` (empty when the run was never checked)."""
        if not kinds:
            return set()
        rows = self._all(f"SELECT DISTINCT key FROM hygiene_marks WHERE run_id=? AND kind IN ({marks(kinds)})",
                         (run_id, *kinds))
        return {row[0] for row in rows}

    def mark_counts(self, run_id: str) -> dict[str, int]:
        rows = self._all("SELECT kind, COUNT(*) FROM hygiene_marks WHERE run_id=? GROUP BY kind", (run_id,))
        return {kind: n for kind, n in rows}
