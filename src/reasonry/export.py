"""Fine-tuning data out of a generate run, the steering versions or a debate tree.

Formats (one record per example unless noted):

* `alpaca-special`: `text` = the seed's alpaca "special" layout (instruction, input, reasoning) followed by
  the response, plus the separate `instruction`/`input`/`reasoning`/`response` fields.
* `alpaca`: `instruction`, `input`, `reasoning`, `output`.
* `messages`: chat `messages`; the reasoning is a `reasoning_content` field of the assistant message
  (`--reasoning-style field`) or a `<think>…</think>` block opening its content (`think`).
* `sharegpt`: `conversations` of `from`/`value` turns (reasoning as a `reasoning` field or `<think>` block).
* `prompt-completion` (TRL): `prompt` = the alpaca "reasoning" prompt, `completion` = reasoning +
  "\\n\\n### Response:\\n" + response; prompt + completion is exactly the alpaca-special text. With `chat`,
  conversational prompt/completion message lists.
* `conversational` (TRL): `messages` of role/content only, the reasoning in a `<think>` block.
* `dpo`: `prompt`/`chosen`/`rejected` (alpaca prompt and completions, or message lists with `chat`); pairs
  come from steering (accepted version vs. the original) or from a run's samples (unflagged vs. flagged).

The dataset card goes to `README.md` beside the data file, unless a README.md that reasonry did not write
for this same file is there already; then it is `<stem>.README.md`. `--out DIR/` writes a publish-ready folder
(`data/train.jsonl` + card) that `datasets.load_dataset(DIR)` reads (reasonry.card).
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasonry.card import (
    card_path,
    check_folder,
    is_folder_target,
    languages,
    provenance,
    render_card,
)
from reasonry.errors import ConfigError, InputError
from reasonry.hygiene import without_marked
from reasonry.io.atomic import atomic_folder, atomic_write, write_text
from reasonry.io.writers import check_output_path, write_table
from reasonry.prompts.formats import user_content, with_think_block
from reasonry.prompts.library import load_template
from reasonry.quality import FLAG_NAMES, CheckConfig
from reasonry.quality.checks import check_record, reasoning_of
from reasonry.store import Store
from reasonry.tasks.check import load_flags, records_with_flags

FORMATS = ("alpaca-special", "alpaca", "messages", "sharegpt", "prompt-completion", "conversational", "dpo")
REASONING_STYLES = ("field", "think")
EXPORT_SUFFIXES = (".jsonl", ".json", ".parquet")
RESPONSE_MARK = "\n\n### Response:\n"


@dataclass
class ExportOptions:
    format: str = "alpaca-special"
    reasoning_style: str = "field"
    chat: bool = False
    system: str | None = None
    models: tuple[str, ...] = ()
    exclude_flags: tuple[str, ...] = ()
    min_chars: int = 0
    accepted_only: bool = False
    kinds: tuple[str, ...] = ("answers", "questions", "rebuttals")  # debate rows: A's answers and B's moves
    exclude_marks: tuple[str, ...] = ()  # hygiene marks of a run: "duplicate", "contaminated"


@dataclass
class Example:
    """One instruction / input / reasoning / response, whatever it came from."""

    id: str
    instruction: str
    input: str
    reasoning: str
    response: str | None
    model: str | None
    flags: list[str] = field(default_factory=list)
    accepted: bool | None = None
    group: Any = None
    key: str | None = None


@dataclass
class Pair:
    """A preference pair: the same prompt, a chosen and a rejected (reasoning, response)."""

    instruction: str
    input: str
    chosen: Example
    rejected: Example
    model: str | None


# --------------------------------------------------------------------------------------------- rendering


def user_text(example: Example) -> str:
    return user_content(example.instruction, example.input)


def think_content(reasoning: str, response: str | None) -> str:
    return with_think_block(reasoning, response)


def completion_text(reasoning: str, response: str | None) -> str:
    return f"{reasoning}{RESPONSE_MARK}{response or ''}"


def reasoning_prompt(example: Example) -> str:
    return load_template("alpaca-reasoning").render(instruction=example.instruction, input=example.input)


def special_text(example: Example) -> str:
    """The seed's alpaca_prompt_special.format(instruction, input, reasoning) followed by the response."""
    prompt = load_template("alpaca-special").render(
        instruction=example.instruction, input=example.input, reasoning=example.reasoning)
    return prompt + (example.response or "")


