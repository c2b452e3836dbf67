"""Steering versions: every answer asked, edited or accepted on the Steer page or with `reasonry steer`."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from typing import Any

from reasonry.store.base import StoreBase


class SteeringMixin(StoreBase):
    def add_version(self, *, thread: str, parent_id: int | None, model: str, mode: str, question: str,
                    input_text: str, reasoning: str | None, response: str | None, raw_text: str | None,
                    params: Mapping[str, Any], seconds: float | None, prompt_tokens: int | None = None,
                    completion_tokens: int | None = None, edited: bool = False, note: str | None = None) -> int:
        with self.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO steer_versions (thread, parent_id, created_at, model, mode, question, input, reasoning,"
                " response, raw_text, params, seconds, prompt_tokens, completion_tokens, edited, note)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (thread, parent_id, time.time(), model, mode, question, input_text, reasoning, response, raw_text,
                 json.dumps(dict(params), ensure_ascii=False), round(seconds, 4) if seconds is not None else None,
                 prompt_tokens, completion_tokens, int(edited), note))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def version_row(self, version_id: int) -> sqlite3.Row | None:
        return self._one("SELECT * FROM steer_versions WHERE id=?", (version_id,))

    def version_rows(self, *, thread: str | None = None, limit: int | None = None,
                     accepted_only: bool = False) -> list[sqlite3.Row]:
        """Versions oldest first: of one thread, or the latest `limit` of all threads, or every accepted one."""
        if thread:
            return self._all("SELECT * FROM steer_versions WHERE thread=? ORDER BY id", (thread,))
        if accepted_only:
            return self._all("SELECT * FROM steer_versions WHERE accepted=1 ORDER BY id")
        if limit is None:
            return self._all("SELECT * FROM steer_versions ORDER BY id")
        return self._all("SELECT * FROM (SELECT * FROM steer_versions ORDER BY id DESC LIMIT ?) ORDER BY id", (limit,))

    def thread_rows(self, limit: int = 100) -> list[dict[str, Any]]:
        """Threads, most recently changed first: id, first question, number of versions, accepted count."""
        rows = self._all(
            "SELECT t.*, v.question FROM (SELECT thread, MIN(id) AS first_id, MAX(created_at) AS updated_at,"
            " COUNT(*) AS versions, SUM(accepted) AS accepted FROM steer_versions GROUP BY thread) t"
            " JOIN steer_versions v ON v.id=t.first_id ORDER BY t.updated_at DESC LIMIT ?", (limit,))
        return [dict(r) for r in rows]

    def batch_version_rows(self, batch_id: str) -> list[sqlite3.Row]:
        """The steering versions a batch recorded (originals and edits), oldest first."""
        return self._all("SELECT * FROM steer_versions WHERE json_extract(params, '$.batch')=? ORDER BY id",
                         (batch_id,))

    def set_accepted(self, version_id: int, accepted: bool) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE steer_versions SET accepted=? WHERE id=?", (int(accepted), version_id))

    def first_vanilla_row(self, thread: str, model: str, not_id: int) -> sqlite3.Row | None:
        """The thread's first unsteered version of `model` that has a response (other than `not_id`)."""
        return self._one("SELECT * FROM steer_versions WHERE thread=? AND model=? AND mode='vanilla' AND id<>?"
                         " AND response IS NOT NULL AND response<>'' ORDER BY id LIMIT 1", (thread, model, not_id))
