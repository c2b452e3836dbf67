"""Debate trees: exact node counts per policy and bound, export, show, errors, and a real tiny-model run."""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from reasonry.config import ModelSpec, SamplingParams, parse_model_spec
from reasonry.debate import DebateConfig, expected_nodes, load_tree, parse_policy, run_debate, single_topic
from reasonry.debate.export import SFT_COLUMNS
from reasonry.debate.parse import parse_score
from reasonry.engines.base import Engine, Request, Result
from reasonry.store import Store

SPEC = parse_model_spec("hf:script-double")


class ScriptEngine(Engine):
    """Engine double for the parse-success path: every output is a well-formed answer, list and score at once.

    'Score: S' (S from the request key) reads as a judge score; the text before '### Response:' is the
    reasoning of answers and rebuttals; after it come 8 'PARAGRAPH: …?' items for questions and rebuttals.
    """

    calls: list[str] = []

    def __init__(self, spec: ModelSpec, **_: object) -> None:
        self.spec = spec

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        for request in requests:
            ScriptEngine.calls.append(request.key)
            score = int(request.key[:8], 16) % 10 + 1
            items = "\n".join(f"PARAGRAPH: Point {i} ({request.key[:6]}) rests on an assumption; is it true?"
                              for i in range(1, 9))
            text = f"Score: {score}\nThe answer hides assumptions.\n### Response:\n{items}"
            yield Result(key=request.key, text=text, raw_text=text, completion_tokens=8)


def script_loader(spec: ModelSpec, **options: object) -> Engine:
    return ScriptEngine(spec)


def debate(tmp_path: Path, *, topics: int = 1, db: str = "d.db", **settings: object) -> tuple[dict, Store]:
    config = DebateConfig(model_a=SPEC, params=SamplingParams(max_new_tokens=8), **settings)  # type: ignore[arg-type]
    rows = single_topic("Why did sales drop?", "Because prices rose.")
    for index in range(1, topics):
        rows += [r.__class__(index=index, id=str(index + 1), question=f"Topic {index}?", input="", reasoning=None,
                             reference=None) for r in rows[:1]]
    store = Store(tmp_path / db)
    summary = run_debate(rows, config, store=store, loader=script_loader)
    return summary, store


def tree_sizes(store: Store, run_id: str) -> list[int]:
    return [sum(1 for _ in root.walk()) for root in load_tree(store, run_id)]


@pytest.mark.parametrize(
    ("breadth", "moves", "rounds", "select", "full"),
    [
        (2, ("questions", "rebuttals"), 2, "all", 2 + (4 + 4) + (16 + 16)),
        (3, ("questions",), 2, "all", 2 + (3 + 3) + (9 + 9)),
        (3, ("questions", "rebuttals"), 3, "random:2", 2 + (6 + 2) + (12 + 4) + (24 + 8)),
        (2, ("questions", "rebuttals"), 3, "judge:1", 2 + 3 * (4 + 1)),
        (2, ("rebuttals",), 2, "random:5", 2 + (2 + 2) + (4 + 4)),
    ],
)
def test_node_counts_match_formula(tmp_path: Path, breadth: int, moves: tuple[str, ...], rounds: int, select: str,
                                   full: int) -> None:
    policy = parse_policy(select)
    assert expected_nodes(breadth, len(moves), rounds, policy, 10_000) == full
    summary, store = debate(tmp_path, topics=2, breadth=breadth, moves=moves, rounds=rounds, policy=policy)
    assert tree_sizes(store, summary["run_id"]) == [full, full]
    assert summary["nodes"] == 2 * full and summary["node_errors"] == 0
    count = store.conn.execute("SELECT COUNT(*) FROM debate_nodes WHERE run_id=?", (summary["run_id"],)).fetchone()[0]
    assert count == 2 * full


@pytest.mark.parametrize("max_nodes", [2, 3, 6, 7, 9, 41, 42, 500])
def test_max_nodes_caps_each_tree_exactly(tmp_path: Path, max_nodes: int) -> None:
    ScriptEngine.calls = []
    summary, store = debate(tmp_path, topics=2, breadth=2, rounds=2, max_nodes=max_nodes)
    expected = expected_nodes(2, 2, 2, parse_policy("all"), max_nodes)
    assert expected == min(max_nodes, 42)
    assert tree_sizes(store, summary["run_id"]) == [expected, expected]
    answers = [n for root in load_tree(store, summary["run_id"]) for n in root.walk() if n.kind == "answer"]
    assert len(ScriptEngine.calls) <= 2 * expected  # no request is made for nodes past the cap
    assert all(a.parent is not None for a in answers)


