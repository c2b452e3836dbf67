"""Read-only queries behind the web app's Runs page: a page of rows with each model's results and flags."""

from __future__ import annotations

from typing import Any

from reasonry.store.base import StoreBase, marks


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class BrowseMixin(StoreBase):
    def input_page(self, run_id: str, models: list[str], text: str, limit: int,
                   offset: int) -> tuple[list[dict[str, Any]], int]:
        """Input rows of a run (those whose question, input or a result of `models` contains `text`) and the total."""
        where = "i.run_id=?"
        args: list[Any] = [run_id]
        if text:
            pattern = _like(text)
            where += (" AND (i.question LIKE ? ESCAPE '\\' OR i.input LIKE ? ESCAPE '\\' OR EXISTS ("
                      "SELECT 1 FROM run_requests q JOIN results r ON r.key=q.request_key WHERE q.run_id=i.run_id"
                      f" AND q.row_index=i.row_index AND q.model IN ({marks(models)}) AND (r.text LIKE ? ESCAPE '\\'"
                      " OR r.reasoning LIKE ? ESCAPE '\\' OR r.response LIKE ? ESCAPE '\\')))")
            args += [pattern, pattern, *models, pattern, pattern, pattern]
        total = int(self._one(f"SELECT COUNT(*) FROM run_inputs i WHERE {where}", args)[0])  # type: ignore[index]
        rows = self._all(f"SELECT * FROM run_inputs i WHERE {where} ORDER BY i.row_index LIMIT ? OFFSET ?",
                         [*args, limit, offset])
        return [dict(r) for r in rows], total

    def result_cells(self, run_id: str, row_indexes: list[int], models: list[str]) -> list[dict[str, Any]]:
        """The main results of `models` for some rows of a run, by row and sample."""
        rows = self._all(
            "SELECT q.row_index, q.model, q.sample_index, q.request_key, r.reasoning, r.response, r.text, r.error,"
            " r.finish_reason, r.latency_s, r.completion_tokens FROM run_requests q"
            " LEFT JOIN results r ON r.key=q.request_key"
            f" WHERE q.run_id=? AND q.column='' AND q.row_index IN ({marks(row_indexes)})"
            f" AND q.model IN ({marks(models)}) ORDER BY q.row_index, q.sample_index",
            [run_id, *row_indexes, *models])
        return [dict(r) for r in rows]
