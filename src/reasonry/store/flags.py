"""Quality flags of results, and which results the checks have seen."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from reasonry.store.base import StoreBase, marks

FlagRow = tuple[str, str, str, Any, Any, Any]  # key, name, reason, span, start, end


class FlagsMixin(StoreBase):
    def replace_flags(self, keys: Sequence[str], flags: Iterable[FlagRow], *, keep: Sequence[str] = (),
                      judged: Sequence[str] = ()) -> None:
        """Replace the stored flags of `keys` with `flags` and mark the keys as checked. Flags named in `keep`
        (judge verdicts) stay, except on the `judged` keys, whose verdicts are replaced too."""
        kept = f" AND name NOT IN ({marks(keep)})" if keep else ""
        with self.transaction() as conn:
            conn.executemany(f"DELETE FROM flags WHERE key=?{kept}", [(k, *keep) for k in keys])
            if keep:
                conn.executemany(f"DELETE FROM flags WHERE key=? AND name IN ({marks(keep)})",
                                 [(k, *keep) for k in judged])
            conn.executemany(
                'INSERT OR REPLACE INTO flags (key, name, reason, span, start, "end") VALUES (?,?,?,?,?,?)', flags)
            now = time.time()
            conn.executemany("INSERT OR REPLACE INTO checked (key, at) VALUES (?,?)", [(k, now) for k in keys])

    def checked_keys(self, keys: Iterable[str]) -> set[str]:
        return {row["key"] for row in self._chunked("SELECT key FROM checked WHERE key IN ({marks})", keys)}

    def flag_rows(self, keys: Iterable[str]) -> list[dict[str, Any]]:
        """Stored flags of `keys` (key, name, reason, span, start, end), ordered by key and name."""
        rows = self._chunked('SELECT key, name, reason, span, start, "end" FROM flags WHERE key IN ({marks})'
                             " ORDER BY key, name", keys)
        return [dict(row) for row in rows]

    def run_flag_counts(self, run_id: str) -> dict[str, int]:
        """How many of the run's results carry each quality flag."""
        rows = self._all(
            "SELECT f.name, COUNT(*) AS n FROM flags AS f"
            " JOIN (SELECT DISTINCT request_key FROM run_requests WHERE run_id=?) AS k ON k.request_key = f.key"
            " GROUP BY f.name", (run_id,))
        return {row["name"]: row["n"] for row in rows}
