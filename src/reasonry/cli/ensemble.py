"""`reasonry ensemble` and `reasonry translate`: follow-up tasks on a finished run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reasonry.cli import app
from reasonry.cli.common import finish, make_reporter
from reasonry.cli.flags import EngineFlags, model_flags
from reasonry.cli.options import Db, JsonOut
from reasonry.config import ExecutorOptions, ModelSpec, SamplingParams
from reasonry.tasks.ensemble import FollowUpConfig, ensemble, parse_spec
from reasonry.tasks.translate import translate

RunId = Annotated[str, typer.Argument(metavar="RUN_ID", help="Run id, a unique prefix of it, or 'last'.")]
Out = Annotated[Path | None, typer.Option("--out", "-o", help="Write the whole run: .xlsx .jsonl .json .csv .parquet.")]
Chat = Annotated[bool, typer.Option("--chat", help="Send the prompt as a user message (chat models).")]
Refresh = Annotated[bool, typer.Option("--refresh", help="Regenerate even what is stored.")]


def _config(spec: ModelSpec, chat: bool, refresh: bool, params: SamplingParams, engine: EngineFlags,
            executor: ExecutorOptions) -> FollowUpConfig:
    return FollowUpConfig(params=params, chat=chat, refresh=refresh, engine_options=engine.options([spec]),
                          executor=executor)


@app.command("ensemble")
@model_flags(sampling={"max_new_tokens": 512}, executor=True)
def ensemble_command(
    run_id: RunId,
    aggregator: Annotated[str, typer.Option("--aggregator", "-a", help="Model that merges the reasonings, e.g. "
                                            "openai:qwen@http://localhost:8000/v1 or hf:./model.")],
    template: Annotated[str, typer.Option(help="Built-in 'ensemble' or a .j2 file (variables: question, input, "
                                          "candidates (number, model, sample, reasoning), n).")] = "ensemble",
    out: Out = None, db: Db = "reasonry.db", chat: Chat = False, refresh: Refresh = False, as_json: JsonOut = False,
    *, params: SamplingParams, engine: EngineFlags, executor: ExecutorOptions,
) -> None:
    """Merge every row's reasonings from the run's models into one (model `ensemble` in the same run)."""
    spec = parse_spec(aggregator, "--aggregator", engine.base_url)
    with make_reporter(as_json) as reporter:
        summary = ensemble(run_id, spec, template=template, out=out, db=db,
                           config=_config(spec, chat, refresh, params, engine, executor), reporter=reporter)
    finish(summary, as_json)


@app.command("translate")
@model_flags(sampling={"max_new_tokens": 512}, executor=True)
def translate_command(
    run_id: RunId,
    to: Annotated[str, typer.Option("--to", help="Target language: a code (ja, en, zh, ko, fr…) or a name.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Translating model, e.g. openai:qwen@http://localhost:8000/v1 or hf:./model.")],
    field: Annotated[str, typer.Option(help="What to translate: reasoning or response.")] = "reasoning",
    template: Annotated[str, typer.Option(help="Built-in 'translate' or a .j2 file (variables: system, text, "
                                          "language, field, question, input).")] = "translate",
    out: Out = None, db: Db = "reasonry.db", chat: Chat = False, refresh: Refresh = False, as_json: JsonOut = False,
    *, params: SamplingParams, engine: EngineFlags, executor: ExecutorOptions,
) -> None:
    """Translate each model's reasoning (or response) of a run; adds columns such as reasoning_ja."""
    spec = parse_spec(model, "--model", engine.base_url)
    with make_reporter(as_json) as reporter:
        summary = translate(run_id, to, spec, field=field, template=template, out=out, db=db,
                            config=_config(spec, chat, refresh, params, engine, executor), reporter=reporter)
    finish(summary, as_json)
