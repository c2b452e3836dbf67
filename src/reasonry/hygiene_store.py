"""SQL for data-hygiene marks: which results of a run `dedup` found duplicate and `decontaminate` found
contaminated, so that `export` can leave them out. One row per (run, result key, kind)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from reasonry.store import Store

KINDS = ("duplicate", "contaminated")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS hygiene_marks ("
    " run_id TEXT NOT NULL, key TEXT NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL,"
    " PRIMARY KEY (run_id, key, kind))",
    # One row per (run, kind) that was checked, with its settings: zero marks then means clean, not unchecked.
    "CREATE TABLE IF NOT EXISTS hygiene_checks ("
    " run_id TEXT NOT NULL, kind TEXT NOT NULL, settings TEXT NOT NULL, checked_at REAL NOT NULL,"
    " PRIMARY KEY (run_id, kind))",
)


def _ensure(store: Store) -> None:
    with store.transaction() as conn:
        for statement in _SCHEMA:
            conn.execute(statement)


def replace_marks(store: Store, run_id: str, kind: str, marks: Iterable[tuple[str, dict[str, Any]]],
                  settings: dict[str, Any]) -> int:
    """Replace the run's marks of `kind` with `marks` ((result key, detail) pairs) in one transaction."""
    _ensure(store)
    rows = [(run_id, key, kind, json.dumps(detail, ensure_ascii=False)) for key, detail in marks]
    with store.transaction() as conn:
        conn.execute("DELETE FROM hygiene_marks WHERE run_id=? AND kind=?", (run_id, kind))
        conn.executemany("INSERT OR REPLACE INTO hygiene_marks (run_id, key, kind, detail) VALUES (?,?,?,?)", rows)
        conn.execute("INSERT OR REPLACE INTO hygiene_checks (run_id, kind, settings, checked_at) VALUES (?,?,?,?)",
                     (run_id, kind, json.dumps(settings, ensure_ascii=False), time.time()))
    return len(rows)


def unchecked_kinds(store: Store, run_id: str, kinds: Sequence[str]) -> list[str]:
    """Which of `kinds` were never run on this run."""
    _ensure(store)
    done = {row[0] for row in store.conn.execute("SELECT kind FROM hygiene_checks WHERE run_id=?", (run_id,))}
    return [kind for kind in kinds if kind not in done]


def marked_keys(store: Store, run_id: str, kinds: Sequence[str]) -> set[str]:
    """Result keys of the run marked with any of `kinds` (empty when the run was never checked)."""
    if not kinds:
        return set()
    _ensure(store)
    sql = f"SELECT DISTINCT key FROM hygiene_marks WHERE run_id=? AND kind IN ({','.join('?' * len(kinds))})"
    return {row[0] for row in store.conn.execute(sql, (run_id, *kinds))}


def mark_counts(store: Store, run_id: str) -> dict[str, int]:
    _ensure(store)
    rows = store.conn.execute("SELECT kind, COUNT(*) FROM hygiene_marks WHERE run_id=? GROUP BY kind", (run_id,))
    return {kind: n for kind, n in rows}
