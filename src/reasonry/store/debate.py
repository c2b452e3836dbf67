"""Debate nodes: a node is identified by (run, parent, kind, position), so reruns update instead of inserting."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any

from reasonry.store.base import StoreBase

NODE_FIELDS = ("round", "party", "model", "request_key", "reasoning", "text", "raw_text", "error", "score", "expanded")
Slot = tuple[int | None, str, int]  # parent id, kind, position


class DebateMixin(StoreBase):
    def node_rows(self, run_id: str) -> list[sqlite3.Row]:
        """Every stored node of a run, in creation order."""
        return self._all("SELECT * FROM debate_nodes WHERE run_id=? ORDER BY id", (run_id,))

    def save_nodes(self, run_id: str, nodes: Iterable[tuple[Slot, int | None, tuple[Any, ...] | None]]) -> list[int]:
        """Insert (id None) or update (id given) nodes in one transaction, in order; returns their ids.

        Each item is (slot, id, values in NODE_FIELDS order); an update whose values are None is skipped.
        """
        ids: list[int] = []
        with self.transaction() as conn:
            for (parent_id, kind, position), node_id, values in nodes:
                if node_id is not None:
                    if values is not None:
                        conn.execute(f"UPDATE debate_nodes SET {', '.join(f'{n}=?' for n in NODE_FIELDS)} WHERE id=?",
                                     (*values, node_id))
                    ids.append(node_id)
                    continue
                conn.execute(
                    f"INSERT OR IGNORE INTO debate_nodes (run_id, parent_id, kind, position, created_at, "
                    f"{', '.join(NODE_FIELDS)}) VALUES (?,?,?,?,?,{','.join('?' * len(NODE_FIELDS))})",
                    (run_id, parent_id, kind, position, time.time(), *values))
                row = conn.execute(
                    "SELECT id FROM debate_nodes WHERE run_id=? AND parent_id IS ? AND kind=? AND position=?"
                    " ORDER BY id LIMIT 1", (run_id, parent_id, kind, position)).fetchone()
                ids.append(int(row["id"]))
        return ids

    def delete_nodes(self, node_ids: Sequence[int]) -> None:
        with self.transaction() as conn:
            conn.executemany("DELETE FROM debate_nodes WHERE id=?", [(node_id,) for node_id in node_ids])

    def list_debates(self, limit: int = 500) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT d.run_id, COUNT(*) AS nodes, MAX(d.round) AS rounds, MIN(d.created_at) AS created_at,"
            " SUM(d.error IS NOT NULL) AS errors, r.status, r.source FROM debate_nodes d"
            " LEFT JOIN runs r ON r.id=d.run_id GROUP BY d.run_id ORDER BY created_at DESC LIMIT ?", (limit,))
        return [dict(r) for r in rows]

    def debate_page_nodes(self, run_id: str, limit: int = 5000) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT id, parent_id, round, kind, party, model, position, reasoning, text, error, score"
            " FROM debate_nodes WHERE run_id=? ORDER BY round, position, id LIMIT ?", (run_id, limit))
        return [dict(r) for r in rows]
