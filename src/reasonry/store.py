"""SQLite store: runs, requests, results, steering versions, debate nodes, quality flags.

One writer per process, WAL mode, small transactions: a killed process loses at most what was in flight.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonry.errors import ConfigError, InputError, db_timeout, is_locked
from reasonry.runstate import live_status, owner

MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY, kind TEXT NOT NULL, created_at REAL NOT NULL, finished_at REAL,
        status TEXT NOT NULL DEFAULT 'running', source TEXT, config TEXT NOT NULL DEFAULT '{}',
        summary TEXT NOT NULL DEFAULT '{}', parent_run TEXT
    );
    CREATE TABLE run_models (
        run_id TEXT NOT NULL, position INTEGER NOT NULL, label TEXT NOT NULL, spec TEXT NOT NULL,
        PRIMARY KEY (run_id, label)
    );
    CREATE TABLE run_inputs (
        run_id TEXT NOT NULL, row_index INTEGER NOT NULL, row_id TEXT NOT NULL, question TEXT NOT NULL,
        input TEXT NOT NULL, reasoning TEXT, reference TEXT, extra TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (run_id, row_index)
    );
    CREATE TABLE run_requests (
        run_id TEXT NOT NULL, row_index INTEGER NOT NULL, model TEXT NOT NULL, sample_index INTEGER NOT NULL,
        request_key TEXT NOT NULL, column TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (run_id, row_index, model, sample_index, column)
    );
    CREATE INDEX run_requests_key ON run_requests (request_key);
    CREATE TABLE requests (
        key TEXT PRIMARY KEY, engine TEXT NOT NULL, model TEXT NOT NULL, adapter TEXT, prompt TEXT,
        messages TEXT, prefill TEXT, params TEXT NOT NULL, sample_index INTEGER NOT NULL, produces TEXT,
        created_at REAL NOT NULL
    );
    CREATE TABLE results (
        key TEXT PRIMARY KEY, text TEXT, raw_text TEXT, reasoning TEXT, response TEXT,
        prompt_tokens INTEGER, completion_tokens INTEGER, finish_reason TEXT, latency_s REAL,
        error TEXT, attempts INTEGER NOT NULL DEFAULT 1, created_at REAL NOT NULL
    );
    CREATE TABLE flags (
        key TEXT NOT NULL, name TEXT NOT NULL, reason TEXT NOT NULL, span TEXT, start INTEGER, "end" INTEGER,
        PRIMARY KEY (key, name)
    );
    CREATE TABLE steer_versions (
        id INTEGER PRIMARY KEY AUTOINCREMENT, thread TEXT NOT NULL, parent_id INTEGER, created_at REAL NOT NULL,
        model TEXT NOT NULL, mode TEXT NOT NULL, question TEXT NOT NULL, input TEXT NOT NULL DEFAULT '',
        reasoning TEXT, response TEXT, raw_text TEXT, params TEXT NOT NULL DEFAULT '{}', seconds REAL,
        prompt_tokens INTEGER, completion_tokens INTEGER, edited INTEGER NOT NULL DEFAULT 0,
        accepted INTEGER NOT NULL DEFAULT 0, note TEXT
    );
    CREATE INDEX steer_versions_thread ON steer_versions (thread);
    CREATE TABLE debate_nodes (
        id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, parent_id INTEGER, round INTEGER NOT NULL,
        kind TEXT NOT NULL, party TEXT NOT NULL, model TEXT, position INTEGER NOT NULL DEFAULT 0,
        request_key TEXT, reasoning TEXT, text TEXT, raw_text TEXT, error TEXT, score REAL,
        expanded INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,
        UNIQUE (run_id, parent_id, kind, position)
    );
    CREATE INDEX debate_nodes_run ON debate_nodes (run_id, parent_id);
    """,
    # 2: which results the quality checks have seen (a result with no flags is clean only if it was checked)
    """
    CREATE TABLE checked (key TEXT PRIMARY KEY, at REAL NOT NULL);
    """,
]

RESULT_FIELDS = (
    "text", "raw_text", "reasoning", "response", "prompt_tokens", "completion_tokens",
    "finish_reason", "latency_s", "error",
)


