"""Debate nodes in memory and in the `debate_nodes` table (idempotent writes, so reruns add no duplicates)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from reasonry.store import NODE_FIELDS as _FIELDS
from reasonry.store import Store

_KIND_LETTER = {"root": "t", "answer": "a", "question": "q", "rebuttal": "r"}


@dataclass(eq=False)
class Node:
    kind: str
    party: str
    round: int
    position: int
    parent: Node | None = None
    model: str | None = None
    request_key: str | None = None
    reasoning: str | None = None
    text: str | None = None
    raw_text: str | None = None
    error: str | None = None
    score: float | None = None
    expanded: bool = False
    id: int | None = None
    children: list[Node] = field(default_factory=list)

    @property
    def path(self) -> str:
        """A stable name from the root: 't0/a0/q3/a0' (root of topic 0, its answer, question 3, answer)."""
        own = f"{_KIND_LETTER.get(self.kind, self.kind)}{self.position}"
        return own if self.parent is None else f"{self.parent.path}/{own}"

    @property
    def topic(self) -> Node:
        node = self
        while node.parent is not None:
            node = node.parent
        return node

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.walk()

    def values(self) -> tuple[Any, ...]:
        return tuple(int(self.expanded) if name == "expanded" else getattr(self, name) for name in _FIELDS)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "path": self.path, "kind": self.kind, "party": self.party, "round": self.round,
            "position": self.position, "model": self.model, "text": self.text, "reasoning": self.reasoning,
            "raw_text": self.raw_text, "error": self.error, "score": self.score, "expanded": self.expanded,
            "request_key": self.request_key,
        }


class NodeWriter:
    """Writes nodes of one run: a node found by (parent, kind, position) is updated, never inserted twice."""

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.known: dict[tuple[int | None, str, int], tuple[int, tuple[Any, ...]]] = {}
        self.saved: set[int] = set()
        for row in store.node_rows(run_id):
            self.known[(row["parent_id"], row["kind"], row["position"])] = (
                row["id"], tuple(row[name] for name in _FIELDS))

    def save(self, nodes: Iterable[Node]) -> None:
        """Insert new nodes and update changed ones, parents before children, in one transaction."""
        with self.store.transaction():
            for node in nodes:
                parent_id = node.parent.id if node.parent is not None else None
                slot = (parent_id, node.kind, node.position)
                values = node.values()
                known = self.known.get(slot)
                changed = values if known is None or known[1] != values else None
                [node.id] = self.store.save_nodes(self.run_id, [(slot, known[0] if known else None, changed)])
                self.known[slot] = (node.id, values)
                self.saved.add(node.id)

    def prune(self) -> int:
        """Delete this run's stored nodes that this pass did not save (children first); returns how many.

        A rerun that retries a failed request can grow a different tree: nodes of the earlier tree that the
        finished pass no longer has would otherwise stay, and the stored tree would exceed --max-nodes.
        """
        parents = {row["id"]: row["parent_id"] for row in self.store.node_rows(self.run_id)}
        stale = [node_id for node_id in parents if node_id not in self.saved]
        if not stale:
            return 0

        def depth(node_id: int) -> int:
            level, seen = 0, set()
            while (node_id := parents.get(node_id)) is not None and node_id not in seen:
                seen.add(node_id)
                level += 1
            return level

        stale.sort(key=depth, reverse=True)
        self.store.delete_nodes(stale)
        gone = set(stale)
        self.known = {slot: entry for slot, entry in self.known.items() if entry[0] not in gone}
        return len(stale)


def load_tree(store: Store, run_id: str) -> list[Node]:
    """The run's trees as linked Nodes, roots in topic order, children in creation order."""
    rows = store.node_rows(run_id)
    nodes: dict[int, Node] = {}
    roots: list[Node] = []
    for row in rows:
        node = Node(kind=row["kind"], party=row["party"], round=row["round"], position=row["position"],
                    model=row["model"], request_key=row["request_key"], reasoning=row["reasoning"], text=row["text"],
                    raw_text=row["raw_text"], error=row["error"], score=row["score"], expanded=bool(row["expanded"]),
                    id=row["id"])
        nodes[node.id] = node
        parent = nodes.get(row["parent_id"]) if row["parent_id"] is not None else None
        if parent is None:
            roots.append(node)
        else:
            node.parent = parent
            parent.children.append(node)
    roots.sort(key=lambda root: root.position)
    return roots