def _assistant(example: Example, style: str) -> dict[str, Any]:
    if style == "field":
        return {"role": "assistant", "content": example.response or "", "reasoning_content": example.reasoning}
    return {"role": "assistant", "content": think_content(example.reasoning, example.response)}


def _prompt_messages(example: Example, system: str | None) -> list[dict[str, str]]:
    head = [{"role": "system", "content": system}] if system else []
    return [*head, {"role": "user", "content": user_text(example)}]


def _alpaca_special(example: Example, options: ExportOptions) -> dict[str, Any]:
    return {"text": special_text(example), "instruction": example.instruction, "input": example.input,
            "reasoning": example.reasoning, "response": example.response or ""}


def _alpaca(example: Example, options: ExportOptions) -> dict[str, Any]:
    return {"instruction": example.instruction, "input": example.input, "reasoning": example.reasoning,
            "output": example.response or ""}


def _messages(example: Example, options: ExportOptions) -> dict[str, Any]:
    return {"messages": [*_prompt_messages(example, options.system), _assistant(example, options.reasoning_style)]}


def _sharegpt(example: Example, options: ExportOptions) -> dict[str, Any]:
    turns = [{"from": "system", "value": options.system}] if options.system else []
    turns.append({"from": "human", "value": user_text(example)})
    if options.reasoning_style == "field":
        turns.append({"from": "gpt", "value": example.response or "", "reasoning": example.reasoning})
    else:
        turns.append({"from": "gpt", "value": think_content(example.reasoning, example.response)})
    return {"conversations": turns}


def _prompt_completion(example: Example, options: ExportOptions) -> dict[str, Any]:
    if options.chat:
        return {"prompt": _prompt_messages(example, options.system),
                "completion": [_assistant(example, "think")]}
    return {"prompt": reasoning_prompt(example), "completion": completion_text(example.reasoning, example.response)}


def _conversational(example: Example, options: ExportOptions) -> dict[str, Any]:
    return {"messages": [*_prompt_messages(example, options.system), _assistant(example, "think")]}


def _dpo(pair: Pair, options: ExportOptions) -> dict[str, Any]:
    chosen, rejected = pair.chosen, pair.rejected
    if options.chat:
        record: dict[str, Any] = {
            "prompt": _prompt_messages(chosen, options.system),
            "chosen": [_assistant(chosen, "think")], "rejected": [_assistant(rejected, "think")]}
    else:
        record = {"prompt": reasoning_prompt(chosen), "chosen": completion_text(chosen.reasoning, chosen.response),
                  "rejected": completion_text(rejected.reasoning, rejected.response)}
    return {**record, "model": pair.model or "", "chosen_id": chosen.id, "rejected_id": rejected.id,
            "rejected_flags": ",".join(rejected.flags)}


BUILDERS: dict[str, Callable[[Example, ExportOptions], dict[str, Any]]] = {
    "alpaca-special": _alpaca_special, "alpaca": _alpaca, "messages": _messages, "sharegpt": _sharegpt,
    "prompt-completion": _prompt_completion, "conversational": _conversational,
}

# --------------------------------------------------------------------------------------------- sources


def _flag_names(example: Example) -> list[str]:
    record = {"question": example.instruction, "input": example.input, "reasoning": example.reasoning,
              "response": example.response}
    flags = check_record(record, CheckConfig())
    return [f.name for f in flags]


