"""`reasonry review export|import`: the Excel review round trip (tasks/review.py)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from reasonry.cli import app
from reasonry.cli.common import console, stdout
from reasonry.cli.flags import EngineFlags, model_flags
from reasonry.cli.options import Db, JsonOut
from reasonry.cli.steer import Chat, Role, System, Template
from reasonry.config import SamplingParams
from reasonry.store import Store

review_app = typer.Typer(no_args_is_help=True, help="Review a run in Excel: edit reasonings, give verdicts, import.")
app.add_typer(review_app, name="review")


@review_app.command("export")
def export_command(
    run: Annotated[str, typer.Argument(help="The run (id, prefix or 'last').")],
    out: Annotated[str, typer.Option("--out", "-o", help="The workbook to write (.xlsx).")] = "review.xlsx",
    model: Annotated[list[str] | None, typer.Option("--model", help="Only this model's results (repeatable).")] = None,
    db: Db = "reasonry.db", as_json: JsonOut = False,
) -> None:
    """Write a review workbook: locked question/reasoning/response/flags, editable edited_reasoning/verdict/note."""
    from reasonry.tasks.review import export_review

    store = Store.existing(db)
    try:
        summary = export_review(store, run, out, models=model)
    finally:
        store.close()
    if as_json:
        stdout.print_json(json.dumps(summary, ensure_ascii=False))
    else:
        console.print(f"wrote {summary['rows']} rows of run {summary['run_id']} to {summary['out']}: fill in "
                      "verdict (accept / reject / edit), edited_reasoning and note, then `reasonry review import`",
                      highlight=False, soft_wrap=True)


@review_app.command("import")
@model_flags()
def import_command(
    workbook: Annotated[str, typer.Argument(help="The reviewed .xlsx (columns in any order).")],
    sft: Annotated[str | None, typer.Option("--sft", help="Write accepted rows here as SFT records (.jsonl).")] = None,
    dpo: Annotated[str | None, typer.Option("--dpo", help="Write edited rows here as DPO pairs (.jsonl).")] = None,
    regenerate: Annotated[str | None, typer.Option(
        "--regenerate", help="KIND:MODEL to write new responses from the edited reasonings.")] = None,
    chat: Chat = False, template: Template = "alpaca", role: Role = None, system: System = None,
    db: Db = "reasonry.db", as_json: JsonOut = False,
    *, params: SamplingParams, engine: EngineFlags,
) -> None:
    """Record a reviewed workbook as steering versions (accepted ones become training data)."""
    from reasonry.tasks.review import import_review
    from reasonry.tasks.review import read_review as _check  # fail on a bad workbook before loading a model
    from reasonry.tasks.steer_formats import steer_format

    _check(workbook)
    fmt = steer_format(template, chat=chat, role=role, system=system)
    store = Store.existing(db)
    try:
        if regenerate:
            from reasonry.engines.registry import load_engine

            spec = engine.spec(regenerate)
            with load_engine(spec, **engine.options([spec])) as loaded:
                summary = import_review(store, workbook, engine=loaded, fmt=fmt, label=spec.label, sft=sft, dpo=dpo,
                                        params=params)
        else:
            summary = import_review(store, workbook, sft=sft, dpo=dpo)
    finally:
        store.close()
    if as_json:
        stdout.print_json(json.dumps(summary, ensure_ascii=False))
        return
    parts = [f"{summary.get(v, 0)} {v}" for v in ("accept", "edit", "reject")]
    again = f"{summary['already imported']} already imported, kept; " if summary.get("already imported") else ""
    console.print(f"imported {summary['reviewed']} reviewed rows ({', '.join(parts)}); {again}"
                  f"{summary.get('regenerated', 0)} responses regenerated", highlight=False)
    for name in ("sft", "dpo"):
        if name in summary:
            console.print(f"{name}: {summary[name]['records']} records → {summary[name]['out']}", highlight=False)
