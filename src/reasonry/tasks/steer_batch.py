"""Batch steering: one reasoning edit across many rows of a run, responses regenerated from the edited reasonings.

    edit = Edit("replace", "the total is", "books are not fruit, so the total is")
    report = steer_batch(store, "last", engine, edit, fmt=steer_format("alpaca"))
    print(report.headline())   # "the edit changed 41 % of responses (12 of 29 edited rows); leakage flags 23 → 4"
    accept_batch(store, report.batch_id, changed_only=True)   # accepted: SFT rows and DPO pairs (export --steering)

Every edited row is kept as a steering thread `BATCH/ROW`: the run's original (mode `reasoning`) and the edited
version (mode `special`, parent = the original, params record the batch and the edit). A batch is a run of kind
`steer-batch` whose summary is the report.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from reasonry.config import SamplingParams
from reasonry.engines.base import Engine, Request, Result
from reasonry.errors import ConfigError, InputError
from reasonry.extract import split_output
from reasonry.prompts.library import ENV
from reasonry.quality import CheckConfig, check_one
from reasonry.quality.checks import question_text, reasoning_of
from reasonry.store import Store
from reasonry.tasks.steer import Version, accept, make_request, record_version
from reasonry.tasks.steer_formats import SteerFormat

EDIT_KINDS = ("prefix", "template", "replace", "regex")
BATCH_KIND = "steer-batch"


@dataclass(frozen=True)
class Edit:
    """`prefix`: text put before the reasoning; `template`: Jinja over the row (question, input, reasoning, row
    id, model, response); `replace`: every `text` becomes `replacement`; `regex`: the same with a pattern."""

    kind: str
    text: str
    replacement: str = ""

    def __post_init__(self) -> None:
        if self.kind not in EDIT_KINDS:
            raise ConfigError(f"edit kind {self.kind!r}: choose one of {', '.join(EDIT_KINDS)}")
        if not self.text:
            raise ConfigError(f"the {self.kind} edit is empty")
        if self.kind == "regex":
            try:
                re.compile(self.text)
            except re.error as exc:
                raise ConfigError(f"--find {self.text!r}: not a regular expression ({exc})") from None
        if self.kind == "template":
            try:
                ENV.parse(self.text)
            except Exception as exc:  # jinja2.TemplateSyntaxError
                raise ConfigError(f"--template-edit: {exc}") from None

    def apply(self, row: Mapping[str, Any], reasoning: str) -> str:
        if self.kind == "prefix":
            return self.text + reasoning
        if self.kind == "replace":
            return reasoning.replace(self.text, self.replacement)
        if self.kind == "regex":
            return re.sub(self.text, self.replacement, reasoning)
        try:
            return ENV.from_string(self.text).render(
                question=row.get("question", ""), input=row.get("input") or "", reasoning=reasoning,
                response=row.get("response") or "", row_id=row.get("row_id"), model=row.get("model"))
        except Exception as exc:  # undefined variable, a filter error
            raise InputError(f"the template edit failed on row {row.get('row_id')}: {exc}") from None

    def describe(self) -> dict[str, str]:
        return {"kind": self.kind, "text": self.text, **({"replacement": self.replacement}
                                                         if self.kind in ("replace", "regex") else {})}


@dataclass
class RowReport:
    row_id: str
    question: str
    original_id: int
    edited_id: int
    changed: bool
    response_diff: dict[str, int]
    flags_before: list[str]
    flags_after: list[str]
    original_response: str | None
    response: str | None
    reasoning: str


@dataclass
class BatchReport:
    batch_id: str
    run_id: str
    model: str
    edit: dict[str, str]
    rows: int
    edited: int
    changed: int
    flags_before: dict[str, int]
    flags_after: dict[str, int]
    seconds: float
    per_row: list[RowReport] = field(default_factory=list)

    @property
    def changed_share(self) -> float:
        return self.changed / self.edited if self.edited else 0.0

    def headline(self) -> str:
        flags = "; ".join(f"{name} flags {self.flags_before.get(name, 0)} → {self.flags_after.get(name, 0)}"
                          for name in sorted(set(self.flags_before) | set(self.flags_after)))
        return (f"the edit changed {self.changed_share:.0%} of responses ({self.changed} of {self.edited} edited "
                f"rows, {self.rows} rows in all)" + (f"; {flags}" if flags else "; no flags before or after"))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "changed_share": round(self.changed_share, 4), "headline": self.headline()}


def _flags(question: str, reasoning: str | None, response: str | None) -> list[str]:
    return [f.name for f in check_one(reasoning, response, question=question, config=CheckConfig())]


def _diff(old: str | None, new: str | None) -> dict[str, int]:
    from reasonry.web.diff import diff_stats, word_diff

    return diff_stats(word_diff(old, new))


def _same(a: str | None, b: str | None) -> bool:
    return " ".join((a or "").split()) == " ".join((b or "").split())


def _records(store: Store, run_id: str, model: str | None, limit: int | None) -> list[dict[str, Any]]:
    records = [r for r in store.run_records(run_id, models=[model] if model else None)
               if r["sample_index"] == 0 and not r.get("error") and r.get("text") is not None]
    if not records:
        raise InputError(f"run {run_id} has no finished results{f' of model {model}' if model else ''} to steer")
    return records[:limit] if limit else records


def steer_batch(store: Store, run: str, engine: Engine, edit: Edit, *, fmt: SteerFormat, model: str | None = None,
                params: SamplingParams | None = None, limit: int | None = None, label: str | None = None,
                note: str | None = None) -> BatchReport:
    """Apply `edit` to the reasoning of every finished row of `run` (one model's column), regenerate the responses
    with `engine` in special mode and record both versions of each edited row; returns the report (also stored)."""
    run_id = store.resolve_run(run, "generate" if run in ("last", "latest") else None)
    params = params or SamplingParams()
    records = _records(store, run_id, model, limit)
    label = label or model or records[0]["model"]
    started = time.perf_counter()
    edits: list[tuple[dict[str, Any], str, str, Request]] = []
    for record in records:
        original = (reasoning_of(record) or "").strip()
        edited = edit.apply(record, original).strip()
        if edited and edited != original:
            call = fmt.build("special", record["question"], record["input"] or "", edited)
            edits.append((record, original, edited, make_request(engine, call, params)))
    batch_id = store.create_run(BATCH_KIND, source=run_id, config={
        "edit": edit.describe(), "model": label, "template": fmt.name, "params": params.to_dict(), "note": note},
        parent_run=run_id)
    unique = {request.key: request for *_, request in edits}
    results: dict[str, Result] = {result.key: result for result in engine.generate(unique.values())}
    report = BatchReport(batch_id, run_id, label, edit.describe(), len(records), len(edits), 0, {}, {}, 0.0)
    before: Counter[str] = Counter()
    after: Counter[str] = Counter()
    for record, original, edited, request in edits:
        result = results.get(request.key)
        if result is None or result.error is not None:
            raise InputError(f"row {record['row_id']}: generation failed ({result.error if result else 'no result'})")
        response = split_output(result.text, "response")[1]
        question = question_text(record)
        thread = f"{batch_id}/{record['row_id']}"
        source = {"batch": batch_id, "run": run_id, "row_index": record["row_index"], "row_id": record["row_id"]}
        first = record_version(
            store, thread=thread, parent_id=None, model=record["model"], mode="reasoning",
            question=record["question"], input_text=record["input"] or "", reasoning=original,
            response=record.get("response"), raw_text=record.get("raw_text"),
            params={**source, "key": record["request_key"], "original": True}, seconds=record.get("latency_s"),
            prompt_tokens=record.get("prompt_tokens"), completion_tokens=record.get("completion_tokens"))
        second = record_version(
            store, thread=thread, parent_id=first.id, model=label, mode="special", question=record["question"],
            input_text=record["input"] or "", reasoning=edited, response=response,
            raw_text=result.raw_text or result.text,
            params={**params.to_dict(), **source, "edit": edit.describe(), "template": fmt.name, "key": request.key},
            seconds=result.latency_s, prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens, edited=True, note=note)
        flags_before, flags_after = _flags(question, original, first.response), _flags(question, edited, response)
        before.update(flags_before)
        after.update(flags_after)
        changed = not _same(first.response, response)
        report.changed += changed
        report.per_row.append(RowReport(
            str(record["row_id"]), record["question"], first.id, second.id, changed,
            _diff(first.response, response), flags_before, flags_after, first.response, response,
            edited))
    report.flags_before, report.flags_after = dict(before), dict(after)
    report.seconds = round(time.perf_counter() - started, 3)
    summary = report.to_dict()
    summary.pop("per_row")
    store.finish_run(batch_id, "done", summary)
    return report


def load_report(store: Store, batch: str) -> BatchReport:
    """The stored report of a batch (its rows rebuilt from the steering versions it recorded)."""
    batch_id = store.resolve_run(batch, BATCH_KIND)
    summary = store.get_run(batch_id)["summary"]
    if not summary:
        raise InputError(f"batch {batch_id} did not finish; run it again")
    fields = {k: summary[k] for k in ("batch_id", "run_id", "model", "edit", "rows", "edited", "changed",
                                      "flags_before", "flags_after", "seconds")}
    report = BatchReport(**fields)
    versions = [Version.from_row(row) for row in store.batch_version_rows(batch_id)]
    originals = {v.id: v for v in versions if v.parent_id is None}
    for version in versions:
        first = originals.get(version.parent_id or -1)
        if first is None:
            continue
        question = question_text({"question": version.question, "input": version.input})
        report.per_row.append(RowReport(
            str(version.params.get("row_id")), version.question, first.id, version.id,
            not _same(first.response, version.response), _diff(first.response, version.response),
            _flags(question, first.reasoning, first.response), _flags(question, version.reasoning, version.response),
            first.response, version.response, version.reasoning or ""))
    return report


def accept_batch(store: Store, batch: str, *, changed_only: bool = True, rows: Iterable[str] | None = None,
                 without_flags: Iterable[str] = ()) -> list[Version]:
    """Accept the edited versions of a batch (those whose response changed, by default; only `rows` when given;
    none that still carry one of `without_flags`): each becomes an SFT row and a DPO pair against its original."""
    report = load_report(store, batch)
    wanted = set(rows) if rows is not None else None
    blocked = set(without_flags)
    accepted = []
    for row in report.per_row:
        if changed_only and not row.changed or wanted is not None and row.row_id not in wanted:
            continue
        if blocked & set(row.flags_after):
            continue
        accepted.append(accept(store, row.edited_id))
    return accepted
