"""Debate trees out: SFT rows (one per generated answer) and nested tree JSON, both written atomically."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reasonry.debate.tree import Node, load_tree
from reasonry.errors import InputError
from reasonry.io.writers import check_output_path, write_table
from reasonry.store import Store

SFT_COLUMNS = ["id", "run_id", "topic_id", "path", "round", "kind", "party", "model", "instruction", "input",
               "reasoning", "response", "score", "request_key"]
TREE_COLUMNS = ["topic_id", "id", "path", "kind", "party", "round", "position", "model", "text", "reasoning",
                "raw_text", "error", "score", "expanded", "request_key", "children"]


def check_tree_path(path: str | Path) -> Path:
    out = check_output_path(path)
    if out.suffix.lower() != ".json":
        raise InputError(f"--out-tree {path}: the tree is nested JSON; give a .json file name")
    return out


def topic_inputs(store: Store, run_id: str) -> dict[int, dict[str, Any]]:
    return {row["row_index"]: row for row in store.run_inputs(run_id)}


def sft_rows(run_id: str, roots: list[Node], inputs: dict[int, dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """instruction = the question or challenge, input = what it came from, reasoning, response = the answer.

    Only answers a model generated (with a response) become rows; given answers and failed ones do not.
    """
    for root in roots:
        topic = inputs.get(root.position, {})
        for node in root.walk():
            parent = node.parent
            if node.kind != "answer" or not node.text or node.request_key is None or parent is None:
                continue
            context = topic.get("input", "") if parent.kind == "root" else (parent.parent.text if parent.parent else "")
            yield {
                "id": node.id, "run_id": run_id, "topic_id": topic.get("row_id", str(root.position + 1)),
                "path": node.path, "round": node.round, "kind": "topic" if parent.kind == "root" else parent.kind,
                "party": node.party, "model": node.model, "instruction": parent.text, "input": context or "",
                "reasoning": node.reasoning, "response": node.text, "score": parent.score,
                "request_key": node.request_key,
            }


def tree_dict(node: Node) -> dict[str, Any]:
    data = node.to_dict()
    data["children"] = [tree_dict(child) for child in node.children]
    return data


def tree_records(roots: list[Node], inputs: dict[int, dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for root in roots:
        topic = inputs.get(root.position, {})
        yield {"topic_id": topic.get("row_id", str(root.position + 1)), **tree_dict(root)}


def export_run(store: Store, run_id: str, *, out: str | Path | None = None,
               out_tree: str | Path | None = None) -> dict[str, int]:
    """Write the SFT rows and/or the tree JSON of a run; returns how many rows/trees were written."""
    out_path = check_output_path(out) if out is not None else None
    tree_path = check_tree_path(out_tree) if out_tree is not None else None
    roots = load_tree(store, run_id)
    inputs = topic_inputs(store, run_id)
    written: dict[str, int] = {}
    if out_path is not None:
        written["rows"] = write_table(out_path, SFT_COLUMNS, sft_rows(run_id, roots, inputs),
                                      sheet_name="debate", wrap_columns=("instruction", "input", "reasoning", "response"))
    if tree_path is not None:
        written["trees"] = write_table(tree_path, TREE_COLUMNS, tree_records(roots, inputs))
    return written