def test_judge_answers_the_top_scored_challenges(tmp_path: Path) -> None:
    summary, store = debate(tmp_path, breadth=3, rounds=2, policy=parse_policy("judge:2"))
    checked = 0
    for node in load_tree(store, summary["run_id"])[0].walk():
        challenges = [c for c in node.children if c.kind in ("question", "rebuttal")]
        if not challenges:
            continue
        assert all(c.score is not None and 1 <= c.score <= 10 for c in challenges)
        ranked = sorted(range(len(challenges)), key=lambda i: (-(challenges[i].score or 0), i))[:2]
        answered = [i for i, c in enumerate(challenges) if c.children]
        assert sorted(ranked) == answered
        assert all(challenges[i].expanded for i in answered)
        checked += 1
    assert checked == 1 + 2


def test_random_selection_is_seeded(tmp_path: Path) -> None:
    def answered(seed: int, db: str) -> list[str]:
        summary, store = debate(tmp_path, db=db, breadth=4, rounds=2, policy=parse_policy("random:2"), seed=seed)
        return [n.path for n in load_tree(store, summary["run_id"])[0].walk() if n.kind == "answer"]

    first = answered(0, "a.db")
    assert answered(0, "b.db") == first
    assert len({tuple(answered(seed, f"s{seed}.db")) for seed in range(1, 6)} | {tuple(first)}) > 1


def test_rerun_is_cached_and_adds_no_nodes(tmp_path: Path) -> None:
    first, store = debate(tmp_path, breadth=2, rounds=2)
    ScriptEngine.calls = []
    again, _ = debate(tmp_path, breadth=2, rounds=2)
    assert again["run_id"] == first["run_id"]
    assert ScriptEngine.calls == [] and again["generated"] == 0 and again["cached"] == first["requests"]
    count = store.conn.execute("SELECT COUNT(*) FROM debate_nodes").fetchone()[0]
    assert count == first["nodes"] == 42


def test_export_rows_and_tree_json(tmp_path: Path) -> None:
    out, tree_out = tmp_path / "debate.jsonl", tmp_path / "tree.json"
    config = DebateConfig(model_a=SPEC, breadth=2, rounds=2, params=SamplingParams(max_new_tokens=8))
    topics = single_topic("Why did sales drop?")  # no answer: party A answers first
    summary = run_debate(topics, config, db=tmp_path / "e.db", out=out, out_tree=tree_out, loader=script_loader)
    everything = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    rows = [row for row in everything if row["move"] == "answers"]
    assert len(rows) == summary["by_kind"]["answer"] == 1 + 4 + 16
    for row in rows:
        assert list(row) == SFT_COLUMNS
        assert row["instruction"].strip() and row["response"].strip() and row["reasoning"]
    first = next(row for row in rows if row["kind"] == "topic")
    assert first["instruction"] == "Why did sales drop?" and first["input"] == ""
    assert {row["kind"] for row in rows} == {"topic", "question", "rebuttal"}
    assert all(row["input"] for row in rows if row["kind"] != "topic")

    # party B's lists: one row per generation (each answer got a questions list and a rebuttals list)
    moves = [row for row in everything if row["move"] != "answers"]
    generated_answers = 1 + 4  # the answers of rounds 0 and 1 were challenged
    assert sorted({row["move"] for row in moves}) == ["questions", "rebuttals"]
    assert len(moves) == 2 * generated_answers
    for row in moves:
        assert row["party"] == "B" and row["instruction"].strip() and row["input"] == ""
        assert row["response"].startswith("PARAGRAPH: ") and row["response"].count("PARAGRAPH: ") == 2
    rebuttal = next(row for row in moves if row["move"] == "rebuttals")
    assert rebuttal["reasoning"]
    import datasets

    loaded = datasets.load_dataset("json", data_files=str(out), split="train")
    assert loaded.num_rows == len(everything) and "reasoning" in loaded.column_names

    trees = json.loads(tree_out.read_text(encoding="utf-8"))
    assert len(trees) == 1 and trees[0]["kind"] == "root" and trees[0]["topic_id"] == "1"
    allowed = {"root": {"answer"}, "answer": {"question", "rebuttal"}, "question": {"answer"}, "rebuttal": {"answer"}}

    def walk(node: dict) -> int:
        for child in node["children"]:
            assert child["kind"] in allowed[node["kind"]]
            assert child["path"].startswith(node["path"] + "/")
        return 1 + sum(walk(child) for child in node["children"])

    assert walk(trees[0]) == summary["nodes"] == 42