def run_examples(store: Store, run_id: str, *, check: bool) -> Iterator[Example]:
    """Finished results of a generate run (main column), with their stored flags (checked first if asked)."""
    if check:
        records: Iterable[dict[str, Any]] = records_with_flags(store, run_id)
    else:
        records = list(store.run_records(run_id))
        stored = load_flags(store, (r["request_key"] for r in records))
        for record in records:
            record["flags"] = stored.get(record["request_key"], [])
    for record in records:
        if record.get("error") or record.get("text") is None:
            continue
        yield Example(
            id=f"{record['row_id']}#{record['sample_index'] + 1}" if record["sample_index"] else str(record["row_id"]),
            instruction=record["question"], input=record["input"] or "",
            reasoning=(reasoning_of(record) or "").strip(), response=_strip(record.get("response")),
            model=record["model"], flags=[f.name for f in record["flags"]],
            group=(record["row_index"], record["model"]), key=record["request_key"])


def _strip(text: str | None) -> str | None:
    return text.strip() if text is not None else None


def steering_examples(store: Store) -> Iterator[Example]:
    rows = store.version_rows()
    for row in rows:
        yield Example(id=str(row["id"]), instruction=row["question"], input=row["input"] or "",
                      reasoning=(row["reasoning"] or "").strip(), response=_strip(row["response"]),
                      model=row["model"], accepted=bool(row["accepted"]), group=row["thread"])


def debate_examples(store: Store, run_id: str, kinds: tuple[str, ...]) -> Iterator[Example]:
    from reasonry.debate.export import move_prompts, parse_kinds, sft_rows, topic_inputs
    from reasonry.debate.tree import load_tree

    roots = load_tree(store, run_id)
    rows = sft_rows(run_id, roots, topic_inputs(store, run_id), kinds=parse_kinds(kinds),
                    prompts=move_prompts(store, roots))
    for row in rows:
        yield Example(id=str(row["path"]), instruction=row["instruction"] or "", input=row["input"] or "",
                      reasoning=(row["reasoning"] or "").strip(), response=_strip(row["response"]),
                      model=row["model"], group=row["topic_id"])


def steering_pairs(store: Store) -> Iterator[Pair]:
    """Accepted steering versions vs. the original they were steered from (tasks.steer.preference_pairs)."""
    from reasonry.tasks.steer import preference_pairs

    for p in preference_pairs(store):
        chosen = Example(str(p["chosen_id"]), p["question"], p["input"] or "", (p["chosen_reasoning"] or "").strip(),
                         p["chosen"].strip(), p["model"], accepted=True)
        rejected = Example(str(p["rejected_id"]), p["question"], p["input"] or "",
                           (p["rejected_reasoning"] or "").strip(), p["rejected"].strip(), p["model"])
        yield Pair(p["question"], p["input"] or "", chosen, rejected, p["model"])


def debate_pairs(store: Store, run_id: str) -> Iterator[Pair]:
    """Judged challenges of a debate (`--select judge:K`): the best vs the worst of the same answer and kind."""
    from reasonry.debate.export import scored_pairs
    from reasonry.debate.tree import load_tree

    for p in scored_pairs(load_tree(store, run_id)):
        chosen, rejected = (Example(node.path, p.instruction, p.input, (node.reasoning or "").strip(), node.text,
                                      node.model, group=p.kind)
                            for node in (p.chosen, p.rejected))
        yield Pair(p.instruction, p.input, chosen, rejected, p.chosen.model)


def sample_pairs(examples: Iterable[Example], bad_flags: Sequence[str]) -> Iterator[Pair]:
    """Per prompt and model: unflagged samples paired in order with flagged ones (flags in `bad_flags`,
    or any flag when empty)."""
    groups: dict[Any, list[Example]] = defaultdict(list)
    for example in examples:
        groups[example.group].append(example)
    for items in groups.values():
        def is_bad(e: Example) -> bool:
            return any(name in bad_flags for name in e.flags) if bad_flags else bool(e.flags)

        good = [e for e in items if not is_bad(e) and e.response]
        bad = [e for e in items if is_bad(e) and e.response]
        for chosen, rejected in zip(good, bad, strict=False):
            yield Pair(chosen.instruction, chosen.input, chosen, rejected, chosen.model)


# --------------------------------------------------------------------------------------------- filters


