"""Data hygiene: near-duplicate removal (MinHash/LSH, datasketch) and decontamination against a benchmark
(word n-gram overlap), over a question file or a generate run.

Both stream their input: memory grows with the index (kept rows for dedup, the benchmark's n-grams for
decontamination) and with what they find, never with the whole input. A file's kept rows can be written to
`out`; a run's findings are stored as marks that `export --exclude-duplicates/--exclude-contaminated` reads.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonry.errors import InputError
from reasonry.io.readers import RowSource, open_rows
from reasonry.io.tables import SUPPORTED_SUFFIXES
from reasonry.io.values import id_value
from reasonry.io.writers import check_output_path, write_table
from reasonry.store import Store

FIELDS = ("question", "reasoning", "both")
SNIPPET = 300
_WORD = re.compile(r"\w+")


@dataclass
class Unit:
    """One thing to judge: a file row, or one result of a run (keyed by its request key)."""

    key: str
    label: str
    text: str
    group: Any = None  # units of one group share a verdict (a run's results of the same question row)
    row: Any = None  # the file row, to write it out when kept


# --------------------------------------------------------------------------------------------- sources


def _text(question: str, extra_input: str | None, reasoning: str | None, field: str) -> str:
    prompt = f"{question}\n{extra_input}" if extra_input else question
    if field == "question":
        return prompt
    if field == "reasoning":
        return reasoning or ""
    return f"{prompt}\n{reasoning or ''}"


def _file_units(source: RowSource, field: str) -> Iterator[Unit]:
    for row in source:
        yield Unit(key=row.id, label=f"row {row.id}", text=_text(row.question, row.input, row.reasoning, field),
                   row=row)


def _run_units(store: Store, run_id: str, field: str) -> Iterator[Unit]:
    from reasonry.quality.checks import reasoning_of

    for record in store.run_records(run_id):
        if field != "question" and (record.get("error") or record.get("text") is None):
            continue
        sample = f" #{record['sample_index'] + 1}" if record["sample_index"] else ""
        yield Unit(key=record["request_key"], label=f"row {record['row_id']} {record['model']}{sample}",
                   text=_text(record["question"], record["input"], reasoning_of(record), field),
                   group=record["row_index"] if field == "question" else None)


@dataclass
class _Source:
    units: Callable[[], Iterator[Unit]]
    name: str
    store: Store | None = None
    run_id: str | None = None
    rows: RowSource | None = None


def _open_source(source: str | Path, field: str, db: str | Path, columns: dict[str, str | None]) -> _Source:
    if field not in FIELDS:
        raise InputError(f"--field {field!r}: choose one of {', '.join(FIELDS)}")
    path = Path(source)
    if path.exists():
        rows = open_rows(path, **columns)
        if field != "question" and rows.reasoning_col is None:
            raise InputError(f"{path}: --field {field} needs a reasoning column (none found); "
                             "name it with --reasoning-col or use --field question")
        return _Source(lambda: _file_units(rows, field), str(path), rows=rows)
    if path.suffix.lower() in SUPPORTED_SUFFIXES or len(path.parts) > 1:  # a file name, not a run id
        raise InputError(f"{source}: no such file")
    if not Path(db).exists():
        raise InputError(f"{source}: no such file, and no database --db {db} to find it as a run in")
    store = Store.existing(db)
    run_id = store.resolve_run(str(source))
    return _Source(lambda: _run_units(store, run_id, field), f"run {run_id}", store=store, run_id=run_id)


def _hash32(shingle: str) -> int:
    return zlib.crc32(shingle.encode())


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


# --------------------------------------------------------------------------------------------- writing


def _write_jsonl(path: Path, lines: Iterator[dict[str, Any]]) -> int:
    """JSON lines to `path` through a temp file: a failure leaves no half-written file."""
    temp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    count = 0
    try:
        with open(temp, "w", encoding="utf-8") as handle:
            for line in lines:
                handle.write(json.dumps(line, ensure_ascii=False) + "\n")
                count += 1
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return count


def _check_paths(report: str | Path, out: str | Path | None, src: _Source) -> tuple[Path, Path | None]:
    report_path = Path(report)
    if report_path.suffix.lower() != ".jsonl":
        raise InputError(f"--report {report}: the report is JSON lines; give a .jsonl file name")
    if not report_path.parent.exists():
        raise InputError(f"--report {report}: folder '{report_path.parent}' does not exist; create it first")
    if out is None:
        return report_path, None
    if src.rows is None:
        raise InputError(f"--out {out}: only for a file; a run's findings are stored for "
                         "`reasonry export --exclude-duplicates/--exclude-contaminated`")
    return report_path, check_output_path(out, inputs=[src.rows.path])


def _default_report(src: _Source, kind: str) -> Path:
    """`data.jsonl` → `data.duplicates.jsonl` beside it; a run → `RUN_ID.duplicates.jsonl` here."""
    if src.rows is not None:
        return src.rows.path.with_name(f"{src.rows.path.stem}.{kind}.jsonl")
    return Path(f"{src.run_id}.{kind}.jsonl")


def _stream_kept(units: Iterator[Unit], out: Path | None, rows: RowSource | None) -> int:
    """Drain `units` (which yields the kept ones), writing their rows to `out` under the input's column names."""
    if out is None or rows is None:
        return sum(1 for _ in units)
    roles = {"id": rows.id_col, "question": rows.question_col, "input": rows.input_col,
             "reasoning": rows.reasoning_col, "reference": rows.reference_col}
    named = {role: column for role, column in roles.items() if column}

    def record(row: Any) -> dict[str, Any]:
        kept = {**row.extra, **{column: getattr(row, role) for role, column in named.items()}}
        if rows.id_col:
            kept[rows.id_col] = id_value(row.id)  # 1 stays 1, as in every output
        return kept

    return write_table(out, list(rows.columns), (record(u.row) for u in units))


