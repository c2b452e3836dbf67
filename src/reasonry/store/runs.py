"""Runs, their models, input rows, requests and results: the tables every task writes."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from reasonry.errors import InputError
from reasonry.runstate import live_status, owner
from reasonry.store.base import StoreBase, marks
from reasonry.store.records import RESULT_FIELDS, RunRecord, StoredResult, new_run_id

# A failed attempt keeps a stored success: its fields are taken only when the stored result failed too.
_KEEP_SUCCESS = "excluded.error IS NOT NULL AND results.error IS NULL"
_UPSERT_RESULT = (
    f"INSERT INTO results (key, {', '.join(RESULT_FIELDS)}, created_at) VALUES (?,{','.join('?' * len(RESULT_FIELDS))},?)"
    " ON CONFLICT(key) DO UPDATE SET "
    + ", ".join(f"{f}=CASE WHEN {_KEEP_SUCCESS} THEN results.{f} ELSE excluded.{f} END"
                for f in (*RESULT_FIELDS, "created_at"))
    + ", attempts=results.attempts+1"
)


def _run_dict(row: sqlite3.Row) -> dict[str, Any]:
    data = dict(row)
    data["config"] = json.loads(data["config"] or "{}")
    data["summary"] = json.loads(data["summary"] or "{}")
    data["status"] = live_status(data["status"], data["summary"])  # 'interrupted' once its process is gone
    return data


class RunsMixin(StoreBase):
    # -- runs -----------------------------------------------------------------
    def create_run(self, kind: str, *, source: str | None, config: dict[str, Any],
                   models: Sequence[tuple[str, str]] = (), parent_run: str | None = None,
                   run_id: str | None = None) -> str:
        """A new run (status 'running'); with `run_id`, reopen that run if it exists (content-addressed runs)."""
        with self.transaction() as conn:
            if run_id is None:
                run_id = new_run_id()
                while conn.execute("SELECT 1 FROM runs WHERE id=?", (run_id,)).fetchone():
                    run_id = new_run_id()
            conn.execute(
                "INSERT OR IGNORE INTO runs (id, kind, created_at, source, config, parent_run) VALUES (?,?,?,?,?,?)",
                (run_id, kind, time.time(), source, json.dumps(config, ensure_ascii=False, default=str), parent_run),
            )
            conn.execute("UPDATE runs SET status='running', finished_at=NULL, summary=? WHERE id=?",
                         (json.dumps(owner()), run_id))
            for label, spec in models:
                self.add_run_model(run_id, label, spec)
        return run_id

    def interrupted_run(self, kind: str, source: str | None, config: dict[str, Any],
                        models: Sequence[tuple[str, str]]) -> dict[str, Any] | None:
        """The newest interrupted run (Ctrl-C, or its process gone) that the same command started: same kind, source,
        settings and models, so that running the command again resumes it under its own id."""
        same = json.loads(json.dumps(config, ensure_ascii=False, default=str))
        rows = self._all("SELECT * FROM runs WHERE kind=? AND source IS ? AND status IN ('running', 'interrupted') "
                         "ORDER BY created_at DESC LIMIT 20", (kind, source))
        for row in rows:
            data = _run_dict(row)
            if data["status"] == "interrupted" and data["config"] == same and \
                    [(m["label"], m["spec"]) for m in self.run_models(data["id"])] == list(models):
                return data
        return None

    def samples_per_model(self, run_id: str) -> dict[str, int]:
        """How many samples each model of a run has (an ensemble's one per row beside `--samples N` models)."""
        rows = self._all("SELECT model, MAX(sample_index) + 1 AS n FROM run_requests WHERE run_id=? AND column='' "
                         "GROUP BY model", (run_id,))
        return {row["model"]: int(row["n"]) for row in rows}

    def add_run_model(self, run_id: str, label: str, spec: str) -> None:
        with self.transaction() as conn:
            position = conn.execute("SELECT COUNT(*) FROM run_models WHERE run_id=?", (run_id,)).fetchone()[0]
            conn.execute("INSERT OR IGNORE INTO run_models (run_id, position, label, spec) VALUES (?,?,?,?)",
                         (run_id, position, label, spec))

    def finish_run(self, run_id: str, status: str, summary: dict[str, Any]) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE runs SET status=?, finished_at=?, summary=? WHERE id=?",
                         (status, time.time(), json.dumps(summary, ensure_ascii=False, default=str), run_id))

    def update_run_config(self, run_id: str, **changes: Any) -> dict[str, Any]:
        with self.transaction() as conn:
            row = conn.execute("SELECT config FROM runs WHERE id=?", (run_id,)).fetchone()
            config = {**json.loads(row["config"]), **changes}
            conn.execute("UPDATE runs SET config=? WHERE id=?", (json.dumps(config, ensure_ascii=False), run_id))
        return config

    def resolve_run(self, ref: str, kind: str | None = None) -> str:
        """A run id from a full id, a unique prefix (compared as text, never as a pattern), or 'last': the newest
        run that got as far as planning a request (a run refused at its input, with nothing in it, is skipped)."""
        if ref in ("last", "latest"):
            where = ("WHERE (status != 'failed' OR EXISTS (SELECT 1 FROM run_requests q WHERE q.run_id = r.id)"
                     " OR EXISTS (SELECT 1 FROM debate_nodes d WHERE d.run_id = r.id))")
            where, args = (where, []) if kind is None else (where + " AND kind=?", [kind])
            row = self._one(f"SELECT id FROM runs r {where} ORDER BY created_at DESC LIMIT 1", args)
            if row is None:
                what = f"{kind} runs" if kind else "runs"
                raise InputError(f"no {what} in {self.path} yet (runs refused at their input do not count)")
            return str(row["id"])
        rows = self._all("SELECT id, kind FROM runs WHERE substr(id, 1, ?) = ? ORDER BY id", (len(ref), ref))
        exact = [r for r in rows if r["id"] == ref]
        if len(rows) == 1 or exact:
            found = (exact or rows)[0]
            if kind is not None and found["kind"] != kind:
                hint = "; for a debate use --debate RUN_ID or `reasonry debate …`" if found["kind"] == "debate" else ""
                raise InputError(f"run {found['id']} is a {found['kind']} run, not a {kind} run{hint}; "
                                 "`reasonry runs` lists them with their kind")
            return str(found["id"])
        if not rows:
            raise InputError(f"run {ref!r} not found in {self.path}; `reasonry runs` lists them")
        raise InputError(f"run {ref!r} is ambiguous ({', '.join(r['id'] for r in rows[:5])}); give more of it")

    def get_run(self, run_id: str) -> dict[str, Any]:
        row = self._one("SELECT * FROM runs WHERE id=?", (run_id,))
        if row is None:
            raise InputError(f"run {run_id!r} not found in {self.path}")
        data = _run_dict(row)
        data["models"] = self.run_models(run_id)
        return data

    def list_runs(self, limit: int = 50, *, offset: int = 0, kind: str | None = None) -> list[dict[str, Any]]:
        where, args = ("WHERE kind=?", [kind]) if kind else ("", [])
        rows = self._all(f"SELECT * FROM runs {where} ORDER BY created_at DESC LIMIT ? OFFSET ?",
                         [*args, limit, offset])
        out = []
        for row in rows:
            data = _run_dict(row)
            data["models"] = self.run_models(data["id"])
            out.append(data)
        return out

    def count_runs(self, kind: str | None = None) -> int:
        where, args = ("WHERE kind=?", [kind]) if kind else ("", [])
        return int(self._one(f"SELECT COUNT(*) FROM runs {where}", args)[0])  # type: ignore[index]

    def run_models(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._all("SELECT label, spec FROM run_models WHERE run_id=? ORDER BY position", (run_id,))
        return [dict(r) for r in rows]

    # -- inputs and requests ---------------------------------------------------
    def add_inputs(self, run_id: str, rows: Iterable[Any]) -> None:
        with self.transaction():
            self.conn.executemany(
                "INSERT OR REPLACE INTO run_inputs (run_id, row_index, row_id, question, input, reasoning, reference, extra)"
                " VALUES (?,?,?,?,?,?,?,?)",
                [(run_id, r.index, r.id, r.question, r.input, r.reasoning, r.reference,
                  json.dumps(r.extra, ensure_ascii=False, default=str)) for r in rows],
            )

    def count_inputs(self, run_id: str) -> int:
        return int(self._one("SELECT COUNT(*) FROM run_inputs WHERE run_id=?", (run_id,))[0])  # type: ignore[index]

    def add_requests(self, run_id: str, entries: Iterable[tuple[int, str, int, str, str]],
                     requests: Iterable[tuple[Any, str, str, str | None, str]]) -> None:
        """entries: (row_index, model_label, sample_index, key, column); requests: (Request, engine, model, adapter, produces)."""
        with self.transaction():
            now = time.time()
            self.conn.executemany(
                "INSERT OR IGNORE INTO requests (key, engine, model, adapter, prompt, messages, prefill, params,"
                " sample_index, produces, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [(req.key, engine, model, adapter, req.prompt,
                  json.dumps(req.messages, ensure_ascii=False) if req.messages is not None else None,
                  req.prefill, req.params.canonical(), req.sample_index, produces, now)
                 for req, engine, model, adapter, produces in requests],
            )
            self.conn.executemany(
                "INSERT OR REPLACE INTO run_requests (run_id, row_index, model, sample_index, request_key, column)"
                " VALUES (?,?,?,?,?,?)",
                [(run_id, *entry) for entry in entries],
            )

    def count_requests(self, run_id: str, models: Sequence[str], column: str = "") -> int:
        row = self._one(f"SELECT COUNT(*) FROM run_requests WHERE run_id=? AND column=? AND model IN ({marks(models)})",
                        (run_id, column, *models))
        return int(row[0])  # type: ignore[index]

    def has_results(self, run_id: str, models: Sequence[str], column: str = "") -> bool:
        """Whether any of `models` has a successful result in this run."""
        row = self._one(
            "SELECT 1 FROM run_requests q JOIN results r ON r.key=q.request_key WHERE q.run_id=? AND q.column=?"
            f" AND r.error IS NULL AND q.model IN ({marks(models)}) LIMIT 1", (run_id, column, *models))
        return row is not None

    def produces_of(self, keys: Iterable[str]) -> dict[str, str | None]:
        """What each request's template asked for ('reasoning', 'response', ...), by key."""
        return {row["key"]: row["produces"]
                for row in self._chunked("SELECT key, produces FROM requests WHERE key IN ({marks})", keys)}

    def request_prompts(self, keys: Iterable[str]) -> dict[str, str]:
        """key -> rendered prompt (or the chat messages as JSON) of the stored requests among `keys`."""
        rows = self._chunked("SELECT key, prompt, messages FROM requests WHERE key IN ({marks})", keys)
        return {row["key"]: row["prompt"] or row["messages"] or "" for row in rows}

    # -- results ----------------------------------------------------------------
    def done_keys(self, keys: Sequence[str]) -> set[str]:
        """Keys that already have a successful result."""
        return {row[0] for row in self._chunked("SELECT key FROM results WHERE error IS NULL AND key IN ({marks})",
                                                keys)}

    def put_results(self, items: Iterable[dict[str, Any]]) -> None:
        """Store results; every attempt is logged, and a failed one never replaces a stored success."""
        now = time.time()
        rows = [tuple(item.get(f) for f in ("key", *RESULT_FIELDS)) + (now,) for item in items]
        with self.transaction():
            self.conn.executemany(_UPSERT_RESULT, rows)
            self.conn.executemany(
                "INSERT INTO attempts (key, at, error, finish_reason, latency_s) VALUES (?,?,?,?,?)",
                [(item[0], now, item[9], item[7], item[8]) for item in rows])

    def get_result(self, key: str) -> StoredResult | None:
        row = self._one(f"SELECT key, {', '.join(RESULT_FIELDS)} FROM results WHERE key=?", (key,))
        return StoredResult(**dict(row)) if row else None

    def attempts(self, key: str) -> list[dict[str, Any]]:
        """Every attempt of a request, oldest first (error is None for a success)."""
        return [dict(r) for r in self._all("SELECT at, error, finish_reason, latency_s FROM attempts WHERE key=?"
                                           " ORDER BY at, rowid", (key,))]

    # -- reading a run back -----------------------------------------------------
    def run_records(self, run_id: str, *, models: Sequence[str] | None = None,
                    columns: Sequence[str] | None = ("",)) -> Iterator[RunRecord]:
        """One record per (row, model, sample, column) with the row's fields and the result, ordered by row.

        `columns=None` returns every column (translations too); the default only the main results.
        """
        args: list[Any] = [run_id, *(columns or ())]
        column_filter = f" AND q.column IN ({marks(columns)})" if columns is not None else ""
        model_filter = ""
        if models:
            model_filter = f" AND q.model IN ({marks(models)})"
            args += list(models)
        sql = (
            "SELECT i.row_index, i.row_id, i.question, i.input, i.reasoning AS given_reasoning, i.reference, i.extra,"
            " q.model, q.sample_index, q.column, q.request_key, r.text, r.raw_text, r.reasoning, r.response,"
            " r.prompt_tokens, r.completion_tokens, r.finish_reason, r.latency_s, r.error, m.position"
            " FROM run_requests q JOIN run_inputs i ON i.run_id=q.run_id AND i.row_index=q.row_index"
            " LEFT JOIN results r ON r.key=q.request_key"
            " LEFT JOIN run_models m ON m.run_id=q.run_id AND m.label=q.model"
            f" WHERE q.run_id=?{column_filter}{model_filter}"
            " ORDER BY i.row_index, m.position, q.sample_index, q.column"
        )
        cursor = self.conn.cursor()
        cursor.arraysize = 1000
        cursor.execute(sql, args)
        while batch := cursor.fetchmany():
            for row in batch:
                yield RunRecord.from_row(row)

    def run_inputs(self, run_id: str) -> Iterator[dict[str, Any]]:
        cursor = self.conn.execute("SELECT * FROM run_inputs WHERE run_id=? ORDER BY row_index", (run_id,))
        while batch := cursor.fetchmany(1000):
            for row in batch:
                data = dict(row)
                data["extra"] = json.loads(data["extra"])
                yield data
