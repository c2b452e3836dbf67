"""Dataset cards, and the publish-ready folder: `export --out DIR/` writes what `datasets.load_dataset(DIR)` reads.

A folder export holds `data/train.<ext>` and a `README.md` whose YAML header names the config and its data files,
the license, task categories and languages; the body says how the data was made (source, models, template,
sampling, quality-check counts, usage). `huggingface-cli upload --repo-type dataset USER/NAME DIR .` publishes it.
A single-file export gets the same card beside the file.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from reasonry.errors import InputError
from reasonry.store import Store

CARD_MARK = "<!-- reasonry dataset card: {name} -->"
FOLDER_DATA = "data/train{suffix}"
PUBLISH_COMMAND = "huggingface-cli upload --repo-type dataset USER/NAME {folder} ."


def is_folder_target(out: str | Path) -> bool:
    """`--out DIR/` (a trailing slash, an existing folder, or a name without a suffix) asks for a dataset folder."""
    text = str(out)
    return text.endswith(("/", os.sep)) or Path(text).is_dir() or not Path(text).suffix


def check_folder(out: str | Path) -> Path:
    """The folder to write; refused when it holds files that a reasonry export did not write."""
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--out {out}: is a file; give a folder name ending in / for a dataset folder")
    if not folder.parent.exists():
        raise InputError(f"--out {out}: folder {folder.parent} does not exist; create it first")
    if folder.is_dir() and any(folder.iterdir()) and not _ours(folder / "README.md", folder.name):
        raise InputError(f"--out {out}: the folder has files reasonry did not write; give a new or empty folder")
    return folder


def _ours(readme: Path, name: str) -> bool:
    try:
        return CARD_MARK.format(name=name) in readme.read_text(encoding="utf-8")[:4000]
    except (OSError, UnicodeDecodeError):
        return False


def card_path(data_path: Path) -> Path:
    """README.md beside the data, unless a README.md not written by reasonry for this file is there."""
    readme = data_path.parent / "README.md"
    if not readme.exists() or _ours(readme, data_path.name):
        return readme
    return data_path.with_name(f"{data_path.stem}.README.md")


def provenance(store: Store, run_id: str | None) -> dict[str, Any]:
    """How a run's data was made: models, template, sampling, quality-flag counts and token usage."""
    if run_id is None:
        return {}
    run = store.get_run(run_id)
    config = run["config"]
    return {
        "kind": run["kind"], "models": {m["label"]: m["spec"] for m in run["models"]},
        "template": config.get("template"), "role": config.get("role"), "chat": config.get("chat"),
        "params": config.get("params"), "checks": store.run_flag_counts(run_id), "usage": store.run_usage(run_id),
        "hygiene": store.mark_counts(run_id),
    }


def languages(records: Iterable[dict[str, Any]], limit: int = 500) -> list[str]:
    """ISO codes of the languages that make up at least 5 % of (a sample of) the records' text."""
    from reasonry.quality import detect_language

    counts: Counter[str] = Counter()
    for index, record in enumerate(records):
        if index >= limit:
            break
        text = " ".join(_strings(record))[:2000]
        code = detect_language(text)[0]
        if code:
            counts[code] += 1
    total = sum(counts.values())
    return [code for code, n in counts.most_common() if n >= 0.05 * total]


