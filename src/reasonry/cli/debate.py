"""`reasonry debate`: grow debate trees (`reasonry debate QUESTIONS …`), `debate show RUN`, `debate export RUN`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.text import Text
from rich.tree import Tree
from typer.core import TyperGroup

from reasonry.cli import app
from reasonry.cli.common import console, finish, make_reporter, stdout
from reasonry.cli.flags import EngineFlags, model_flags
from reasonry.cli.options import Db, JsonOut
from reasonry.config import ExecutorOptions, SamplingParams
from reasonry.debate import (
    DebateConfig,
    load_tree,
    parse_moves,
    parse_policy,
    read_topics,
    run_debate,
    single_topic,
)
from reasonry.debate.export import export_run
from reasonry.debate.tree import Node
from reasonry.engines.registry import open_engine
from reasonry.errors import ConfigError, InputError
from reasonry.prompts.library import role_text
from reasonry.store import Store


class _DefaultRun(TyperGroup):
    """`reasonry debate ARGS` runs `reasonry debate run ARGS` unless ARGS start with a subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


debate_app = typer.Typer(
    cls=_DefaultRun, no_args_is_help=True,
    help="Debate (BONSAI): party A answers, party B asks questions and rebuts, for R rounds; a tree per topic. "
         "`reasonry debate QUESTIONS …` is short for `reasonry debate run QUESTIONS …` (see `debate run --help`).",
)
app.add_typer(debate_app, name="debate")

Out = Annotated[Path | None, typer.Option("--out", "-o", help="SFT rows: .jsonl .json .csv .parquet .xlsx.")]
OutTree = Annotated[Path | None, typer.Option("--out-tree", help="The whole tree as nested JSON (.json).")]


def _system(role: str | None, system: str | None) -> str:
    return role_text(role, system) if role or system else ""


@debate_app.command("run")
@model_flags(sampling={"max_new_tokens": 512}, executor=True)
def debate_run(
    input_path: Annotated[Path | None, typer.Argument(metavar="[QUESTIONS]", help="Topics file (.json .jsonl .csv .tsv .xlsx .parquet, datasets folder).")] = None,
    question: Annotated[str | None, typer.Option(help="One question instead of a file.")] = None,
    answer: Annotated[str | None, typer.Option(help="With --question: its answer (party A's position); else A answers first.")] = None,
    model_a: Annotated[str | None, typer.Option("--model-a", help="Party A (answers): KIND:MODEL[+ADAPTER][@URL].")] = None,
    model_b: Annotated[str | None, typer.Option("--model-b", help="Party B (questions, rebuttals); default: model A.")] = None,
    judge: Annotated[str | None, typer.Option(help="Judge for --select judge:K; default: model A.")] = None,
    role_a: Annotated[str | None, typer.Option("--role-a", help="Party A's system role.")] = None,
    system_a: Annotated[str | None, typer.Option("--system-a", help="Party A's system text.")] = None,
    role_b: Annotated[str | None, typer.Option("--role-b", help="Party B's system role.")] = None,
    system_b: Annotated[str | None, typer.Option("--system-b", help="Party B's system text.")] = None,
    rounds: Annotated[int, typer.Option(help="Rounds of challenge and answer after the first answer.")] = 1,
    breadth: Annotated[int, typer.Option(help="Questions/rebuttals asked for per move per answer.")] = 5,
    moves: Annotated[str, typer.Option(help="Comma list: questions, rebuttals.")] = "questions,rebuttals",
    select: Annotated[str, typer.Option(help="Challenges answered per answer: all, random:K, judge:K.")] = "all",
    max_nodes: Annotated[int, typer.Option("--max-nodes", help="Most nodes per topic's tree.")] = 500,
    language: Annotated[str, typer.Option(help="Language the challenges are asked in.")] = "English",
    questions_template: Annotated[str, typer.Option("--questions-template", help="Built-in or .j2 for questions.")] = "fbq",
    rebuttal_template: Annotated[str, typer.Option("--rebuttal-template", help="Built-in or .j2 for rebuttals.")] = "rebuttal",
    answer_template: Annotated[str, typer.Option("--answer-template", help="Built-in or .j2 for answers.")] = "debate-answer",
    judge_template: Annotated[str, typer.Option("--judge-template", help="Built-in or .j2 for judge scores.")] = "judge",
    require_question: Annotated[bool, typer.Option("--require-question/--no-require-question", help="Drop question items without '?'.")] = True,
    question_col: Annotated[str | None, typer.Option("--question-col", help="Question column (default question, else instruction).")] = None,
    answer_col: Annotated[str | None, typer.Option("--answer-col", help="Answer column (default answer when present).")] = None,
    id_col: Annotated[str | None, typer.Option("--id-col", help="Id column (default seq).")] = None,
    input_col: Annotated[str | None, typer.Option("--input-col", help="Context column for the first answer (default input).")] = None,
    sheet: Annotated[str | None, typer.Option(help="xlsx sheet name or 0-based index; datasets split.")] = None,
    encoding: Annotated[str | None, typer.Option(help="CSV/TSV encoding (default: detected).")] = None,
    judge_max_new_tokens: Annotated[int, typer.Option("--judge-max-new-tokens", help="Token limit of judge replies.")] = 64,
    db: Db = "reasonry.db", out: Out = None, out_tree: OutTree = None,
    refresh: Annotated[bool, typer.Option("--refresh", help="Regenerate even what is stored.")] = False,
    as_json: JsonOut = False,
    *, params: SamplingParams, engine: EngineFlags, executor: ExecutorOptions,
) -> None:
    """Grow a debate tree per topic; rerunning the same command on the same --db resumes it."""
    if model_a is None:
        raise ConfigError("--model-a is required (party A, e.g. hf:./qwen-ft)")
    if (input_path is None) == (question is None):
        raise InputError("give a topics file or --question TEXT (one of them)")
    specs = {"a": engine.spec(model_a), "b": engine.spec(model_b) if model_b else None,
             "judge": engine.spec(judge) if judge else None}
    config = DebateConfig(
        model_a=specs["a"], model_b=specs["b"], judge=specs["judge"],
        rounds=rounds, breadth=breadth, moves=parse_moves(moves), policy=parse_policy(select), seed=params.seed,
        max_nodes=max_nodes, language=language, system_a=_system(role_a, system_a), system_b=_system(role_b, system_b),
        questions_template=questions_template, rebuttal_template=rebuttal_template, answer_template=answer_template,
        judge_template=judge_template, require_question=require_question,
        params=params, judge_max_new_tokens=judge_max_new_tokens, refresh=refresh,
        engine_options=engine.options([spec for spec in specs.values() if spec is not None]),
    )
    config.check()
    if input_path is not None:
        sheet_value: str | int | None = int(sheet) if sheet is not None and sheet.isdigit() else sheet
        topics = read_topics(input_path, question_col=question_col, answer_col=answer_col, id_col=id_col,
                             input_col=input_col, encoding=encoding, sheet=sheet_value)
    else:
        topics = single_topic(question or "", answer)
    with make_reporter(as_json) as reporter:
        summary = run_debate(topics, config, db=db, out=out, out_tree=out_tree,
                             source=str(input_path) if input_path else None, reporter=reporter,
                             loader=lambda spec, **options: open_engine(spec, options, executor))
    if not as_json:
        console.print(f"nodes: {summary['nodes']} {summary['by_kind']}; node errors: {summary['node_errors']}; "
                      f"see the tree: reasonry debate show {summary['run_id']} --db {db}", highlight=False,
                      markup=False)
        if out is not None and not summary.get("exported_rows"):
            console.print(f"nothing written to {out}: no finished answers, questions or rebuttals to export",
                          highlight=False, markup=False)
    finish(summary, as_json)