def _drop_reason(example: Example, options: ExportOptions) -> str | None:
    if options.models and example.model not in options.models:
        return "model"
    if not example.reasoning and not example.response:
        return "empty"
    if not (example.response or "").strip():  # every format trains the answer: a record without one teaches silence
        return "no response"
    if options.accepted_only and not example.accepted:
        return "not accepted"
    if len(example.reasoning) < options.min_chars:
        return "min-chars"
    for name in options.exclude_flags:
        if name in example.flags:
            return f"flag:{name}"
    return None


def filter_examples(examples: Iterable[Example], options: ExportOptions, dropped: Counter[str],
                    compute_flags: bool = False) -> Iterator[Example]:
    for example in examples:
        if compute_flags and options.exclude_flags:
            example.flags = _flag_names(example)
        reason = _drop_reason(example, options)
        if reason:
            dropped[reason] += 1
            continue
        yield example


# --------------------------------------------------------------------------------------------- export


def validate(options: ExportOptions, *, run_id: str | None, steering: bool, debate_run: str | None) -> None:
    if options.format not in FORMATS:
        raise ConfigError(f"--format {options.format!r}: choose one of {', '.join(FORMATS)}")
    if options.reasoning_style not in REASONING_STYLES:
        raise ConfigError(f"--reasoning-style {options.reasoning_style!r}: choose field or think")
    if options.reasoning_style != "field" and options.format not in ("messages", "sharegpt"):
        raise ConfigError(f"--reasoning-style applies to messages and sharegpt, not {options.format} "
                          "(conversational, and prompt-completion/dpo with --chat, always use <think>)")
    if options.chat and options.format not in ("prompt-completion", "dpo"):
        raise ConfigError(f"--chat applies to prompt-completion and dpo, not {options.format} "
                          "(messages, sharegpt and conversational are chat formats already)")
    unknown = [n for n in options.exclude_flags if n not in FLAG_NAMES]
    if unknown:
        raise ConfigError(f"--exclude-flag {unknown[0]!r}: choose from {', '.join(FLAG_NAMES)}")
    if options.min_chars < 0:
        raise ConfigError("--min-chars must be >= 0")
    sources = sum([run_id is not None, steering, debate_run is not None])
    if sources != 1:
        raise ConfigError("give exactly one source: RUN_ID (a generate run), --steering, or --debate RUN_ID")
    if options.exclude_marks and run_id is None:
        raise ConfigError("--exclude-duplicates/--exclude-contaminated apply to a generate run (RUN_ID)")
    if options.accepted_only and not steering:
        raise ConfigError("--accepted-only applies to --steering (only steering versions are accepted or not)")


def check_export_path(out: str | Path) -> Path:
    path = check_output_path(out)
    if path.suffix.lower() not in EXPORT_SUFFIXES:
        raise InputError(f"--out {out}: training data is written as {', '.join(EXPORT_SUFFIXES)}")
    return path


def _records(store: Store, options: ExportOptions, dropped: Counter[str], *, run_id: str | None,
             steering: bool, debate_run: str | None) -> list[dict[str, Any]]:
    if options.format == "dpo":
        if steering:
            pairs: Iterable[Pair] = steering_pairs(store)
            pairs = _filter_pairs(pairs, options, dropped)
        elif debate_run is not None:
            pairs = debate_pairs(store, debate_run)
        else:
            assert run_id is not None
            examples = filter_examples(without_marked(store, run_id, run_examples(store, run_id, check=True),
                                                      options.exclude_marks, dropped),
                                       dataclasses.replace(options, exclude_flags=()), dropped)
            pairs = sample_pairs(examples, options.exclude_flags)
        return [_dpo(pair, options) for pair in pairs]
    if steering:
        examples = filter_examples(steering_examples(store), options, dropped, compute_flags=True)
    elif debate_run is not None:
        examples = filter_examples(debate_examples(store, debate_run, options.kinds), options, dropped, compute_flags=True)
    else:
        assert run_id is not None
        examples = filter_examples(without_marked(store, run_id, run_examples(store, run_id, check=bool(
            options.exclude_flags)), options.exclude_marks, dropped), options, dropped)
    builder = BUILDERS[options.format]
    return [{**builder(example, options), "_model": example.model} for example in examples]


