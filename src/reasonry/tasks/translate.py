"""The `translate` task: each model's reasoning (or response) of a run, translated into another language.

Translations are stored in the same run as extra columns (`reasoning_ja`, …) beside the result they translate,
and registered in the run config so every output writes them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonry.config import ModelSpec
from reasonry.engines.base import Engine, Request
from reasonry.errors import InputError
from reasonry.prompts.library import PromptTemplate
from reasonry.prompts.roles import ROLES
from reasonry.quality.language import LANGUAGES
from reasonry.requests import error_request
from reasonry.store import RunRecord, Store
from reasonry.tasks.base import Task
from reasonry.tasks.execute import Planned, Reporter, planned_or_error
from reasonry.tasks.followup import (
    FollowUp,
    FollowUpConfig,
    load_task_template,
    parse_spec,
    prompt_request,
    run_followup,
)

FIELDS = ("reasoning", "response")


def language_of(to: str) -> tuple[str, str]:
    """(column suffix, language name) from `--to`: a code (ja) or a name (Japanese)."""
    text = to.strip()
    code = re.sub(r"[^0-9a-z_-]+", "_", text.lower()).strip("_")
    if not code:
        raise InputError(f"--to {to!r}: give a language code such as ja, en, zh, or a name such as Japanese")
    return code, LANGUAGES.get(code, text)


def source_text(record: dict[str, Any], field: str) -> str:
    if field == "reasoning":
        text = RunRecord.reasoning_of(record)
    else:
        text = record["response"]
    return (text or "").strip()


@dataclass
class TranslateTask(Task):
    """A row's records -> one request per record translating its `field` into `language` (stored in `column`)."""

    template: PromptTemplate
    engine: Engine
    config: FollowUpConfig
    field: str
    column: str
    language: str
    run_id: str

    def format_input(self, records: list[RunRecord]) -> Iterator[Planned]:
        spec, params = self.engine.spec, self.config.params
        for record in records:
            row_index, model, sample = record["row_index"], record["model"], record["sample_index"]
            text = source_text(record, self.field)
            tag, where = f"{self.run_id}:{row_index}:{model}:{sample}:{self.column}", f"row {record['row_id']}"
            if not text:
                yield Planned(row_index, model, error_request(spec, params, tag, sample), "response",
                              column=self.column, error=f"{where}: {model} has no {self.field} to translate")
                continue

            def build(record: RunRecord = record, text: str = text, sample: int = sample, where: str = where) -> Request:
                prompt = self.template.render(system=ROLES["translator"], text=text, language=self.language,
                                              field=self.field, question=record["question"], input=record["input"])
                return prompt_request(self.engine, prompt, params, self.config.chat, sample, where=where)

            yield planned_or_error(row_index, model, build, spec=spec, params=params, tag=tag, where=where,
                                   produces="response", column=self.column, sample_index=sample)


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

    def prepare(store: Store, run_id: str, info: dict[str, Any], labels: list[str]) -> FollowUp:
        translations = list(info["config"].get("translations", []))
        if column not in translations:
            store.update_run_config(run_id, translations=[*translations, column])
        rows = store.count_inputs(run_id)
        return FollowUp("translate", f"{column} ({spec.label})", store.count_requests(run_id, labels),
                        lambda engine: TranslateTask(prompt_template, engine, config, field, column, language, run_id),
                        rows=lambda task: rows, extra={"column": column, "language": language})

    return run_followup(run, spec, config, prepare, out=out, db=db, reporter=reporter, store=store)
