"""Debate (BONSAI): grow question/rebuttal/answer trees between two parties, store them, export them.

Python API::

    from reasonry.debate import DebateConfig, run_debate, read_topics
    config = DebateConfig(model_a=parse_model_spec("hf:./qwen-ft"), rounds=2, breadth=3)
    summary = run_debate(read_topics("topics.xlsx"), config, db="reasonry.db", out="debate.jsonl")

The run id is derived from the topics and every setting that shapes the tree (models, templates,
sampling, bounds, policy, seed), so running the same command on the same database resumes that run.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from reasonry.debate.config import (
    DebateConfig,
    Policy,
    expected_nodes,
    full_tree_size,
    parse_moves,
    parse_policy,
)
from reasonry.debate.export import check_tree_path, export_run
from reasonry.debate.runner import Debate, EngineLoader, Templates
from reasonry.debate.tree import Node, load_tree
from reasonry.engines.registry import load_engine
from reasonry.errors import InputError
from reasonry.io.readers import Row, open_rows
from reasonry.io.writers import check_output_path
from reasonry.store import Store
from reasonry.tasks.execute import Reporter
from reasonry.tasks.lifecycle import open_run

__all__ = ["DebateConfig", "Node", "Policy", "expected_nodes", "export_run", "full_tree_size", "load_tree",
           "parse_moves", "parse_policy", "read_topics", "run_debate", "single_topic"]


def read_topics(path: str | Path, *, question_col: str | None = None, answer_col: str | None = None,
                id_col: str | None = None, input_col: str | None = None, encoding: str | None = None,
                sheet: str | int | None = None) -> list[Row]:
    """Topics from a question file; the answer column (default 'answer' when present) goes to `Row.reference`."""
    options: dict[str, Any] = {"encoding": encoding, "sheet": sheet, "id_col": id_col, "question_col": question_col,
                               "input_col": input_col}
    source = open_rows(path, **options)
    if answer_col is not None and answer_col not in source.columns:
        raise InputError(f"{path}: no column '{answer_col}' (--answer-col); columns are: {', '.join(source.columns)}")
    column = answer_col or ("answer" if "answer" in source.columns and source.question_col != "answer" else None)
    if column is None:
        return [_without_reference(row) for row in source]
    return list(open_rows(path, **options, reference_col=column))


def _without_reference(row: Row) -> Row:
    row.reference = None
    return row


def single_topic(question: str, answer: str | None = None, input_text: str = "") -> list[Row]:
    if not question.strip():
        raise InputError("--question is empty")
    return [Row(index=0, id="1", question=question, input=input_text, reasoning=None, reference=answer or None)]


def run_id_for(topics: list[Row], config: DebateConfig, templates: dict[str, str]) -> str:
    """The same topics and settings give the same id: how a rerun finds the run to resume."""
    payload = {"topics": [[t.id, t.question, t.input, t.reference] for t in topics], "settings": _settings(config),
               "templates": templates}
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return "debate-" + hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


def _settings(config: DebateConfig) -> dict[str, Any]:
    data = asdict(config)
    for name in ("refresh", "engine_options"):
        data.pop(name)
    data.update(model_a=str(config.party_a.spec), model_b=str(config.party_b.spec),
                judge=str(config.judge_party.spec), policy=str(config.policy), moves=list(config.moves))
    return data


def _models(config: DebateConfig) -> list[tuple[str, str]]:
    return [(party.label, str(party.spec)) for party in (config.party_a, config.party_b, config.judge_party)
            if party.name != "judge" or config.policy.name == "judge"]


def run_debate(topics: list[Row], config: DebateConfig, *, db: str | Path = "reasonry.db", store: Store | None = None,
               out: str | Path | None = None, out_tree: str | Path | None = None, source: str | None = None,
               reporter: Reporter | None = None, loader: EngineLoader = load_engine) -> dict[str, Any]:
    """Grow (or resume) the debate trees of `topics`; returns the run summary."""
    config.check()
    if not topics:
        raise InputError("no topics to debate")
    out_path = check_output_path(out, inputs=[source]) if out is not None else None
    tree_path = check_tree_path(out_tree) if out_tree is not None else None
    own_store = store is None
    store = store or Store(db)
    loaded = Templates.load(config)
    templates = {name: t.source for name, t in vars(loaded).items()}
    run_id = run_id_for(topics, config, templates)
    debate = Debate(store, run_id, config, templates=loaded, loader=loader, reporter=reporter)
    roots: list[Node] = []
    try:
        with open_run(store, "debate", source=source, config={**_settings(config), "template_sources": templates},
                      models=_models(config), run_id=run_id) as run:
            store.add_inputs(run_id, topics)
            try:
                roots = debate.run(topics)
            finally:
                summary = run.summary = _summary(run_id, roots or debate.roots, debate, store.path)
    except BaseException:
        if own_store:
            store.close()
        raise
    written = export_run(store, run_id, out=out_path, out_tree=tree_path)
    summary.update(output=str(out_path) if out_path and written.get("rows") else None,
                   tree=str(tree_path) if tree_path and written.get("trees") else None, exported_rows=written.get("rows"))
    if own_store:
        store.close()
    return summary


def _summary(run_id: str, roots: list[Node], debate: Debate, db: Path) -> dict[str, Any]:
    nodes = [node for root in roots for node in root.walk() if node.id is not None]  # stored ones only
    roots = [root for root in roots if root.id is not None]
    counts = debate.counts
    return {
        "run_id": run_id, "rows": len(roots), "topics": len(roots), "nodes": len(nodes),
        "by_kind": dict(Counter(node.kind for node in nodes)), "node_errors": sum(node.error is not None for node in nodes),
        "requests": counts.requests, "generated": counts.generated, "cached": counts.cached, "failed": counts.failed,
        "completion_tokens": counts.completion_tokens, "seconds": round(counts.seconds, 3), "db": str(db),
        "errors": counts.errors,
    }