# --------------------------------------------------------------------------------------------- dedup


class _Deduper:
    """Keeps the first of each group of near-duplicates; later ones point at the kept unit they match.

    datasketch makes the MinHash signatures and chooses the LSH banding (bands × rows for the threshold);
    the band index itself is one dict per band from the band's hash to the first kept unit with it, as
    datasketch's MinHashLSH keeps a set per bucket plus every key's hashes, several times the memory for a
    million rows. Labels and texts of the kept units that have duplicates are read back in a second pass.
    """

    def __init__(self, threshold: float, num_perm: int, shingle: int) -> None:
        from datasketch import MinHash, MinHashLSH

        self._minhash = MinHash
        template = MinHash(num_perm=num_perm, seed=1)
        self._permutations, self._scheme = template.permutations, template.scheme  # made once, not per row
        # CRC-32 of each shingle instead of SHA-1: as good for MinHash, many times faster, and the same in every
        # process (results never depend on the run). Bands are dict keys in this process only: Python's hash.
        self.num_perm = num_perm
        self.shingle = shingle
        self.ranges = MinHashLSH(threshold=threshold, num_perm=num_perm).hashranges
        self.bands: list[dict[int, int]] = [{} for _ in self.ranges]
        self.kept_keys: list[str] = []  # LSH id -> key
        self.clusters: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._group: Any = None  # a run's results come ordered by row: one verdict per row, the last one held
        self._group_match: str | None = None

    def shingles(self, text: str) -> set[str]:
        words = _words(text)
        n = self.shingle
        if len(words) <= n:
            return {" ".join(words)} if words else set()
        return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}

    def judge(self, unit: Unit) -> str | None:
        """The key of the kept unit this one duplicates, or None (kept)."""
        if unit.group is not None and unit.group == self._group:
            match = self._group_match
        else:
            match = self._match(unit)
            self._group, self._group_match = unit.group, match
        if match is not None:
            self.clusters[match].append({"key": unit.key, "label": unit.label, "text": unit.text[:SNIPPET]})
        return match

    def _match(self, unit: Unit) -> str | None:
        shingles = self.shingles(unit.text)
        if not shingles:
            return None
        signature = self._minhash(num_perm=self.num_perm, permutations=self._permutations, scheme=self._scheme,
                                  hashfunc=_hash32)
        signature.update_batch(shingles)
        values = signature.hashvalues
        keys = [hash(values[start:end].tobytes()) for start, end in self.ranges]
        candidates = [seen for band, key in zip(self.bands, keys, strict=True) if (seen := band.get(key)) is not None]
        if candidates:
            return self.kept_keys[min(candidates)]
        number = len(self.kept_keys)
        for band, key in zip(self.bands, keys, strict=True):
            band[key] = number
        self.kept_keys.append(unit.key)
        return None


