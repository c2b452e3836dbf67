"""`reasonry runs`: list runs and show one."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Column, Table

from reasonry.cli import app
from reasonry.cli.common import console, stdout
from reasonry.cli.options import Db, JsonOut
from reasonry.ledger import LEDGER_COLUMNS, format_cell, parse_prices, with_costs
from reasonry.store import Store

runs_app = typer.Typer(help="List and inspect runs stored in the database.", invoke_without_command=True,
                       no_args_is_help=False)
app.add_typer(runs_app, name="runs")


def _when(timestamp: float | None, *, short: bool = False) -> str:
    shape = "%m-%d %H:%M" if short else "%Y-%m-%d %H:%M:%S"
    return dt.datetime.fromtimestamp(timestamp).strftime(shape) if timestamp else ""


@runs_app.callback()
def runs_list(ctx: typer.Context, db: Db = "reasonry.db", limit: int = 30, as_json: JsonOut = False) -> None:
    """List recent runs (newest first)."""
    if ctx.invoked_subcommand is not None:
        return
    store = Store.existing(db)
    runs = store.list_runs(limit)
    if as_json:
        stdout.print_json(json.dumps(runs, ensure_ascii=False, default=str))
        return
    wide = stdout.width >= 110  # below that, models and source stay in `runs show` and --json
    cut = {"no_wrap": True, "overflow": "ellipsis"}
    table = Table(Column("id", no_wrap=True), Column("kind", **cut, min_width=8), Column("created", no_wrap=True),
                  Column("status", **cut, min_width=8),
                  *(Column(name, justify="right", no_wrap=True, min_width=len(name))
                    for name in ("rows", "gen", "cached", "failed")),
                  *((Column("models", **cut, max_width=30), Column("source", **cut, max_width=30)) if wide else ()),
                  box=None, pad_edge=False)
    for run in runs:
        s = run["summary"]
        where = (", ".join(m["label"] for m in run["models"]), Path(run["source"]).name if run["source"] else "")
        table.add_row(run["id"], run["kind"], _when(run["created_at"], short=True), run["status"],
                      str(s.get("rows", "")), str(s.get("generated", "")), str(s.get("cached", "")),
                      str(s.get("failed", "")), *(where if wide else ()))
    stdout.print(table)


@runs_app.command("show")
def runs_show(run: Annotated[str, typer.Argument(help="Run id, a unique prefix, or 'last'.")],
              db: Db = "reasonry.db", rows: int = 5, as_json: JsonOut = False,
              price: Annotated[list[str] | None, typer.Option("--price", metavar="MODEL=IN/OUT", help="USD per 1M prompt/completion tokens for a model label (or *), repeatable: adds the cost to the usage ledger.")] = None,
              ) -> None:
    """Show one run: its settings, summary, usage ledger and first rows."""
    prices = parse_prices(price)
    store = Store.existing(db)
    run_id = store.resolve_run(run)
    data = store.get_run(run_id)
    data["usage"] = with_costs(store.run_usage(run_id), prices)
    data["config"].pop("template_source", None)
    sample = []
    for record in store.run_records(run_id):
        if len(sample) >= rows:
            break
        sample.append({k: record[k] for k in ("row_id", "model", "question", "reasoning", "response", "error")})
    if as_json:
        stdout.print_json(json.dumps({**data, "rows": sample}, ensure_ascii=False, default=str))
        return
    console.print(f"[bold]{run_id}[/] {data['kind']} {data['status']} created {_when(data['created_at'])}")
    stdout.print_json(json.dumps({"config": data["config"], "summary": data["summary"]}, ensure_ascii=False))
    if data["usage"]:
        models = list(data["usage"])  # one column per model, one row per count: fits a narrow terminal
        ledger = Table("", *(Column(m, justify="right", overflow="fold") for m in models),
                       title="usage (what this run generated; cached = served from the cache)")
        for name in LEDGER_COLUMNS:
            ledger.add_row(name, *(format_cell(name, data["usage"][m][name]) for m in models))
        stdout.print(ledger)
    table = Table("id", "model", "question", "reasoning", "response", "error")
    for record in sample:
        table.add_row(*(str(record[k] or "")[:200] for k in ("row_id", "model", "question", "reasoning", "response", "error")))
    stdout.print(table)
