"""Read-only queries behind the Runs and Debates pages."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from reasonry.store import Store
from reasonry.tasks.check import load_flags


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def list_runs(store: Store, page: int, per_page: int = 25, kind: str | None = None) -> tuple[list[dict], int]:
    where, args = ("WHERE kind=?", [kind]) if kind else ("", [])
    total = store.conn.execute(f"SELECT COUNT(*) FROM runs {where}", args).fetchone()[0]
    rows = store.conn.execute(f"SELECT * FROM runs {where} ORDER BY created_at DESC LIMIT ? OFFSET ?",
                              [*args, per_page, (page - 1) * per_page]).fetchall()
    runs = []
    for row in rows:
        data = dict(row)
        data["summary"] = json.loads(data["summary"] or "{}")
        data["models"] = store.run_models(data["id"])
        data["rows"] = store.conn.execute("SELECT COUNT(*) FROM run_inputs WHERE run_id=?", (data["id"],)).fetchone()[0]
        runs.append(data)
    return runs, total


@dataclass
class RunPage:
    run: dict[str, Any]
    models: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0


def run_rows(store: Store, run_id: str, *, models: list[str] | None, text: str, page: int,
             per_page: int = 20) -> RunPage:
    """One page of a run's input rows, each with its results per model (side by side) and quality flags."""
    run = store.get_run(run_id)
    all_models = [m["label"] for m in run["models"]]
    shown = [m for m in all_models if not models or m in models]
    marks = ",".join("?" * len(shown)) or "NULL"
    where = "i.run_id=?"
    args: list[Any] = [run_id]
    if text:
        pattern = _like(text)
        where += (" AND (i.question LIKE ? ESCAPE '\\' OR i.input LIKE ? ESCAPE '\\' OR EXISTS ("
                  "SELECT 1 FROM run_requests q JOIN results r ON r.key=q.request_key WHERE q.run_id=i.run_id"
                  f" AND q.row_index=i.row_index AND q.model IN ({marks}) AND (r.text LIKE ? ESCAPE '\\'"
                  " OR r.reasoning LIKE ? ESCAPE '\\' OR r.response LIKE ? ESCAPE '\\')))")
        args += [pattern, pattern, *shown, pattern, pattern, pattern]
    total = store.conn.execute(f"SELECT COUNT(*) FROM run_inputs i WHERE {where}", args).fetchone()[0]
    inputs = store.conn.execute(f"SELECT * FROM run_inputs i WHERE {where} ORDER BY i.row_index LIMIT ? OFFSET ?",
                                [*args, per_page, (page - 1) * per_page]).fetchall()
    result = RunPage(run=run, models=shown, total=total)
    if not inputs:
        return result
    indexes = [r["row_index"] for r in inputs]
    cells = store.conn.execute(
        "SELECT q.row_index, q.model, q.sample_index, q.request_key, r.reasoning, r.response, r.text, r.error,"
        " r.finish_reason, r.latency_s, r.completion_tokens FROM run_requests q"
        " LEFT JOIN results r ON r.key=q.request_key"
        f" WHERE q.run_id=? AND q.column='' AND q.row_index IN ({','.join('?' * len(indexes))})"
        f" AND q.model IN ({marks}) ORDER BY q.row_index, q.sample_index",
        [run_id, *indexes, *shown]).fetchall()
    keys = list({c["request_key"] for c in cells})
    flags = {key: [{"key": key, "name": f.name, "reason": f.reason} for f in found]
             for key, found in load_flags(store, keys).items()}  # rule flags only, not judge verdicts
    by_row: dict[int, dict[str, list[dict[str, Any]]]] = {}
    for cell in cells:
        data = dict(cell)
        data["flags"] = flags.get(cell["request_key"], [])
        by_row.setdefault(cell["row_index"], {}).setdefault(cell["model"], []).append(data)
    for row in inputs:
        data = dict(row)
        data["cells"] = {m: by_row.get(row["row_index"], {}).get(m, []) for m in shown}
        result.rows.append(data)
    return result


def list_debates(store: Store) -> list[dict[str, Any]]:
    rows = store.conn.execute(
        "SELECT d.run_id, COUNT(*) AS nodes, MAX(d.round) AS rounds, MIN(d.created_at) AS created_at,"
        " SUM(d.error IS NOT NULL) AS errors, r.status, r.source FROM debate_nodes d"
        " LEFT JOIN runs r ON r.id=d.run_id GROUP BY d.run_id ORDER BY created_at DESC LIMIT 500").fetchall()
    return [dict(r) for r in rows]


def debate_tree(store: Store, run_id: str, limit: int = 5000) -> tuple[list[dict[str, Any]], int]:
    """Root nodes with nested `children`, and the number of nodes."""
    rows = store.conn.execute(
        "SELECT id, parent_id, round, kind, party, model, position, reasoning, text, error, score"
        " FROM debate_nodes WHERE run_id=? ORDER BY round, position, id LIMIT ?", (run_id, limit)).fetchall()
    nodes = {r["id"]: {**dict(r), "children": []} for r in rows}
    roots = []
    for node in nodes.values():
        parent = nodes.get(node["parent_id"]) if node["parent_id"] is not None else None
        (parent["children"] if parent else roots).append(node)
    return roots, len(nodes)