def dedup(source: str | Path, *, field: str = "question", threshold: float = 0.8, num_perm: int = 128,
          shingle: int = 3, report: str | Path | None = None, out: str | Path | None = None,
          db: str | Path = "reasonry.db", columns: dict[str, str | None] | None = None) -> dict[str, Any]:
    """Find near-duplicates in a question file or a run (first of each cluster kept).

    Writes the clusters to `report` (JSON lines: the kept row and its duplicates), a file's kept rows to `out`,
    and for a run stores the duplicates' marks for export. Returns a summary.
    """
    if not 0 < threshold <= 1:
        raise InputError(f"--threshold {threshold}: give a Jaccard similarity above 0 and at most 1 (0.8)")
    if num_perm < 16:
        raise InputError(f"--num-perm {num_perm}: use at least 16 permutations (128)")
    if shingle < 1:
        raise InputError(f"shingle={shingle}: must be >= 1 word (3)")
    src = _open_source(source, field, db, columns or {})
    try:
        report_path, out_path = _check_paths(report or _default_report(src, "duplicates"), out, src)
        deduper = _Deduper(threshold, num_perm, shingle)
        marks: list[tuple[str, dict[str, Any]]] = []
        total = 0

        def kept_units() -> Iterator[Unit]:
            nonlocal total
            for unit in src.units():
                total += 1
                kept_key = deduper.judge(unit)
                if kept_key is None:
                    yield unit
                else:
                    marks.append((unit.key, {"of": kept_key}))

        kept = _stream_kept(kept_units(), out_path, src.rows)
        firsts = _kept_units(src, set(deduper.clusters))
        clusters = ({"kept": {"key": key, "label": firsts[key].label, "text": firsts[key].text[:SNIPPET]},
                     "duplicates": members} for key, members in deduper.clusters.items())
        _write_jsonl(report_path, clusters)
        if src.store is not None and src.run_id is not None:
            src.store.replace_marks(src.run_id, "duplicate", marks,
                          {"field": field, "threshold": threshold, "num_perm": num_perm, "shingle": shingle})
        return {"source": src.name, "field": field, "threshold": threshold, "rows": total, "kept": kept,
                "duplicates": len(marks), "clusters": len(deduper.clusters), "report": str(report_path),
                "out": str(out_path) if out_path else None, "run_id": src.run_id}
    finally:
        if src.store is not None:
            src.store.close()


def _kept_units(src: _Source, keys: set[str]) -> dict[str, Unit]:
    """The kept units that have duplicates (a second pass: only those are held in memory)."""
    if not keys:
        return {}
    found: dict[str, Unit] = {}
    for unit in src.units():
        if unit.key in keys and unit.key not in found:
            unit.row = None
            found[unit.key] = unit
            if len(found) == len(keys):
                break
    return found


# --------------------------------------------------------------------------------------------- decontamination


