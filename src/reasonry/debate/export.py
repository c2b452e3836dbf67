"""Debate trees out: SFT rows and nested tree JSON, both written atomically.

SFT rows come in three kinds (`--kinds`): `answers` (party A's answers: instruction = the question or challenge,
input = what it came from), and party B's moves, `questions` and `rebuttals` (instruction = the prompt B was given,
reasoning = B's reasoning, response = the `PARAGRAPH:` list it produced) — the question-to-question generator.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonry.debate.tree import Node, load_tree
from reasonry.errors import ConfigError, InputError
from reasonry.io.writers import check_output_path, write_table
from reasonry.store import Store

SFT_COLUMNS = ["id", "run_id", "topic_id", "path", "round", "move", "kind", "party", "model", "instruction",
               "input", "reasoning", "response", "score", "request_key"]
SFT_KINDS = ("answers", "questions", "rebuttals")
_MOVE_OF_KIND = {"question": "questions", "rebuttal": "rebuttals"}
TREE_COLUMNS = ["topic_id", "id", "path", "kind", "party", "round", "position", "model", "text", "reasoning",
                "raw_text", "error", "score", "expanded", "request_key", "children"]


def check_tree_path(path: str | Path) -> Path:
    out = check_output_path(path)
    if out.suffix.lower() != ".json":
        raise InputError(f"--out-tree {path}: the tree is nested JSON; give a .json file name")
    return out


def topic_inputs(store: Store, run_id: str) -> dict[int, dict[str, Any]]:
    return {row["row_index"]: row for row in store.run_inputs(run_id)}


def parse_kinds(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """`answers,questions,rebuttals` (any subset, comma-separated or a list); None means all three."""
    if value is None:
        return SFT_KINDS
    names = [k.strip() for k in (value.split(",") if isinstance(value, str) else value) if k.strip()]
    unknown = [k for k in names if k not in SFT_KINDS]
    if unknown or not names:
        raise ConfigError(f"--kinds {','.join(names) or repr(value)}: choose from {', '.join(SFT_KINDS)} "
                          "(comma-separated)")
    return tuple(k for k in SFT_KINDS if k in names)


def sft_rows(run_id: str, roots: list[Node], inputs: dict[int, dict[str, Any]], *,
             kinds: Iterable[str] = ("answers",), prompts: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """SFT rows of the chosen kinds, in tree order.

    answers: instruction = the question or challenge, input = what it came from, reasoning, response = the answer.
    questions / rebuttals: one row per party-B generation (the items of one list share a request), instruction =
    the prompt B was given (`prompts[request_key]`), reasoning = B's, response = the list as `PARAGRAPH:` lines.
    Only what a model generated and what parsed become rows; given answers and failed parses do not.
    """
    wanted = set(kinds)
    prompts = prompts or {}
    for root in roots:
        topic = inputs.get(root.position, {})
        topic_id = topic.get("row_id", str(root.position + 1))
        for node in root.walk():
            parent = node.parent
            if node.kind == "answer" and "answers" in wanted and node.text and node.request_key and parent:
                context = topic.get("input", "") if parent.kind == "root" else (
                    parent.parent.text if parent.parent else "")
                yield {
                    "id": node.id, "run_id": run_id, "topic_id": topic_id, "path": node.path, "round": node.round,
                    "move": "answers", "kind": "topic" if parent.kind == "root" else parent.kind,
                    "party": node.party, "model": node.model, "instruction": parent.text, "input": context or "",
                    "reasoning": node.reasoning, "response": node.text, "score": parent.score,
                    "request_key": node.request_key,
                }
            if node.kind == "answer" and wanted & {"questions", "rebuttals"}:
                yield from _move_rows(run_id, topic_id, node, wanted, prompts)


def _move_rows(run_id: str, topic_id: str, answer: Node, wanted: set[str],
               prompts: dict[str, str]) -> Iterator[dict[str, Any]]:
    """Party B's lists under one answer: one row per (kind, request)."""
    groups: dict[tuple[str, str], list[Node]] = {}
    for child in answer.children:
        move = _MOVE_OF_KIND.get(child.kind)
        if move in wanted and child.request_key and child.text and child.error is None:
            groups.setdefault((child.kind, child.request_key), []).append(child)
    for (kind, key), items in groups.items():
        if not prompts.get(key):  # the prompt B saw is unknown: no instruction to train on
            continue
        first = items[0]
        yield {
            "id": first.id, "run_id": run_id, "topic_id": topic_id, "path": f"{answer.path}/{kind}s",
            "round": first.round, "move": _MOVE_OF_KIND[kind], "kind": kind, "party": first.party,
            "model": first.model, "instruction": prompts[key], "input": "",
            "reasoning": first.reasoning, "response": "\n".join(f"PARAGRAPH: {n.text}" for n in items),
            "score": None, "request_key": key,
        }


