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