def _strings(value: Any) -> Iterable[str]:
    """Every string inside a record, message lists included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def render_card(name: str, data_file: str, summary: dict[str, Any], made: dict[str, Any], *,
                license: str = "other", langs: list[str] | None = None) -> str:
    from reasonry import __version__

    preference = summary["format"] == "dpo"
    header = ["---", f"license: {license}", "task_categories:", "- text-generation",
              *(["language:", *(f"- {code}" for code in langs)] if langs else []),
              "tags:", "- reasonry", "- reasoning", *(["- dpo"] if preference else []),
              f"size_categories:\n- {_size_category(summary['records'])}",
              "configs:", "- config_name: default", "  data_files:", "  - split: train",
              f"    path: {json.dumps(data_file)}", "---"]
    lines = [*header, CARD_MARK.format(name=name), "", f"# {name}", "",
             f"Fine-tuning data exported by reasonry {__version__} on {time.strftime('%Y-%m-%d %H:%M:%S')}.", "",
             f"- **records**: {summary['records']}",
             f"- **format**: `{summary['format']}`" + (" (chat)" if summary.get("chat") else ""),
             f"- **source**: {summary['source']} (database `{summary['db']}`)",
             f"- **columns**: {', '.join(f'`{c}`' for c in summary['columns'])}"]
    if summary.get("reasoning_style"):
        lines.append(f"- **reasoning style**: `{summary['reasoning_style']}`")
    filters = summary["filters"]
    lines.append("- **filters**: " + ("; ".join(f"{k} = {v}" for k, v in filters.items()) if filters else "none"))
    dropped = summary["dropped"]
    lines.append("- **dropped**: " + (", ".join(f"{n} ({reason})" for reason, n in sorted(dropped.items()))
                                      if dropped else "none"))
    lines += ["", "## Models", "", "| model | records | spec |", "|---|---|---|"]
    specs = made.get("models", {})
    lines += [f"| {model} | {n} | `{specs.get(model, '')}` |" for model, n in sorted(summary["models"].items())]
    lines += _how_made(made)
    command = "--method dpo " if preference else ""
    lines += ["", "## Use", "", "```", f"reasonry train {data_file} --base hf:BASE_MODEL {command}--out ./adapter",
              "```", "", "```python", "from datasets import load_dataset", _load_line(summary, data_file), "```"]
    if summary.get("folder"):
        lines += ["", "Publish (needs the network and a Hub token):", "", "```",
                  PUBLISH_COMMAND.format(folder=summary["folder"]), "```"]
    return "\n".join(lines) + "\n"


def _load_line(summary: dict[str, Any], data_file: str) -> str:
    """How `datasets` reads this export: the folder by name, or the file beside this card (from its folder)."""
    if summary.get("folder"):
        return f"dataset = load_dataset({json.dumps(summary['folder'])})"
    builder = "parquet" if data_file.endswith(".parquet") else "json"
    return f"dataset = load_dataset({json.dumps(builder)}, data_files={json.dumps(data_file)})  # run where this card is"


def _how_made(made: dict[str, Any]) -> list[str]:
    if not made:
        return []
    lines = ["", "## How it was made", "", f"- **run kind**: {made['kind']}"]
    if made.get("template"):
        lines.append(f"- **template**: `{made['template']}`" + (f", role `{made['role']}`" if made.get("role") else "")
                     + (", rendered with the chat template" if made.get("chat") else ""))
    if made.get("params"):
        lines.append("- **sampling**: " + ", ".join(f"{k}={v}" for k, v in made["params"].items()))
    checks = made.get("checks") or {}
    lines.append("- **quality flags in the run** (before the filters above): "
                 + (", ".join(f"{name} {n}" for name, n in sorted(checks.items()))
                                            if checks else "none recorded (run `reasonry check`)"))
    hygiene = made.get("hygiene") or {}
    if hygiene:
        lines.append("- **data hygiene marks**: " + ", ".join(f"{kind} {n}" for kind, n in sorted(hygiene.items())))
    usage = made.get("usage") or {}
    if usage:
        from reasonry.ledger import LEDGER_COLUMNS, format_cell

        columns = [c for c in LEDGER_COLUMNS if c != "cost"]
        lines += ["", "## Usage", "", "| model | " + " | ".join(c.replace("_", " ") for c in columns) + " |",
                  "|---" * (len(columns) + 1) + "|"]
        lines += ["| " + " | ".join([model, *(format_cell(c, u[c]) for c in columns)]) + " |"
                  for model, u in sorted(usage.items())]
    return lines