def run_cli(args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    from reasonry.cli import main

    monkeypatch.setattr(sys, "argv", ["reasonry", *args])
    try:
        main()
    except SystemExit as exit_info:
        return int(exit_info.code or 0)
    return 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--answer-col", "nope"], "no column 'nope' (--answer-col)"),
        (["--question-col", "missing"], "no column 'missing'"),
        (["--moves", "questions,insults"], "unknown move 'insults'"),
        (["--select", "random:x"], "--select 'random:x'"),
        (["--select", "best:3"], "--select 'best:3'"),
        (["--rounds", "0"], "--rounds must be >= 1"),
        (["--breadth", "0"], "--breadth must be >= 1"),
        (["--max-nodes", "1"], "--max-nodes must be >= 2"),
        (["--out-tree", "tree.jsonl"], "give a .json file name"),
    ],
)
def test_cli_errors_are_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    topics = tmp_path / "topics.json"
    topics.write_text(json.dumps([{"question": "Why?", "answer": "Because."}]), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    code = run_cli(["debate", str(topics), "--model-a", "hf:./none", "--db", str(tmp_path / "x.db"), *args],
                   monkeypatch)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_cli_needs_a_topic_source(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["debate", "--model-a", "hf:./none"], monkeypatch) == 2
    assert "--question" in capsys.readouterr().err


def test_parse_score_is_tolerant() -> None:
    assert parse_score(" 7. It digs deep.") == 7
    assert parse_score("**Score:** 9/10") == 9
    assert parse_score("I would give it 8 out of 10") == 8
    assert parse_score("Depth 3, novelty 5") == 3
    assert parse_score("Score: 42") is None and parse_score("no number") is None and parse_score("") is None


def _write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_real_tiny_model_keeps_failed_outputs_and_goes_on(tiny_model: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Built-in rebuttal template on a noise model: no '### Rebuttals:' → error nodes with raw text and
    reasoning; the questions (a plain user template) parse and are answered, so round 2 still happens."""
    questions = _write(tmp_path / "q.j2", "Ask {{ n }} questions about: {{ str_output_aff }}\n")
    answers = _write(tmp_path / "a.j2", "{{ instruction }}\n{{ input }}\n### Response:\n")
    db = tmp_path / "real.db"
    args = ["debate", "--question", "Why do apples fall?", "--answer", "Because of gravity.",
            "--model-a", f"hf:{tiny_model}", "--rounds", "2", "--breadth", "2", "--max-new-tokens", "24",
            "--questions-template", questions, "--no-require-question", "--answer-template", answers,
            "--db", str(db), "--out", str(tmp_path / "rows.jsonl"), "--json"]
    assert run_cli(args, monkeypatch) == 0
    summary = json.loads(capsys.readouterr().out)
    store = Store(db)
    nodes = [n for root in load_tree(store, summary["run_id"]) for n in root.walk()]
    rebuttals = [n for n in nodes if n.kind == "rebuttal"]
    assert rebuttals and all(n.error and n.raw_text and n.text is None and not n.children for n in rebuttals)
    assert any(n.reasoning for n in rebuttals)
    assert any(n.kind == "answer" and n.round == 2 and n.text for n in nodes)
    assert summary["node_errors"] == sum(n.error is not None for n in nodes) > 0
    assert store.get_run(summary["run_id"])["status"] == "done"

    assert run_cli(["debate", "show", summary["run_id"][:12], "--db", str(db), "--chars", "40"], monkeypatch) == 0
    shown = capsys.readouterr().out
    assert "root" in shown and "Why do apples fall?" in shown and "no '### Rebuttals:' section" in shown
    assert run_cli(["debate", "export", "last", "--db", str(db), "--out-tree", str(tmp_path / "t.json")],
                   monkeypatch) == 0
    assert json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))[0]["children"]
    with sqlite3.connect(db) as conn:
        keys = conn.execute("SELECT COUNT(*), COUNT(DISTINCT parent_id || kind || position) FROM debate_nodes").fetchone()
    assert keys[0] == keys[1] + 1  # only the root has no parent


def test_party_b_through_transformers_serve(served: str, tiny_model: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    questions = _write(tmp_path / "q.j2", "Ask {{ n }} questions about: {{ str_output_aff }}\n")
    answers = _write(tmp_path / "a.j2", "{{ instruction }}\n{{ input }}\n### Response:\n")
    db = tmp_path / "mixed.db"
    args = ["debate", "--question", "Why do apples fall?", "--answer", "Because of gravity.",
            "--model-a", f"hf:{tiny_model}", "--model-b", f"openai:{tiny_model}@{served}", "--moves", "questions",
            "--breadth", "2", "--max-new-tokens", "8", "--questions-template", questions, "--no-require-question",
            "--answer-template", answers, "--concurrency", "4", "--timeout", "60", "--db", str(db), "--json"]
    assert run_cli(args, monkeypatch) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["failed"] == 0
    with sqlite3.connect(db) as conn:
        engines = dict(conn.execute(
            "SELECT n.kind, r.engine FROM debate_nodes n JOIN requests r ON r.key=n.request_key").fetchall())
    assert engines == {"question": "openai", "answer": "hf"}


class FlakyEngine(ScriptEngine):
    """Fails the n-th request it sees (HTTP 503) while `failing` is on; a rerun then retries it."""

    failing = True
    seen = 0

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        for request in requests:
            FlakyEngine.seen += 1
            if FlakyEngine.failing and FlakyEngine.seen == 2:
                yield Result(key=request.key, error="HTTP 503", finish_reason="error")
            else:
                yield from super().generate([request])


def test_rerun_after_a_failed_request_prunes_stale_nodes(tmp_path: Path) -> None:
    config = DebateConfig(model_a=SPEC, params=SamplingParams(max_new_tokens=8), breadth=2, rounds=2, max_nodes=9)
    store = Store(tmp_path / "f.db")
    FlakyEngine.failing, FlakyEngine.seen = True, 0
    sizes = []
    for failing in (True, False):
        FlakyEngine.failing = failing
        summary = run_debate(single_topic("Why did sales drop?"), config, store=store,
                             loader=lambda spec, **_: FlakyEngine(spec))
        stored = store.conn.execute("SELECT COUNT(*) FROM debate_nodes WHERE run_id=?",
                                    (summary["run_id"],)).fetchone()[0]
        assert stored == summary["nodes"] == sum(tree_sizes(store, summary["run_id"])) <= 9
        sizes.append(stored)
    assert FlakyEngine.seen > 2  # the rerun retried the failed request


class BrokenEngine(ScriptEngine):
    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        raise RuntimeError("engine went away")
        yield


def test_failed_run_summary_counts_the_stored_nodes(tmp_path: Path) -> None:
    config = DebateConfig(model_a=SPEC, params=SamplingParams(max_new_tokens=8), breadth=2, rounds=1)
    store = Store(tmp_path / "b.db")
    with pytest.raises(RuntimeError, match="engine went away"):
        run_debate(single_topic("Why?", "Because."), config, store=store, loader=lambda spec, **_: BrokenEngine(spec))
    row = store.conn.execute("SELECT status, summary FROM runs WHERE kind='debate'").fetchone()
    summary = json.loads(row["summary"])
    assert row["status"] == "failed" and summary["topics"] == 1
    assert summary["nodes"] == store.conn.execute("SELECT COUNT(*) FROM debate_nodes").fetchone()[0] == 2


class RefusingEngine(ScriptEngine):
    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        for request in requests:
            yield Result(key=request.key, error="HTTP 503", finish_reason="error")


def test_a_debate_with_nothing_finished_leaves_an_existing_out_file_alone(tmp_path: Path) -> None:
    out = tmp_path / "rows.jsonl"
    out.write_text('{"keep": 1}\n', encoding="utf-8")
    config = DebateConfig(model_a=SPEC, params=SamplingParams(max_new_tokens=8), breadth=2, rounds=1)
    summary = run_debate(single_topic("Why?", "Because."), config, db=tmp_path / "n.db", out=out,
                         loader=lambda spec, **_: RefusingEngine(spec))
    assert summary["exported_rows"] == 0 and summary["failed"] > 0 and summary["output"] is None
    assert out.read_text(encoding="utf-8") == '{"keep": 1}\n'


@pytest.mark.parametrize("command", [["show"], ["export", "--out", "rows.jsonl"]])
def test_show_and_export_refuse_a_non_debate_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    store = Store(tmp_path / "g.db")
    run_id = store.create_run("generate", source=None, config={})
    store.close()
    monkeypatch.chdir(tmp_path)
    code = run_cli(["debate", command[0], run_id, "--db", str(tmp_path / "g.db"), *command[1:]], monkeypatch)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "not a debate run" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "rows.jsonl").exists()


def test_export_selects_party_b_moves_by_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`export --debate RUN --kinds questions` gives only B's question lists as SFT data; a bad kind is one line."""
    summary, store = debate(tmp_path, rounds=1, breadth=2)
    store.close()
    db = str(tmp_path / "d.db")
    out = tmp_path / "questions.jsonl"
    code = run_cli(["export", "--debate", summary["run_id"], "--kinds", "questions", "--format", "alpaca",
                    "--db", db, "--out", str(out)], monkeypatch)
    assert code == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 1 and rows[0]["output"].startswith("PARAGRAPH: ") and rows[0]["instruction"]
    capsys.readouterr()
    code = run_cli(["debate", "export", summary["run_id"], "--kinds", "answers,verdicts", "--db", db,
                    "--out", str(tmp_path / "x.jsonl")], monkeypatch)
    err = capsys.readouterr().err
    assert code == 2 and "--kinds" in err and "Traceback" not in err and not (tmp_path / "x.jsonl").exists()


def test_judged_challenges_export_as_dpo_pairs_that_train(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """--select judge:K scores every challenge; `export --debate --format dpo` pairs the best with the worst
    challenge of the same answer and kind, in the layout `train --method dpo` takes."""
    class Judged(ScriptEngine):
        """Judge prompts get 'Score: S' alone (S from the key), so siblings get different scores."""

        def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
            requests = list(requests)
            judged = {r.key for r in requests if "You are judging a debate" in (r.prompt or "")}
            for result in super().generate(requests):
                if result.key in judged:
                    result.text = result.raw_text = f"### Response:\nScore: {int(result.key[:8], 16) % 10 + 1}"
                yield result

    config = DebateConfig(model_a=SPEC, params=SamplingParams(max_new_tokens=8), breadth=3, rounds=1,
                          policy=parse_policy("judge:1"))
    store = Store(tmp_path / "d.db")
    summary = run_debate(single_topic("Why did sales drop?", "Because prices rose."), config, store=store,
                         loader=lambda spec, **_: Judged(spec))
    roots = load_tree(store, summary["run_id"])
    store.close()
    challenges = [n for root in roots for n in root.walk() if n.kind in ("question", "rebuttal") and n.text]
    assert challenges and all(n.score is not None for n in challenges)
    out = tmp_path / "pairs.jsonl"
    code = run_cli(["export", "--debate", summary["run_id"], "--format", "dpo", "--db", str(tmp_path / "d.db"),
                    "--out", str(out)], monkeypatch)
    assert code == 0, capsys.readouterr().err
    pairs = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    by_path = {n.path: n for n in challenges}
    groups = {(n.parent.path, n.kind) for n in challenges if len({c.score for c in n.parent.children
                                                                   if c.kind == n.kind}) > 1}
    assert len(pairs) == len(groups) > 0
    for pair in pairs:
        chosen, rejected = by_path[pair["chosen_id"]], by_path[pair["rejected_id"]]
        assert chosen.parent is rejected.parent and chosen.kind == rejected.kind
        siblings = [c.score for c in chosen.parent.children if c.kind == chosen.kind]
        assert chosen.score == max(siblings) and rejected.score == min(siblings) and chosen.score > rejected.score
        assert pair["prompt"] and chosen.text in pair["chosen"] and rejected.text in pair["rejected"]
        assert "Answer: " in pair["prompt"]

    from reasonry.train import load_records, prepare_dataset, resolve_format, resolve_method

    dataset = load_records(out)
    fmt = resolve_format(None, list(dataset.column_names), out)
    assert (fmt, resolve_method("auto", fmt, out)) == ("preference", "dpo")
    assert prepare_dataset(dataset, fmt)[0].column_names == ["prompt", "chosen", "rejected"]
