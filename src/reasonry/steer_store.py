"""SQL the steering features need beyond tasks/steer.py's (kept in one module for the store/ package to take in)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reasonry.store import Store

if TYPE_CHECKING:
    from reasonry.tasks.steer import Version


def batch_versions(store: Store, batch_id: str) -> list[Version]:
    """The steering versions a batch recorded (originals and edits), oldest first."""
    from reasonry.tasks.steer import Version

    rows = store.conn.execute("SELECT * FROM steer_versions WHERE json_extract(params, '$.batch')=? ORDER BY id",
                              (batch_id,)).fetchall()
    return [Version.from_row(row) for row in rows]


def versions_from_record(store: Store, run_id: str, row_index: int, model: str) -> list[Version]:
    """Steering versions made from one row of a run (a batch or a review import), oldest first."""
    from reasonry.tasks.steer import Version

    rows = store.conn.execute(
        "SELECT * FROM steer_versions WHERE json_extract(params, '$.run')=? AND json_extract(params, '$.row_index')=?"
        " AND model=? ORDER BY id", (run_id, row_index, model)).fetchall()
    return [Version.from_row(row) for row in rows]
