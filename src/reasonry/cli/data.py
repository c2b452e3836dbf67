"""`reasonry check`, `reasonry report`, `reasonry export` and `reasonry train`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from reasonry.cli import app
from reasonry.cli.common import console, stdout
from reasonry.cli.options import Db, JsonOut
from reasonry.errors import InputError
from reasonry.export import FORMATS, ExportOptions, export_dataset
from reasonry.quality import FLAG_NAMES
from reasonry.store import Store
from reasonry.tasks.check import check_config, check_run, flagged_examples, records_with_flags
from reasonry.tasks.ensemble import parse_spec
from reasonry.tasks.judge import JudgeConfig
from reasonry.train import TrainConfig, train

RunRef = Annotated[str, typer.Argument(metavar="RUN_ID", help="Run id, a unique prefix, or 'last'.")]
ModelFilter = Annotated[list[str] | None, typer.Option("--model", "-m", help="Only this model label, repeatable.")]


def _print_json(data: Any) -> None:
    stdout.print_json(json.dumps(data, ensure_ascii=False, default=str))


# --------------------------------------------------------------------------------------------- check


def _settings(language: str | None, values: dict[str, Any], extra: list[str] | None) -> dict[str, Any]:
    settings = {k: v for k, v in values.items() if v is not None}
    if language:
        settings["expected_language"] = language
    for item in extra or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"--set {item!r}: expected NAME=VALUE (a CheckConfig field)")
        settings[name.strip().replace("-", "_")] = value.strip()
    return settings


def _summary_table(summary: dict[str, Any]) -> Table:
    names = [n for n in FLAG_NAMES if any(m["counts"].get(n) for m in summary["models"].values())] or list(FLAG_NAMES)
    table = Table("model", "n", "flagged", *names, title=f"quality of run {summary['run_id']}")
    for model, entry in summary["models"].items():
        cells = [f"{entry['counts'].get(n, 0)} ({100 * entry['rates'].get(n, 0):.0f}%)" for n in names]
        table.add_row(model, str(entry["n"]), f"{entry['flagged']} ({100 * entry['flagged_rate']:.0f}%)", *cells)
    return table


def _judge_table(judge: dict[str, Any]) -> Table:
    table = Table("model", "judged", "leakage: agree", "rule only", "judge only", "unclear", "supports response",
                  title="rule-based leakage flag vs judge")
    for model, entry in judge["models"].items():
        rate = f" ({100 * entry['agreement']:.0f}%)" if entry["agreement"] is not None else ""
        consistency = entry["consistency"]
        table.add_row(model, str(entry["judged"]), f"{entry['agree']}/{entry['compared']}{rate}",
                      str(entry["rule_only"]), str(entry["judge_only"]), str(entry["unclear"]),
                      f"yes {consistency['yes']}, no {consistency['no']}")
    return table


@app.command("check")
def check_command(
    run: RunRef,
    language: Annotated[str | None, typer.Option(help="Expected language of the reasoning: a code (en, ja) or a name (English).")] = None,
    model: ModelFilter = None,
    min_language_confidence: Annotated[float | None, typer.Option("--min-language-confidence", help="Flag a wrong language only above this probability (0.8).")] = None,
    min_chars: Annotated[int | None, typer.Option("--language-min-chars", help="Reasonings shorter than this are not language-checked (20).")] = None,
    repetition_ngram: Annotated[int | None, typer.Option("--repetition-ngram", help="Words per n-gram for repetition (4).")] = None,
    repetition_max_repeats: Annotated[int | None, typer.Option("--repetition-max-repeats", help="Repeats of an n-gram or block allowed (3).")] = None,
    length_z: Annotated[float | None, typer.Option("--length-z", help="Robust z-score beyond which a length is an outlier (3.0).")] = None,
    leakage_overlap: Annotated[float | None, typer.Option("--leakage-overlap", help="Share of a response sentence restated in the reasoning that counts as leakage (0.6).")] = None,
    settings: Annotated[list[str] | None, typer.Option("--set", help="Any CheckConfig field: NAME=VALUE, repeatable (e.g. leakage_small_number=20).")] = None,
    judge: Annotated[str | None, typer.Option("--judge", help="Also ask a model (KIND:MODEL, e.g. openai:qwen@http://localhost:8000/v1) whether each reasoning states the answer and supports the response.")] = None,
    judge_template: Annotated[str, typer.Option("--judge-template", help="Built-in or .j2 file for the judge prompt.")] = "check-judge",
    show: Annotated[int, typer.Option(help="Print this many flags with their reason and span.")] = 10,
    db: Db = "reasonry.db",
    as_json: JsonOut = False,
) -> None:
    """Quality-check every reasoning of a run; flags (with reason and span) are stored per result."""
    values = {"min_language_confidence": min_language_confidence, "min_chars": min_chars,
              "repetition_ngram": repetition_ngram, "repetition_max_repeats": repetition_max_repeats,
              "length_z": length_z, "leakage_overlap": leakage_overlap}
    config = check_config(_settings(language, values, settings))
    store = Store.existing(db)
    run_id = store.resolve_run(run, "generate")
    judge_config = JudgeConfig(parse_spec(judge, "--judge"), template=judge_template) if judge else None
    summary = check_run(store, run_id, config=config, models=model or None, judge=judge_config)
    examples = flagged_examples(store, run_id, limit=show)
    if as_json:
        _print_json({**summary, "examples": examples})
        return
    stdout.print(_summary_table(summary))
    console.print(f"{summary['checked']} results checked, {summary['flagged']} flagged, "
                  f"{summary['skipped']} skipped (failed or not generated)", highlight=False)
    if summary.get("judge"):
        stdout.print(_judge_table(summary["judge"]))
    for item in examples:
        span = f" — [italic]{escape(repr(item['span'][:120]))}[/]" if item.get("span") else ""
        sample = f" #{item['sample'] + 1}" if item["sample"] else ""
        where = escape(f"{item['model']} row {item['row_id']}{sample}: {item['reason']}")
        stdout.print(f"[yellow]{item['name']}[/] {where}{span}", highlight=False, markup=True)


# --------------------------------------------------------------------------------------------- report


@app.command("report")
def report_command(
    run: RunRef,
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")],
    title: Annotated[str | None, typer.Option(help="Page title (default: the run id).")] = None,
    model: ModelFilter = None,
    db: Db = "reasonry.db",
    price: Annotated[list[str] | None, typer.Option("--price", metavar="MODEL=IN/OUT", help="USD per 1M prompt/completion tokens for a model label (or *), repeatable: adds costs to the usage table.")] = None,
    as_json: JsonOut = False,
) -> None:
    """A self-contained HTML quality report of a run (checks the run first if it never was)."""
    from reasonry.ledger import parse_prices, with_costs
    from reasonry.report import render_report

    prices = parse_prices(price)
    if out.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"--out {out}: the report is a web page; give a .html file name")
    if not out.parent.exists():
        raise InputError(f"--out {out}: folder '{out.parent}' does not exist; create it first")
    store = Store.existing(db)
    run_id = store.resolve_run(run, "generate")
    records = records_with_flags(store, run_id, models=model or None)
    if not records:
        raise InputError(f"run {run_id}: no results yet; nothing to report")
    path = render_report(title or f"reasonry run {run_id}", records, out,
                         usage=with_costs(store.run_usage(run_id), prices))
    summary = {"run_id": run_id, "out": str(path), "records": len(records)}
    if as_json:
        _print_json(summary)
    else:
        console.print(f"wrote {path} ({len(records)} results)", highlight=False)


# --------------------------------------------------------------------------------------------- export


@app.command("export")
def export_command(
    run: Annotated[str | None, typer.Argument(metavar="[RUN_ID]", help="A generate run (id, prefix or 'last').")] = None,
    out: Annotated[str, typer.Option("--out", "-o", help="Data file: .jsonl .json .parquet (a dataset card README.md goes beside it), or a folder DIR/ ready for the Hub: data/train.jsonl + README.md card that datasets.load_dataset(DIR) reads.")] = "sft.jsonl",
    license: Annotated[str, typer.Option("--license", help="License named in the dataset card's header (e.g. apache-2.0, cc-by-4.0).")] = "other",
    fmt: Annotated[str, typer.Option("--format", "-f", help=f"One of {', '.join(FORMATS)}.")] = "alpaca-special",
    steering: Annotated[bool, typer.Option("--steering", help="Export the steering versions instead of a run.")] = False,
    debate: Annotated[str | None, typer.Option("--debate", metavar="RUN_ID", help="Export a debate run: party A's answers and party B's question/rebuttal lists (see --kinds).")] = None,
    kinds: Annotated[str, typer.Option("--kinds", help="--debate: which rows, comma-separated: answers, questions, rebuttals.")] = "answers,questions,rebuttals",
    reasoning_style: Annotated[str, typer.Option("--reasoning-style", help="messages/sharegpt: 'field' (reasoning_content) or 'think' (<think> block in the content).")] = "field",
    chat: Annotated[bool, typer.Option("--chat", help="prompt-completion/dpo: chat message lists instead of alpaca text.")] = False,
    system: Annotated[str | None, typer.Option(help="Chat formats: a system message to put first.")] = None,
    model: ModelFilter = None,
    exclude_flag: Annotated[list[str] | None, typer.Option("--exclude-flag", help=f"Drop examples with this quality flag, repeatable: {', '.join(FLAG_NAMES)}. dpo: which flags make a sample 'rejected' (default any).")] = None,
    min_chars: Annotated[int, typer.Option("--min-chars", help="Drop examples whose reasoning has fewer characters than this.")] = 0,
    accepted_only: Annotated[bool, typer.Option("--accepted-only", help="--steering: only versions marked as training examples.")] = False,
    exclude_duplicates: Annotated[bool, typer.Option("--exclude-duplicates", help="Drop results `reasonry dedup RUN` marked as near-duplicates.")] = False,
    exclude_contaminated: Annotated[bool, typer.Option("--exclude-contaminated", help="Drop results `reasonry decontaminate RUN` flagged.")] = False,
    db: Db = "reasonry.db",
    as_json: JsonOut = False,
) -> None:
    """Turn a run, the steering versions or a debate into fine-tuning data (SFT formats or DPO pairs)."""
    options = ExportOptions(format=fmt, reasoning_style=reasoning_style, chat=chat, system=system,
                            models=tuple(model or ()), exclude_flags=tuple(exclude_flag or ()),
                            min_chars=min_chars, accepted_only=accepted_only,
                            kinds=tuple(k.strip() for k in kinds.split(",")),
                            exclude_marks=(("duplicate",) if exclude_duplicates else ())
                            + (("contaminated",) if exclude_contaminated else ()))
    store = Store.existing(db)
    summary = export_dataset(store, out, run_id=run, steering=steering, debate_run=debate, options=options,
                             license=license)
    if as_json:
        _print_json(summary)
        return
    dropped = ", ".join(f"{n} {reason}" for reason, n in summary["dropped"].items()) or "none"
    console.print(f"wrote {summary['records']} {fmt} records from {summary['source']} to {summary['out']} "
                  f"(dropped: {dropped}); card {summary['card']}", highlight=False, soft_wrap=True)


# --------------------------------------------------------------------------------------------- train


def _print_loss(entry: dict[str, Any]) -> None:
    total = entry.get("max_steps") or "?"
    console.print(f"step {entry['step']}/{total}  loss {entry['loss']:.4f}  lr {entry.get('learning_rate') or 0:.2e}",
                  highlight=False, soft_wrap=True)


@app.command("train")
def train_command(
    data: Annotated[Path, typer.Argument(metavar="DATA", help="An export: .jsonl .json .parquet.")],
    base: Annotated[str, typer.Option("--base", help="Base model: hf:MODEL (a hub name or a folder).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the LoRA adapter, tokenizer and loss.jsonl.")],
    fmt: Annotated[str | None, typer.Option("--format", help="text, prompt-completion, conversational, sharegpt, alpaca, preference (default: from the keys).")] = None,
    method: Annotated[str, typer.Option("--method", help="sft, dpo (preference pairs from `export --format dpo`), or auto: dpo for pairs, sft otherwise.")] = "auto",
    beta: Annotated[float, typer.Option("--beta", help="DPO: how strongly the adapter stays near the base model.")] = 0.1,
    epochs: Annotated[float, typer.Option(help="Passes over the data.")] = 1.0,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Stop after this many optimizer steps (overrides --epochs).")] = None,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate.")] = 2e-4,
    max_seq_len: Annotated[int, typer.Option("--max-seq-len", help="Truncate examples to this many tokens.")] = 2048,
    lora_r: Annotated[int, typer.Option("--lora-r", help="LoRA rank.")] = 16,
    lora_alpha: Annotated[int | None, typer.Option("--lora-alpha", help="LoRA alpha (default 2 x rank).")] = None,
    lora_dropout: Annotated[float, typer.Option("--lora-dropout", help="LoRA dropout.")] = 0.05,
    target_modules: Annotated[str, typer.Option("--target-modules", help="all-linear, attention (q,k,v,o_proj) or a comma list.")] = "all-linear",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Examples per device step.")] = 2,
    grad_accum: Annotated[int, typer.Option("--grad-accum", help="Gradient accumulation steps.")] = 1,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    load_in_4bit: Annotated[bool, typer.Option("--load-in-4bit", help="QLoRA: 4-bit base weights (CUDA + bitsandbytes).")] = False,
    as_json: JsonOut = False,
) -> None:
    """LoRA SFT or DPO (QLoRA with --load-in-4bit) on an export; `generate --model hf:BASE+OUT` loads the result."""
    config = TrainConfig(format=fmt, method=method, beta=beta, epochs=epochs, max_steps=max_steps, lr=lr, max_seq_len=max_seq_len,
                         lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                         target_modules=target_modules, batch_size=batch_size, grad_accum=grad_accum, seed=seed,
                         load_in_4bit=load_in_4bit)
    summary = train(data, base, out, config, on_log=None if as_json else _print_loss)
    if as_json:
        _print_json(summary)
        return
    loss = f"loss {summary['first_loss']:.4f} -> {summary['last_loss']:.4f}, " if summary["last_loss"] is not None else ""
    console.print(f"adapter written to {summary['out']} ({summary['steps']} steps, {loss}{summary['seconds']} s); "
                  f"use it with --model hf:{summary['base']}+{summary['out']}", highlight=False, soft_wrap=True)
