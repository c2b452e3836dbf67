"""Read-only queries behind the Runs and Debates pages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reasonry.store import Store
from reasonry.tasks.check import load_flags


def list_runs(store: Store, page: int, per_page: int = 25, kind: str | None = None) -> tuple[list[dict], int]:
    runs = store.list_runs(per_page, offset=(page - 1) * per_page, kind=kind)
    for data in runs:
        data["rows"] = store.count_inputs(data["id"])
    return runs, store.count_runs(kind)


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
    inputs, total = store.input_page(run_id, shown, text, per_page, (page - 1) * per_page)
    result = RunPage(run=run, models=shown, total=total)
    if not inputs:
        return result
    cells = store.result_cells(run_id, [r["row_index"] for r in inputs], shown)
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
    return store.list_debates()


def debate_tree(store: Store, run_id: str, limit: int = 5000) -> tuple[list[dict[str, Any]], int]:
    """Root nodes with nested `children`, and the number of nodes."""
    nodes = {r["id"]: {**r, "children": []} for r in store.debate_page_nodes(run_id, limit)}
    roots = []
    for node in nodes.values():
        parent = nodes.get(node["parent_id"]) if node["parent_id"] is not None else None
        (parent["children"] if parent else roots).append(node)
    return roots, len(nodes)
