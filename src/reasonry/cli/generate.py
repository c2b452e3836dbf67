"""`reasonry generate` and `reasonry templates`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reasonry.cli import app
from reasonry.cli.common import RichReporter, print_summary, stdout
from reasonry.cli.options import (
    ApiKeyEnv,
    BaseUrl,
    Concurrency,
    Db,
    Device,
    Dtype,
    JsonOut,
    MaxNewTokens,
    Models,
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
from reasonry.config import parse_model_spec
from reasonry.prompts.library import BUILTIN_TEMPLATES, builtin_source
from reasonry.prompts.roles import ROLES
from reasonry.tasks.generate import GenerateConfig, generate


@app.command("generate")
def generate_command(
    input_path: Annotated[Path, typer.Argument(metavar="QUESTIONS", help=".json .jsonl .csv .tsv .xlsx .parquet or a datasets folder.")],
    model: Models,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output file: .xlsx .jsonl .json .csv .parquet.")] = None,
    template: Annotated[str, typer.Option(help=f"Built-in ({', '.join(BUILTIN_TEMPLATES)}) or a .j2 file.")] = "phi2",
    role: Annotated[str | None, typer.Option(help=f"System role: {', '.join(ROLES)}.")] = None,
    system: Annotated[str | None, typer.Option(help="System text instead of a role.")] = None,
    chat: Annotated[bool, typer.Option("--chat", help="Render through the tokenizer's chat template (special mode prefills <think>).")] = False,
    temperature: Temperature = 0.3, top_p: TopP = 0.9, top_k: TopK = 50, repetition_penalty: RepetitionPenalty = 1.1,
    max_new_tokens: MaxNewTokens = 256, seed: Seed = 0, stop: Stop = None,
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
    device: Device = None, dtype: Dtype = "auto",
    load_in_4bit: Annotated[bool, typer.Option("--load-in-4bit", help="hf: 4-bit weights (bitsandbytes, CUDA).")] = False,
    load_in_8bit: Annotated[bool, typer.Option("--load-in-8bit", help="hf: 8-bit weights (bitsandbytes, CUDA).")] = False,
    merge_adapter: Annotated[bool, typer.Option("--merge-adapter", help="hf: merge the LoRA adapter into the weights.")] = False,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="hf: prompts per batch (default 512 GPU, 16 CPU).")] = None,
    batching: Annotated[str, typer.Option(help="hf: auto/static (own loop), graphs (static cache + CUDA graphs: fastest on GPU, no early-stop compaction), cb (transformers generate_batch).")] = "auto",
    base_url: BaseUrl = None, api_key_env: ApiKeyEnv = None, concurrency: Concurrency = 64, rpm: Rpm = None,
    tpm: Tpm = None, timeout: Timeout = 120.0,
    tensor_parallel_size: Annotated[int | None, typer.Option("--tensor-parallel-size", help="vllm: GPUs per model (tensor parallel).")] = None,
    executor: Annotated[str, typer.Option(help="local (this process) or ray (engine replicas on a Ray cluster; reasonry[ray]).")] = "local",
    ray_address: Annotated[str | None, typer.Option("--ray-address", help="ray: cluster to join (default RAY_ADDRESS, else a local cluster).")] = None,
    replicas: Annotated[int, typer.Option(help="ray: engine replicas (actors), each loading the model once.")] = 1,
    gpus_per_replica: Annotated[float, typer.Option("--gpus-per-replica", help="ray: GPUs each replica reserves.")] = 0,
    reasoning_budget: Annotated[str | None, typer.Option("--reasoning-budget", help="Budget sweep, e.g. 64,128,256: one "
                                                         "more column per budget, the reasoning cut at N tokens.")] = None,
    as_json: JsonOut = False,
) -> None:
    """Generate reasoning (and responses) for every question with every model; cached and resumable."""
    from reasonry.tasks.budget_sweep import parse_budgets

    specs = [parse_model_spec(m, base_url=base_url) for m in model]
    config = GenerateConfig(
        template=template, role=role, system=system, chat=chat, samples=samples, refresh=refresh, language=language,
        params=sampling(temperature, top_p, top_k, repetition_penalty, max_new_tokens, seed, stop),
        engine_options=engine_options(
            device=device, dtype=dtype, load_in_4bit=load_in_4bit, load_in_8bit=load_in_8bit,
            merge_adapter=merge_adapter, batch_size=batch_size, batching=batching, api_key_env=api_key_env,
            concurrency=concurrency, rpm=rpm, tpm=tpm, timeout=timeout, tensor_parallel_size=tensor_parallel_size),
        executor=executor, ray_address=ray_address, replicas=replicas, gpus_per_replica=gpus_per_replica,
        reasoning_budgets=parse_budgets(reasoning_budget) if reasoning_budget else (),
    )
    sheet_value: str | int | None = int(sheet) if sheet is not None and sheet.isdigit() else sheet
    summary = generate(
        input_path, specs, out=out, db=db, config=config, reporter=RichReporter(enabled=not as_json),
        encoding=encoding, sheet=sheet_value, id_col=id_col, question_col=question_col, input_col=input_col,
        reasoning_col=reasoning_col, reference_col=reference_col,
    )
    print_summary(summary, as_json)


@app.command("templates")
def templates_command(name: Annotated[str | None, typer.Argument(help="Show this template's text.")] = None) -> None:
    """List the built-in templates and roles, or show one template."""
    if name:
        if name in ROLES:
            stdout.print(ROLES[name], markup=False, highlight=False)
            return
        if name not in BUILTIN_TEMPLATES:
            from reasonry.errors import ConfigError

            raise ConfigError(f"no built-in template {name!r}; choose one of {', '.join(BUILTIN_TEMPLATES)}")
        stdout.print(builtin_source(name), markup=False, highlight=False, end="")
        return
    for key, (produces, description) in BUILTIN_TEMPLATES.items():
        stdout.print(f"[bold]{key}[/] (model writes: {produces}) — {description}", highlight=False)
    stdout.print("roles (--role): " + ", ".join(ROLES), highlight=False)

