"""The schema as named migrations, applied in order; `PRAGMA user_version` counts the applied ones."""

from __future__ import annotations

MIGRATIONS: list[tuple[str, str]] = [
    ("initial schema", """
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
    """),
    # a result with no flags is clean only if the checks saw it
    ("checked results", """
    CREATE TABLE checked (key TEXT PRIMARY KEY, at REAL NOT NULL);
    """),
    # every attempt of a request, failed ones included: a failure is logged here and never replaces a success
    ("result attempts", """
    CREATE TABLE attempts (
        key TEXT NOT NULL, at REAL NOT NULL, error TEXT, finish_reason TEXT, latency_s REAL
    );
    CREATE INDEX attempts_key ON attempts (key);
    """),
    # what each run really generated per model (cached results are counted apart and never billed twice)
    ("usage ledger", """
    CREATE TABLE usage (
        run_id TEXT NOT NULL, model TEXT NOT NULL, requests INTEGER NOT NULL DEFAULT 0,
        failures INTEGER NOT NULL DEFAULT 0, retries INTEGER NOT NULL DEFAULT 0, cached INTEGER NOT NULL DEFAULT 0,
        prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,
        engine_seconds REAL NOT NULL DEFAULT 0, updated_at REAL NOT NULL,
        PRIMARY KEY (run_id, model)
    );
    """),
    # data hygiene: results `dedup` marked duplicate and `decontaminate` marked contaminated, and which run was
    # checked for which (zero marks then means clean, not unchecked)
    ("hygiene marks", """
    CREATE TABLE IF NOT EXISTS hygiene_marks (
        run_id TEXT NOT NULL, key TEXT NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL,
        PRIMARY KEY (run_id, key, kind)
    );
    CREATE TABLE IF NOT EXISTS hygiene_checks (
        run_id TEXT NOT NULL, kind TEXT NOT NULL, settings TEXT NOT NULL, checked_at REAL NOT NULL,
        PRIMARY KEY (run_id, kind)
    );
    """),
]


def statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
