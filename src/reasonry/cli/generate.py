"""`reasonry generate` and `reasonry templates`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from reasonry.cli import app
from reasonry.cli.common import finish, make_reporter, print_prompt, stdout
from reasonry.cli.flags import EngineFlags, model_flags
from reasonry.cli.options import Db, JsonOut, Models
from reasonry.config import ExecutorOptions, SamplingParams
from reasonry.prompts.library import BUILTIN_TEMPLATES, builtin_source
from reasonry.prompts.roles import ROLES
from reasonry.tasks.generate import GenerateConfig, generate


@app.command("generate")
@model_flags(executor=True)
def generate_command(
    input_path: Annotated[Path, typer.Argument(metavar="QUESTIONS", help=".json .jsonl .csv .tsv .xlsx .parquet or a datasets folder.")],
    model: Models,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output file: .xlsx .jsonl .json .csv .parquet.")] = None,
    template: Annotated[str, typer.Option(help=f"Built-in ({', '.join(BUILTIN_TEMPLATES)}) or a .j2 file.")] = "phi2",
    role: Annotated[str | None, typer.Option(help=f"System role: {', '.join(ROLES)}.")] = None,
    system: Annotated[str | None, typer.Option(help="System text instead of a role.")] = None,
    chat: Annotated[bool, typer.Option("--chat", help="Render through the tokenizer's chat template (special mode prefills <think>).")] = False,
    samples: Annotated[int, typer.Option(help="Samples per prompt.")] = 1,
    db: Db = "reasonry.db",
    refresh: Annotated[bool, typer.Option("--refresh", help="Regenerate even what is stored.")] = False,
    encoding: Annotated[str | None, typer.Option(help="CSV/TSV encoding (default: detected; utf-8, utf-8-sig, cp932).")] = None,
    sheet: Annotated[str | None, typer.Option(help="xlsx sheet name or 0-based index; datasets split.")] = None,
    id_col: Annotated[str | None, typer.Option("--id-col", help="Id column (default seq, else the row number).")] = None,
    question_col: Annotated[str | None, typer.Option("--question-col", help="Question column (default question, else instruction).")] = None,
    input_col: Annotated[str | None, typer.Option("--input-col", help="Input/context column (default input).")] = None,
    reasoning_col: Annotated[str | None, typer.Option("--reasoning-col", help="Given-reasoning column for special mode (default reasoning).")] = None,
    reference_col: Annotated[str | None, typer.Option("--reference-col", help="Reference-answer column (default reference).")] = None,
    language: Annotated[str, typer.Option(help="Language named in templates that ask for one.")] = "English",
    show_prompt: Annotated[int | None, typer.Option("--show-prompt", metavar="ROW", help="Print the exact prompt of data row ROW (1 = first) for the first model, and stop.")] = None,
    reasoning_budget: Annotated[str | None, typer.Option("--reasoning-budget", help="Budget sweep, e.g. 64,128,256: one "
                                                         "more column per budget, the reasoning cut at N tokens.")] = None,
    as_json: JsonOut = False,
    *, params: SamplingParams, engine: EngineFlags, executor: ExecutorOptions,
) -> None:
    """Generate reasoning (and responses) for every question with every model; cached and resumable."""
    from reasonry.tasks.budget_sweep import parse_budgets

    specs = [engine.spec(m) for m in model]
    config = GenerateConfig(
        template=template, role=role, system=system, chat=chat, samples=samples, refresh=refresh, language=language,
        params=params, engine_options=engine.options(specs), executor=executor,
        reasoning_budgets=parse_budgets(reasoning_budget) if reasoning_budget else (),
    )
    sheet_value: str | int | None = int(sheet) if sheet is not None and sheet.isdigit() else sheet
    columns = dict(encoding=encoding, sheet=sheet_value, id_col=id_col, question_col=question_col,
                   input_col=input_col, reasoning_col=reasoning_col, reference_col=reference_col)
    if show_prompt is not None:
        print_prompt(input_path, specs[0], config, show_prompt, columns)
        return
    with make_reporter(as_json) as reporter:
        summary = generate(input_path, specs, out=out, db=db, config=config, reporter=reporter, **columns)
    finish(summary, as_json)


@app.command("templates")
def templates_command(name: Annotated[str | None, typer.Argument(help="Show this template's text.")] = None) -> None:
    """List the built-in templates and roles, or show one template."""
    if name:
        if name in ROLES:
            sys.stdout.write(ROLES[name] + "\n")
            return
        if name not in BUILTIN_TEMPLATES:
            from reasonry.errors import ConfigError

            raise ConfigError(f"no built-in template {name!r}; choose one of {', '.join(BUILTIN_TEMPLATES)}")
        sys.stdout.write(builtin_source(name))  # exactly the file: no wrapping, so `> my.j2` saves the real one
        return
    for key, (produces, description) in BUILTIN_TEMPLATES.items():
        stdout.print(f"[bold]{key}[/] (model writes: {produces}) — {description}", highlight=False)
    stdout.print("roles (--role): " + ", ".join(ROLES), highlight=False)

