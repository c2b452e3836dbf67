"""`reasonry dedup` and `reasonry decontaminate`: data hygiene over a question file or a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from reasonry.cli import app
from reasonry.cli.common import console, stdout
from reasonry.cli.options import Db, JsonOut
from reasonry.hygiene import FIELDS, decontaminate, dedup

Source = Annotated[str, typer.Argument(metavar="RUN|FILE", help="A question/data file, or a run id (prefix, 'last') in --db.")]
Field = Annotated[str, typer.Option("--field", help=f"What to compare: {', '.join(FIELDS)} (question + input, the reasoning, or both).")]
Report = Annotated[Path | None, typer.Option("--report", help="JSON lines of the findings (default: beside the file, or RUN.<kind>.jsonl here).")]
Out = Annotated[Path | None, typer.Option("--out", "-o", help="FILE only: write the kept rows here (.jsonl .json .csv .xlsx .parquet).")]
QuestionCol = Annotated[str | None, typer.Option("--question-col", help="FILE: question column (default question, else instruction).")]
ReasoningCol = Annotated[str | None, typer.Option("--reasoning-col", help="FILE: reasoning column (default reasoning).")]
IdCol = Annotated[str | None, typer.Option("--id-col", help="FILE: id column (default seq, else the row number).")]


def _print(summary: dict[str, Any], as_json: bool, line: str) -> None:
    if as_json:
        stdout.print_json(json.dumps(summary, ensure_ascii=False))
    else:
        console.print(line, highlight=False, soft_wrap=True)


@app.command("dedup")
def dedup_command(
    source: Source,
    field: Field = "question",
    threshold: Annotated[float, typer.Option("--threshold", help="Estimated Jaccard similarity of word 3-grams above which two rows are duplicates.")] = 0.8,
    num_perm: Annotated[int, typer.Option("--num-perm", help="MinHash permutations (more: more exact, slower).")] = 128,
    report: Report = None, out: Out = None,
    id_col: IdCol = None, question_col: QuestionCol = None, reasoning_col: ReasoningCol = None,
    db: Db = "reasonry.db", as_json: JsonOut = False,
) -> None:
    """Find near-duplicates (MinHash/LSH); the first of each cluster is kept. A run's duplicates are marked
    for `reasonry export --exclude-duplicates`; a file's kept rows go to --out."""
    columns = {"id_col": id_col, "question_col": question_col, "reasoning_col": reasoning_col}
    summary = dedup(source, field=field, threshold=threshold, num_perm=num_perm, report=report, out=out, db=db,
                    columns=columns)
    kept = f"; kept rows in {summary['out']}" if summary["out"] else ""
    _print(summary, as_json, f"{summary['source']}: {summary['duplicates']} of {summary['rows']} are near-duplicates "
                             f"({summary['clusters']} clusters, {field}, threshold {threshold:g}); clusters in "
                             f"{summary['report']}{kept}")


@app.command("decontaminate")
def decontaminate_command(
    source: Source,
    against: Annotated[Path, typer.Option("--against", help="Benchmark file whose questions must not appear in the data.")],
    ngram: Annotated[int, typer.Option("--ngram", help="Words in a shared n-gram that counts as contamination.")] = 13,
    field: Field = "question",
    report: Report = None, out: Out = None,
    id_col: IdCol = None, question_col: QuestionCol = None, reasoning_col: ReasoningCol = None,
    against_question_col: Annotated[str | None, typer.Option("--against-question-col", help="Question column of the benchmark file.")] = None,
    db: Db = "reasonry.db", as_json: JsonOut = False,
) -> None:
    """Flag rows sharing a word n-gram with a benchmark (with the matching span). A run's flagged results are
    marked for `reasonry export --exclude-contaminated`; a file's clean rows go to --out."""
    columns = {"id_col": id_col, "question_col": question_col, "reasoning_col": reasoning_col}
    summary = decontaminate(source, against, ngram=ngram, field=field, report=report, out=out, db=db,
                            columns=columns, against_columns={"question_col": against_question_col})
    kept = f"; clean rows in {summary['out']}" if summary["out"] else ""
    _print(summary, as_json, f"{summary['source']}: {summary['contaminated']} of {summary['rows']} rows share a "
                             f"{ngram}-gram with {against} ({summary['benchmark_rows']} rows); spans in "
                             f"{summary['report']}{kept}")