@dataclass
class StoredResult:
    key: str
    text: str | None
    raw_text: str | None
    reasoning: str | None
    response: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str | None
    latency_s: float | None
    error: str | None


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


class Store:
    def __init__(self, path: str | Path = "reasonry.db") -> None:
        self.path = Path(path)
        if not self.path.parent.exists():
            raise InputError(f"--db {self.path}: folder '{self.path.parent}' does not exist; create it first")
        self.lock = threading.RLock()
        try:
            self.conn = sqlite3.connect(self.path, timeout=db_timeout(), isolation_level=None, check_same_thread=False)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            if is_locked(exc):
                raise
            raise InputError(f"--db {self.path}: not a reasonry database ({exc})") from None

    @classmethod
    def existing(cls, path: str | Path) -> Store:
        """Open a database that must already exist (commands that read runs must not create an empty one)."""
        if not Path(path).exists():
            raise InputError(f"--db {path}: no such database; give the --db that `reasonry generate` wrote")
        return cls(path)

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise ConfigError(f"--db {self.path}: made by a newer reasonry (schema {version}); upgrade reasonry")
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.transaction():
                for statement in _statements(script):
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version={number}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; nested use joins the outer one. Thread-safe through `lock`."""
        with self.lock:
            if self.conn.in_transaction:
                yield self.conn
                return
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()

    # -- runs -----------------------------------------------------------------
    def create_run(self, kind: str, *, source: str | None, config: dict[str, Any],
                   models: Sequence[tuple[str, str]] = (), parent_run: str | None = None) -> str:
        run_id = new_run_id()
        while self.conn.execute("SELECT 1 FROM runs WHERE id=?", (run_id,)).fetchone():
            run_id = new_run_id()
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO runs (id, kind, created_at, source, config, parent_run, summary) VALUES (?,?,?,?,?,?,?)",
                (run_id, kind, time.time(), source, json.dumps(config, ensure_ascii=False), parent_run,
                 json.dumps(owner())),
            )
            conn.executemany(
                "INSERT INTO run_models (run_id, position, label, spec) VALUES (?,?,?,?)",
                [(run_id, i, label, spec) for i, (label, spec) in enumerate(models)],
            )
        return run_id

    def add_run_model(self, run_id: str, label: str, spec: str) -> None:
        with self.transaction() as conn:
            position = conn.execute("SELECT COUNT(*) FROM run_models WHERE run_id=?", (run_id,)).fetchone()[0]
            conn.execute("INSERT OR IGNORE INTO run_models (run_id, position, label, spec) VALUES (?,?,?,?)",
                         (run_id, position, label, spec))

    def finish_run(self, run_id: str, status: str, summary: dict[str, Any]) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE runs SET status=?, finished_at=?, summary=? WHERE id=?",
                         (status, time.time(), json.dumps(summary, ensure_ascii=False), run_id))

    def update_run_config(self, run_id: str, **changes: Any) -> dict[str, Any]:
        with self.transaction() as conn:
            row = conn.execute("SELECT config FROM runs WHERE id=?", (run_id,)).fetchone()
            config = {**json.loads(row["config"]), **changes}
            conn.execute("UPDATE runs SET config=? WHERE id=?", (json.dumps(config, ensure_ascii=False), run_id))
        return config

    def resolve_run(self, ref: str, kind: str | None = None) -> str:
        """A run id from a full id, a unique prefix, or 'last'."""
        where, args = ("", []) if kind is None else (" WHERE kind=?", [kind])
        if ref in ("last", "latest"):
            row = self.conn.execute(f"SELECT id FROM runs{where} ORDER BY created_at DESC LIMIT 1", args).fetchone()
            if row is None:
                raise InputError(f"no runs in {self.path} yet")
            return str(row["id"])
        rows = self.conn.execute("SELECT id FROM runs WHERE id LIKE ? || '%'", (ref,)).fetchall()
        if len(rows) == 1:
            return str(rows[0]["id"])
        if not rows:
            raise InputError(f"run {ref!r} not found in {self.path}; `reasonry runs` lists them")
        raise InputError(f"run {ref!r} is ambiguous ({', '.join(r['id'] for r in rows[:5])}); give more of it")

    def get_run(self, run_id: str) -> dict[str, Any]:
        row = self.conn.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise InputError(f"run {run_id!r} not found in {self.path}")
        data = dict(row)
        data["config"] = json.loads(data["config"])
        data["summary"] = json.loads(data["summary"])
        data["status"] = live_status(data["status"], data["summary"])
        data["models"] = self.run_models(run_id)
        return data

    def list_runs(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM runs ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
        out = []
        for row in rows:
            data = dict(row)
            data["summary"] = json.loads(data["summary"])
            data["status"] = live_status(data["status"], data["summary"])
            data["config"] = json.loads(data["config"])
            data["models"] = self.run_models(data["id"])
            out.append(data)
        return out

    def run_models(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT label, spec FROM run_models WHERE run_id=? ORDER BY position", (run_id,))
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

    def done_keys(self, keys: Sequence[str]) -> set[str]:
        """Keys that already have a successful result."""
        done: set[str] = set()
        with self.lock:
            self._collect_done(keys, done)
        return done

    def _collect_done(self, keys: Sequence[str], done: set[str]) -> None:
        for start in range(0, len(keys), 900):
            chunk = keys[start:start + 900]
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                f"SELECT key FROM results WHERE error IS NULL AND key IN ({marks})", chunk)
            done.update(r[0] for r in rows)

    def put_results(self, items: Iterable[dict[str, Any]]) -> None:
        with self.transaction():
            now = time.time()
            self.conn.executemany(
                "INSERT INTO results (key, text, raw_text, reasoning, response, prompt_tokens, completion_tokens,"
                " finish_reason, latency_s, error, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT(key) DO UPDATE SET text=excluded.text, raw_text=excluded.raw_text,"
                " reasoning=excluded.reasoning, response=excluded.response, prompt_tokens=excluded.prompt_tokens,"
                " completion_tokens=excluded.completion_tokens, finish_reason=excluded.finish_reason,"
                " latency_s=excluded.latency_s, error=excluded.error, attempts=results.attempts+1,"
                " created_at=excluded.created_at",
                [tuple(item.get(f) for f in ("key", *RESULT_FIELDS)) + (now,) for item in items],
            )

    def get_result(self, key: str) -> StoredResult | None:
        row = self.conn.execute(f"SELECT key, {', '.join(RESULT_FIELDS)} FROM results WHERE key=?", (key,)).fetchone()
        return StoredResult(**dict(row)) if row else None

    def get_request(self, key: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM requests WHERE key=?", (key,)).fetchone()
        return dict(row) if row else None

    # -- reading a run back -----------------------------------------------------
    def run_records(self, run_id: str, *, models: Sequence[str] | None = None,
                    columns: Sequence[str] | None = ("",)) -> Iterator[dict[str, Any]]:
        """One dict per (row, model, sample, column) with the row's fields and the result, ordered by row.

        `columns=None` returns every column (translations too); the default only the main results.
        """
        model_filter = ""
        args: list[Any] = [run_id, *(columns or ())]
        column_filter = f" AND q.column IN ({','.join('?' * len(columns))})" if columns is not None else ""
        if models:
            model_filter = f" AND q.model IN ({','.join('?' * len(models))})"
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
                data = dict(row)
                data["extra"] = json.loads(data["extra"])
                yield data

    def run_inputs(self, run_id: str) -> Iterator[dict[str, Any]]:
        cursor = self.conn.execute("SELECT * FROM run_inputs WHERE run_id=? ORDER BY row_index", (run_id,))
        while batch := cursor.fetchmany(1000):
            for row in batch:
                data = dict(row)
                data["extra"] = json.loads(data["extra"])
                yield data

    def copy_inputs(self, src_run: str, dst_run: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO run_inputs SELECT ?, row_index, row_id, question, input, reasoning, reference,"
                " extra FROM run_inputs WHERE run_id=?", (dst_run, src_run))


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
