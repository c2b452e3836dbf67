"""The `translate` task: each model's reasoning (or response) of a run, translated into another language.

Translations are stored in the same run as extra columns (`reasoning_ja`, …) beside the result they translate,
and registered in the run config so every output writes them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from reasonry.config import ModelSpec
from reasonry.engines.base import Engine
from reasonry.engines.registry import open_engine
from reasonry.errors import InputError
from reasonry.io.writers import check_output_path
from reasonry.prompts.library import PromptTemplate
from reasonry.prompts.roles import ROLES
from reasonry.store import Store
from reasonry.tasks.ensemble import (
    FollowUpConfig,
    build_request,
    check_has_results,
    count_requests,
    count_rows,
    error_request,
    grouped_records,
    load_task_template,
    open_existing_store,
    parse_spec,
)
from reasonry.tasks.execute import Planned, Reporter, execute, summarize
from reasonry.tasks.output import write_run_output

FIELDS = ("reasoning", "response")
LANGUAGES = {
    "ja": "Japanese", "en": "English", "zh": "Chinese", "zh-cn": "Simplified Chinese",
    "zh-tw": "Traditional Chinese", "ko": "Korean", "fr": "French", "de": "German", "es": "Spanish",
    "it": "Italian", "pt": "Portuguese", "ru": "Russian", "vi": "Vietnamese", "th": "Thai", "id": "Indonesian",
    "ar": "Arabic", "hi": "Hindi", "nl": "Dutch", "pl": "Polish", "tr": "Turkish", "uk": "Ukrainian",
}


def language_of(to: str) -> tuple[str, str]:
    """(column suffix, language name) from `--to`: a code (ja) or a name (Japanese)."""
    text = to.strip()
    code = re.sub(r"[^0-9a-z_-]+", "_", text.lower()).strip("_")
    if not code:
        raise InputError(f"--to {to!r}: give a language code such as ja, en, zh, or a name such as Japanese")
    return code, LANGUAGES.get(code, text)


def source_text(record: dict[str, Any], field: str) -> str:
    if field == "reasoning":
        text = record["reasoning"] if record["reasoning"] is not None else record["given_reasoning"]
    else:
        text = record["response"]
    return (text or "").strip()


def plan_translations(rows: Iterable[list[dict[str, Any]]], template: PromptTemplate, spec: ModelSpec,
                      engine: Engine, config: FollowUpConfig, field: str, column: str, language: str,
                      run_id: str) -> Iterator[Planned]:
    system = ROLES["translator"]
    for records in rows:
        for record in records:
            row_index, model, sample = record["row_index"], record["model"], record["sample_index"]
            text = source_text(record, field)
            if not text:
                where = f"{run_id}:{row_index}:{model}:{sample}:{column}"
                yield Planned(row_index, model, error_request(spec, config.params, where, sample), "response",
                              column=column,
                              error=f"row {record['row_id']}: {model} has no {field} to translate")
                continue
            prompt = template.render(system=system, text=text, language=language, field=field,
                                     question=record["question"], input=record["input"])
            request = build_request(spec, engine, prompt, config.params, config.chat, sample)
            yield Planned(row_index, model, request, produces="response", column=column)


def translate(run: str, to: str, model: str | ModelSpec, *, field: str = "reasoning", template: str = "translate",
              out: str | Path | None = None, db: str | Path = "reasonry.db", config: FollowUpConfig | None = None,
              reporter: Reporter | None = None, store: Store | None = None) -> dict[str, Any]:
    """Translate `field` of every model's result in `run` into `to`; adds the column `{field}_{to}`.

    Python API: `reasonry.tasks.translate.translate("last", "ja", "openai:qwen@http://localhost:8000/v1")`.
    """
    if field not in FIELDS:
        raise InputError(f"--field {field!r}: choose reasoning or response")
    config = config or FollowUpConfig()
    code, language = language_of(to)
    column = f"{field}_{code}"
    spec = parse_spec(model, "--model")
    prompt_template = load_task_template(template, "response")
    out_path = check_output_path(out) if out is not None else None
    own_store = store is None
    store = store or open_existing_store(db)
    try:
        run_id = store.resolve_run(run)
        info = store.get_run(run_id)
        labels = [m["label"] for m in info["models"]]
        check_has_results(store, run_id, labels)
        translations = list(info["config"].get("translations", []))
        if column not in translations:
            store.update_run_config(run_id, translations=[*translations, column])
        with open_engine(spec, config.engine_options, config.executor) as engine:
            if reporter:
                reporter.start(f"{column} ({spec.label})", count_requests(store, run_id, labels))
            planned = plan_translations(grouped_records(store.path, run_id, labels), prompt_template, spec,
                                        engine, config, field, column, language, run_id)
            counts = execute(store, run_id, engine, spec, planned, refresh=config.refresh, reporter=reporter)
            if reporter:
                reporter.finish()
        if out_path is not None:
            write_run_output(store, run_id, out_path)
        rows = count_rows(store, run_id)
        return summarize(run_id, counts, rows, out_path, store.path, column=column, language=language)
    finally:
        if own_store:
            store.close()