CHALLENGE_TASKS = {
    "question": "Ask one fact-based question that digs toward the root cause behind this answer.",
    "rebuttal": "Write one rebuttal that challenges the weakest point of this answer.",
}


@dataclass
class ScoredPair:
    """The judge's best and worst of the scored siblings of one kind under one parent."""

    parent: Node
    kind: str
    chosen: Node
    rejected: Node

    @property
    def instruction(self) -> str:
        return CHALLENGE_TASKS.get(self.kind) or (self.parent.text or "")

    @property
    def input(self) -> str:
        """What the challenge is about: the question and the answer it challenges."""
        if self.kind not in CHALLENGE_TASKS:
            return ""
        question = self.parent.parent.text if self.parent.parent else ""
        return f"Question: {question}\nAnswer: {self.parent.text or ''}" if question else self.parent.text or ""


def scored_pairs(roots: list[Node]) -> Iterator[ScoredPair]:
    """Per node and child kind: the best-scored child vs the worst (`--select judge:K` scores every challenge).
    Groups whose scores are all equal give no pair."""
    for root in roots:
        for node in root.walk():
            groups: dict[str, list[Node]] = {}
            for child in node.children:
                if child.score is not None and child.text and child.error is None:
                    groups.setdefault(child.kind, []).append(child)
            for kind, items in groups.items():
                best = max(items, key=lambda n: (n.score, -n.position))
                worst = min(items, key=lambda n: (n.score, n.position))
                if best.score != worst.score:
                    yield ScoredPair(node, kind, best, worst)


def move_prompts(store: Store, roots: list[Node]) -> dict[str, str]:
    """The rendered prompt of every party-B request in the trees."""
    keys = {n.request_key for root in roots for n in root.walk() if n.kind in _MOVE_OF_KIND and n.request_key}
    return store.request_prompts(sorted(keys))


def tree_dict(node: Node) -> dict[str, Any]:
    data = node.to_dict()
    data["children"] = [tree_dict(child) for child in node.children]
    return data


def tree_records(roots: list[Node], inputs: dict[int, dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for root in roots:
        topic = inputs.get(root.position, {})
        yield {"topic_id": topic.get("row_id", str(root.position + 1)), **tree_dict(root)}


def export_run(store: Store, run_id: str, *, out: str | Path | None = None,
               out_tree: str | Path | None = None, kinds: Iterable[str] = SFT_KINDS) -> dict[str, int]:
    """Write the SFT rows (of `kinds`) and/or the tree JSON of a run; returns how many rows/trees were written."""
    kinds = parse_kinds(list(kinds))
    out_path = check_output_path(out) if out is not None else None
    tree_path = check_tree_path(out_tree) if out_tree is not None else None
    roots = load_tree(store, run_id)
    inputs = topic_inputs(store, run_id)
    written: dict[str, int] = {}
    if out_path is not None:  # nothing finished: an existing file is left as it is, not replaced by an empty one
        rows = list(sft_rows(run_id, roots, inputs, kinds=kinds, prompts=move_prompts(store, roots)))
        written["rows"] = write_table(out_path, SFT_COLUMNS, rows, sheet_name="debate",
                                      wrap_columns=("instruction", "input", "reasoning", "response")) if rows else 0
    if tree_path is not None:
        trees = list(tree_records(roots, inputs))
        written["trees"] = write_table(tree_path, TREE_COLUMNS, trees) if trees else 0
    return written