def _label(node: Node, chars: int) -> Text:
    body = node.text if node.text is not None else (node.raw_text or "")
    snippet = " ".join(body.split())
    snippet = snippet[:chars] + ("…" if len(snippet) > chars else "")
    label = Text()
    label.append(f"{node.kind}", style="bold")
    if node.party:
        label.append(f" {node.party}", style="cyan")
    if node.model:
        label.append(f" {node.model}", style="dim")
    if node.score is not None:
        label.append(f" score {node.score:g}", style="magenta")
    label.append(": ")
    if node.error is not None:
        label.append(f"[{node.error}] ", style="red")
        label.append(snippet, style="red")
    else:
        label.append(snippet)
    return label


def _grow(tree: Tree, node: Node, chars: int, depth: int | None) -> None:
    for child in node.children:
        branch = tree.add(_label(child, chars))
        if depth is None or child.round < depth or child.kind != "answer":
            _grow(branch, child, chars, depth)


def render_tree(roots: list[Node], run_id: str, *, chars: int = 100, depth: int | None = None) -> Tree:
    top = Tree(Text(f"debate {run_id}", style="bold"))
    for root in roots:
        _grow(top.add(_label(root, chars)), root, chars, depth)
    return top


def resolve_debate_run(store: Store, run: str) -> str:
    """The id of a debate run (id, unique prefix or 'last'); a run of another kind is an InputError."""
    run_id = store.resolve_run(run, kind="debate" if run in ("last", "latest") else None)
    kind = store.get_run(run_id)["kind"]
    if kind != "debate":
        raise InputError(f"run {run_id} is a {kind} run, not a debate run")
    return run_id


@debate_app.command("show")
def debate_show(
    run: Annotated[str, typer.Argument(help="Debate run id, a unique prefix, or 'last'.")],
    db: Db = "reasonry.db",
    chars: Annotated[int, typer.Option(help="Characters of each node's text shown.")] = 100,
    rounds: Annotated[int | None, typer.Option(help="Show only this many rounds.")] = None,
    topic: Annotated[int | None, typer.Option(help="Show only this topic (0-based row index).")] = None,
) -> None:
    """Print a debate run's trees: kind, party, model, score and the start of each node (errors in red)."""
    store = Store.existing(db)
    run_id = resolve_debate_run(store, run)
    roots = [root for root in load_tree(store, run_id) if topic is None or root.position == topic]
    stdout.print(render_tree(roots, run_id, chars=chars, depth=rounds))


@debate_app.command("export")
def debate_export(
    run: Annotated[str, typer.Argument(help="Debate run id, a unique prefix, or 'last'.")],
    db: Db = "reasonry.db", out: Out = None, out_tree: OutTree = None,
    kinds: Annotated[str, typer.Option("--kinds", help="SFT rows to write, comma-separated: answers (party A), questions and rebuttals (party B's lists).")] = "answers,questions,rebuttals",
) -> None:
    """Write a debate run as SFT rows (--out) and/or nested tree JSON (--out-tree)."""
    if out is None and out_tree is None:
        raise InputError("give --out and/or --out-tree")
    store = Store.existing(db)
    run_id = resolve_debate_run(store, run)
    written: dict[str, Any] = export_run(store, run_id, out=out, out_tree=out_tree, kinds=kinds.split(","))
    if not any(written.values()):
        raise InputError(f"debate {run_id}: no finished {kinds} to export; nothing written")
    for what, count in written.items():
        console.print(f"{count} {what} written", highlight=False)