class _BenchIndex:
    """Every word n-gram of the benchmark's questions (with their input), mapped to the benchmark row."""

    def __init__(self, path: str | Path, ngram: int, columns: dict[str, str | None]) -> None:
        self.ngram = ngram
        self.grams: dict[int, str] = {}
        self.rows = 0
        for row in open_rows(path, **columns):
            self.rows += 1
            words = _words(f"{row.question}\n{row.input}" if row.input else row.question)
            for i in range(len(words) - ngram + 1):
                self.grams.setdefault(hash(tuple(words[i:i + ngram])), row.id)

    def find(self, text: str) -> dict[str, Any] | None:
        """The first overlapping span of `text` (the longest run of matching n-grams from there), or None."""
        spans = [(m.start(), m.end(), m.group().lower()) for m in _WORD.finditer(text)]
        words = [w for _, _, w in spans]
        n = self.ngram
        for i in range(len(words) - n + 1):
            bench_id = self.grams.get(hash(tuple(words[i:i + n])))
            if bench_id is None:
                continue
            j = i
            while j + 1 <= len(words) - n and hash(tuple(words[j + 1:j + 1 + n])) in self.grams:
                j += 1
            start, end = spans[i][0], spans[j + n - 1][1]
            return {"bench_id": bench_id, "span": text[start:end], "start": start, "end": end,
                    "words": j - i + n}
        return None


def decontaminate(source: str | Path, against: str | Path, *, ngram: int = 13, field: str = "question",
                  report: str | Path | None = None, out: str | Path | None = None, db: str | Path = "reasonry.db",
                  columns: dict[str, str | None] | None = None,
                  against_columns: dict[str, str | None] | None = None) -> dict[str, Any]:
    """Flag rows (or a run's results) that share a word n-gram with a benchmark file, with the matching span.

    Writes the flagged rows to `report`, a file's clean rows to `out`, and for a run stores the marks for export.
    """
    if ngram < 1:
        raise InputError(f"--ngram {ngram}: must be >= 1 word (13)")
    src = _open_source(source, field, db, columns or {})
    try:
        report_path, out_path = _check_paths(report or _default_report(src, "contaminated"), out, src)
        if not Path(against).exists():
            raise InputError(f"--against {against}: no such file; give the benchmark's questions (.jsonl, .csv, ...)")
        index = _BenchIndex(against, ngram, against_columns or {})
        flagged: list[dict[str, Any]] = []
        total = 0

        def clean_units() -> Iterator[Unit]:
            nonlocal total
            for unit in src.units():
                total += 1
                hit = index.find(unit.text)
                if hit is None:
                    yield unit
                else:
                    flagged.append({"key": unit.key, "label": unit.label, **hit})

        _stream_kept(clean_units(), out_path, src.rows)
        _write_jsonl(report_path, iter(flagged))
        if src.store is not None and src.run_id is not None:
            src.store.replace_marks(src.run_id, "contaminated",
                          [(f["key"], {k: f[k] for k in ("bench_id", "span")}) for f in flagged],
                          {"field": field, "ngram": ngram, "against": str(against)})
        return {"source": src.name, "against": str(against), "ngram": ngram, "field": field, "rows": total,
                "contaminated": len(flagged), "benchmark_rows": index.rows, "report": str(report_path),
                "out": str(out_path) if out_path else None, "run_id": src.run_id}
    finally:
        if src.store is not None:
            src.store.close()


# --------------------------------------------------------------------------------------------- export


MARK_COMMANDS = {"duplicate": "dedup", "contaminated": "decontaminate"}


def without_marked(store: Store, run_id: str, examples: Iterable[Any], kinds: Sequence[str],
                   dropped: Counter[str]) -> Iterator[Any]:
    """Examples (with a `key`) of a run minus those marked with any of `kinds`; refused (InputError) when a
    kind was never checked on the run, so that leaving nothing out is never silent."""
    if not kinds:
        yield from examples
        return
    missing = store.unchecked_kinds(run_id, kinds)
    if missing:
        command = MARK_COMMANDS[missing[0]]
        raise InputError(f"run {run_id} was never checked by `reasonry {command}`; run `reasonry {command} "
                         f"{run_id}` first, then export again")
    marked = store.marked_keys(run_id, kinds)
    for example in examples:
        if example.key in marked:
            dropped["hygiene"] += 1
            continue
        yield example
