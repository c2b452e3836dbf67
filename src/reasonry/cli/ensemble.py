"""`reasonry ensemble` and `reasonry translate`: follow-up tasks on a finished run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from reasonry.cli import app
from reasonry.cli.common import finish, make_reporter
from reasonry.cli.flags import EngineFlags, model_flags
from reasonry.cli.options import Db, JsonOut
from reasonry.config import ExecutorOptions, ModelSpec, SamplingParams
from reasonry.tasks.ensemble import FollowUpConfig, ensemble, parse_spec
from reasonry.tasks.execute import Reporter
from reasonry.tasks.translate import translate

RunId = Annotated[str, typer.Argument(metavar="RUN_ID", help="Run id, a unique prefix of it, or 'last'.")]
Out = Annotated[Path | None, typer.Option("--out", "-o", help="Write the whole run: .xlsx .jsonl .json .csv .parquet.")]
Chat = Annotated[bool, typer.Option("--chat", help="Send the prompt as a user message (chat models).")]
Refresh = Annotated[bool, typer.Option("--refresh", help="Regenerate even what is stored.")]


def _follow_up(model: str, flag: str, chat: bool, refresh: bool, as_json: bool, params: SamplingParams,
               engine: EngineFlags, executor: ExecutorOptions,
               task: Callable[[ModelSpec, FollowUpConfig, Reporter], dict[str, Any]]) -> None:
    """Read the model flag, run the task with its config and a progress reporter, print its summary."""
    spec = parse_spec(model, flag, engine.base_url)
    config = FollowUpConfig(params=params, chat=chat, refresh=refresh, engine_options=engine.options([spec]),
                            executor=executor)
    with make_reporter(as_json) as reporter:
        summary = task(spec, config, reporter)
    finish(summary, as_json)


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
    _follow_up(aggregator, "--aggregator", chat, refresh, as_json, params, engine, executor,
               lambda spec, config, reporter: ensemble(run_id, spec, template=template, out=out, db=db,
                                                       config=config, reporter=reporter))


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
    _follow_up(model, "--model", chat, refresh, as_json, params, engine, executor,
               lambda spec, config, reporter: translate(run_id, to, spec, field=field, template=template, out=out,
                                                        db=db, config=config, reporter=reporter))