def _filter_pairs(pairs: Iterable[Pair], options: ExportOptions, dropped: Counter[str]) -> Iterator[Pair]:
    for pair in pairs:
        if options.exclude_flags:
            pair.chosen.flags = _flag_names(pair.chosen)
        reason = _drop_reason(pair.chosen, options)
        if reason:
            dropped[reason] += 1
            continue
        yield pair


def _no_records_message(options: ExportOptions, dropped: Counter[str], source: str) -> str:
    if dropped:
        why = ", ".join(f"{n} by {reason}" for reason, n in dropped.most_common())
        return f"{source}: every example was filtered out ({why}); nothing written"
    if options.format == "dpo":
        return (f"{source}: no preference pairs (accept steering versions, generate with --samples 2+ so that "
                "flagged and unflagged samples of the same question exist, or debate with --select judge:K so "
                "that challenges are scored); nothing written")
    if source == "steering versions":
        return "no steering versions in the database yet (`reasonry steer ask` makes them); nothing written"
    return f"{source}: no finished results to export; nothing written"


def export_dataset(store: Store, out: str | Path, *, run_id: str | None = None, steering: bool = False,
                   debate_run: str | None = None, options: ExportOptions | None = None,
                   license: str = "other") -> dict[str, Any]:
    """Write the training data of one source to `out` (atomically) and its dataset card; returns a summary.

    `out` is a data file (.jsonl/.json/.parquet, the card beside it) or a folder (`DIR/`: a dataset folder for
    `load_dataset(DIR)` and the Hub). Raises InputError when nothing is left to write.
    """
    options = options or ExportOptions()
    validate(options, run_id=run_id, steering=steering, debate_run=debate_run)
    folder = check_folder(out) if is_folder_target(out) else None
    path = check_export_path(out) if folder is None else folder / "data" / "train.jsonl"
    if run_id is not None:
        run_id = store.resolve_run(run_id, "generate")
    if debate_run is not None:
        debate_run = store.resolve_run(debate_run, "debate")
    source = f"run {run_id}" if run_id else f"debate run {debate_run}" if debate_run else "steering versions"
    dropped: Counter[str] = Counter()
    records = _records(store, options, dropped, run_id=run_id, steering=steering, debate_run=debate_run)
    if not records:
        raise InputError(_no_records_message(options, dropped, source))
    models = Counter(str(r.pop("_model", r.get("model")) or "(unknown)") for r in records)
    columns = list(records[0])
    summary = {
        "out": str(folder or path), "format": options.format, "records": len(records), "dropped": dict(dropped),
        "models": dict(models), "source": source, "run_id": run_id or debate_run, "columns": columns,
        "filters": _filters(options), "db": str(store.path), "chat": options.chat,
        "reasoning_style": options.reasoning_style if options.format in ("messages", "sharegpt") else None,
        "folder": str(folder) if folder else None,
    }
    made = provenance(store, run_id or debate_run)
    langs = languages(records)
    if folder is None:
        write_records(path, columns, records)
        card = card_path(path)
        write_text(card, render_card(path.name, path.name, summary, made, license=license, langs=langs))
    else:
        with atomic_folder(folder) as built:
            (built / "data").mkdir()
            write_records(built / "data" / path.name, columns, records)
            write_text(built / "README.md", render_card(folder.name, f"data/{path.name}", summary, made,
                                                               license=license, langs=langs))
        card = folder / "README.md"
    summary["card"] = str(card)
    return summary


def _filters(options: ExportOptions) -> dict[str, Any]:
    values = {"model": list(options.models), "exclude_flag": list(options.exclude_flags),
              "min_chars": options.min_chars, "accepted_only": options.accepted_only,
              "exclude_marks": list(options.exclude_marks)}
    return {k: v for k, v in values.items() if v}


def write_records(path: Path, columns: list[str], records: list[dict[str, Any]]) -> int:
    """JSONL/JSON through the shared writer; Parquet here, to keep nested message lists nested."""
    if path.suffix.lower() != ".parquet":
        return write_table(path, columns, records)
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in records])
    atomic_write(path, lambda temp: pq.write_table(table, temp))
    return len(records)
