"""`reasonry ensemble` and `reasonry translate`: follow-up tasks on a finished run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from reasonry.cli import app
from reasonry.cli.common import RichReporter, print_summary
from reasonry.cli.options import (
    ApiKeyEnv,
    BaseUrl,
    Concurrency,
    Db,
    Device,
    Dtype,
    JsonOut,
    RepetitionPenalty,
    Rpm,
    Seed,
    Stop,
    Temperature,
    Timeout,
    TopK,
    TopP,
    Tpm,
    engine_options,
    sampling,
)
from reasonry.tasks.ensemble import FollowUpConfig, ensemble, parse_spec
from reasonry.tasks.translate import translate

RunId = Annotated[str, typer.Argument(metavar="RUN_ID", help="Run id, a unique prefix of it, or 'last'.")]
Out = Annotated[Path | None, typer.Option("--out", "-o", help="Write the whole run: .xlsx .jsonl .json .csv .parquet.")]
Chat = Annotated[bool, typer.Option("--chat", help="Send the prompt as a user message (chat models).")]
Refresh = Annotated[bool, typer.Option("--refresh", help="Regenerate even what is stored.")]
MaxNewTokens = Annotated[int, typer.Option("--max-new-tokens", help="Most tokens to generate per request.")]


def _config(chat: bool, refresh: bool, temperature: float, top_p: float, top_k: int, repetition_penalty: float,
            max_new_tokens: int, seed: int, stop: list[str] | None, **options: Any) -> FollowUpConfig:
    return FollowUpConfig(
        params=sampling(temperature, top_p, top_k, repetition_penalty, max_new_tokens, seed, stop),
        chat=chat, refresh=refresh, engine_options=engine_options(**options),
    )


@app.command("ensemble")
def ensemble_command(
    run_id: RunId,
    aggregator: Annotated[str, typer.Option("--aggregator", "-a", help="Model that merges the reasonings, e.g. "
                                            "openai:qwen@http://localhost:8000/v1 or hf:./model.")],
    template: Annotated[str, typer.Option(help="Built-in 'ensemble' or a .j2 file (variables: question, input, "
                                          "candidates (number, model, sample, reasoning), n).")] = "ensemble",
    out: Out = None, db: Db = "reasonry.db", chat: Chat = False, refresh: Refresh = False,
    temperature: Temperature = 0.3, top_p: TopP = 0.9, top_k: TopK = 50, repetition_penalty: RepetitionPenalty = 1.1,
    max_new_tokens: MaxNewTokens = 512, seed: Seed = 0, stop: Stop = None,
    device: Device = None, dtype: Dtype = "auto",
    base_url: BaseUrl = None, api_key_env: ApiKeyEnv = None, concurrency: Concurrency = 64, rpm: Rpm = None,
    tpm: Tpm = None, timeout: Timeout = 120.0, as_json: JsonOut = False,
) -> None:
    """Merge every row's reasonings from the run's models into one (model `ensemble` in the same run)."""
    config = _config(chat, refresh, temperature, top_p, top_k, repetition_penalty, max_new_tokens, seed, stop,
                     device=device, dtype=dtype, api_key_env=api_key_env, concurrency=concurrency, rpm=rpm,
                     tpm=tpm, timeout=timeout)
    summary = ensemble(run_id, parse_spec(aggregator, "--aggregator", base_url), template=template, out=out, db=db,
                       config=config, reporter=RichReporter(enabled=not as_json))
    print_summary(summary, as_json)


@app.command("translate")
def translate_command(
    run_id: RunId,
    to: Annotated[str, typer.Option("--to", help="Target language: a code (ja, en, zh, ko, fr…) or a name.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Translating model, e.g. openai:qwen@http://localhost:8000/v1 or hf:./model.")],
    field: Annotated[str, typer.Option(help="What to translate: reasoning or response.")] = "reasoning",
    template: Annotated[str, typer.Option(help="Built-in 'translate' or a .j2 file (variables: system, text, "
                                          "language, field, question, input).")] = "translate",
    out: Out = None, db: Db = "reasonry.db", chat: Chat = False, refresh: Refresh = False,
    temperature: Temperature = 0.3, top_p: TopP = 0.9, top_k: TopK = 50, repetition_penalty: RepetitionPenalty = 1.1,
    max_new_tokens: MaxNewTokens = 512, seed: Seed = 0, stop: Stop = None,
    device: Device = None, dtype: Dtype = "auto",
    base_url: BaseUrl = None, api_key_env: ApiKeyEnv = None, concurrency: Concurrency = 64, rpm: Rpm = None,
    tpm: Tpm = None, timeout: Timeout = 120.0, as_json: JsonOut = False,
) -> None:
    """Translate each model's reasoning (or response) of a run; adds columns such as reasoning_ja."""
    config = _config(chat, refresh, temperature, top_p, top_k, repetition_penalty, max_new_tokens, seed, stop,
                     device=device, dtype=dtype, api_key_env=api_key_env, concurrency=concurrency, rpm=rpm,
                     tpm=tpm, timeout=timeout)
    summary = translate(run_id, to, parse_spec(model, "--model", base_url), field=field, template=template, out=out,
                        db=db, config=config, reporter=RichReporter(enabled=not as_json))
    print_summary(summary, as_json)
