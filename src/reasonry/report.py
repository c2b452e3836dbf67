"""A self-contained HTML quality report: per-model summary, inline SVG plots and flagged examples.

Every model output and question is untrusted: the page is rendered with jinja2 autoescaping, highlights
are built by escaping each slice of the raw text, and the only unescaped markup is matplotlib's SVG
(which escapes its own text). The page loads nothing: no script, no CDN, no external URL.
"""

from __future__ import annotations

import io
import math
import statistics
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import matplotlib
from markupsafe import Markup, escape
from matplotlib.figure import Figure

from reasonry.io.atomic import write_text
from reasonry.quality import FLAG_NAMES, CheckConfig, Flag, summarize
from reasonry.quality.checks import check_record, length_flags, reasoning_of
from reasonry.quality.summary import judge_agreement

MAX_EXAMPLES_PER_FLAG = 20
_MAX_LABEL_CHARS = 40
# without these matplotlib writes an RDF block full of external URLs
_NO_SVG_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}


@dataclass
class _Row:
    model: str
    row_id: str
    question: str
    reasoning: str
    response: str
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float | None
    finish_reason: str | None
    error: str | None
    flags: list[Flag] = field(default_factory=list)
    checked_here: bool = False
    record: Mapping[str, Any] = field(default_factory=dict)
    verdicts: dict[str, str] = field(default_factory=dict)  # judge kind -> yes/no/n/a/unclear

    @property
    def tokens_per_s(self) -> float | None:
        if not self.completion_tokens or not self.latency_s or self.latency_s <= 0:
            return None
        return self.completion_tokens / self.latency_s


def _number(value: Any, kind: Callable[[Any], Any]) -> Any:
    try:
        result = kind(value)
    except (TypeError, ValueError):
        return None
    return None if isinstance(result, float) and not math.isfinite(result) else result


def _to_flag(flag: Flag | Mapping[str, Any]) -> Flag:
    return flag if isinstance(flag, Flag) else Flag.from_dict(flag)


def _row(record: Mapping[str, Any]) -> _Row:
    flags = record.get("flags")
    return _Row(
        model=str(record.get("model") or "(unknown)"),
        row_id=str(record.get("row_id", "")),
        question=str(record.get("question") or ""),
        reasoning=str(reasoning_of(record) or ""),
        response=str(record.get("response") or ""),
        prompt_tokens=_number(record.get("prompt_tokens"), int),
        completion_tokens=_number(record.get("completion_tokens"), int),
        latency_s=_number(record.get("latency_s"), float),
        finish_reason=record.get("finish_reason"),
        error=str(record["error"]) if record.get("error") else None,
        flags=[_to_flag(f) for f in flags] if flags is not None else [],
        checked_here=flags is None,
        record=record,
        verdicts={kind: getattr(v, "verdict", v) for kind, v in (record.get("verdicts") or {}).items()},
    )


def _check_missing(rows: Sequence[_Row], config: CheckConfig) -> None:
    """Flag the records that came without flags, with the rule `reasonry check` stores (`check_record`), and
    the per-model `length` outliers among them."""
    rows = [row for row in rows if row.checked_here and not row.error]
    for row in rows:
        row.flags = check_record(row.record, config)
    for i, flag in length_flags([(row.model, row.reasoning) for row in rows], config).items():
        rows[i].flags.append(flag)


# --------------------------------------------------------------------------------------------- summary


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _summary(rows: Sequence[_Row]) -> list[dict[str, Any]]:
    ok_rows = [r for r in rows if not r.error]
    rates = summarize((r.model, r.flags) for r in ok_rows)
    table = []
    for model in _models(rows):
        mine = [r for r in rows if r.model == model]
        ok = [r for r in mine if not r.error]
        flag_stats = rates.get(model, {"counts": {}, "rates": {}, "flagged": 0, "flagged_rate": 0.0})
        table.append(
            {
                "model": model,
                "rows": len(mine),
                "errors": len(mine) - len(ok),
                "median_chars": _median(len(r.reasoning) for r in ok),
                "median_latency": _median(r.latency_s for r in ok),
                "median_tps": _median(r.tokens_per_s for r in ok),
                "completion_tokens": sum(r.completion_tokens or 0 for r in ok),
                "flagged": flag_stats["flagged"],
                "flagged_rate": flag_stats["flagged_rate"],
                "counts": flag_stats["counts"],
                "rates": flag_stats["rates"],
            }
        )
    return table


def _models(rows: Sequence[_Row]) -> list[str]:
    return list(dict.fromkeys(r.model for r in rows))


def _flag_names(rows: Sequence[_Row]) -> list[str]:
    seen = {f.name for r in rows for f in r.flags}
    return [*FLAG_NAMES, *sorted(seen - set(FLAG_NAMES))]


# --------------------------------------------------------------------------------------------- plots


def _label(text: str) -> str:
    """A model name safe for matplotlib: short, and `$` not read as mathtext."""
    short = text if len(text) <= _MAX_LABEL_CHARS else text[: _MAX_LABEL_CHARS - 1] + "…"
    return short.replace("$", r"\$")


def _svg(fig: Figure) -> Markup:
    buffer = io.StringIO()
    with (
        matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "reasonry"}),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", UserWarning)  # glyphs missing from the plot font (CJK model names)
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata=_NO_SVG_METADATA)
    svg = buffer.getvalue()
    return Markup(svg[svg.index("<svg") :])  # drop the XML prolog and DOCTYPE (an external URL)


def _box_axes(ax: Any, series: Mapping[str, Sequence[float]], ylabel: str) -> None:
    names = [m for m, values in series.items() if values]
    if not names:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    ax.boxplot([series[m] for m in names])
    ax.set_xticks(range(1, len(names) + 1), [_label(m) for m in names], rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)


def _figure(n_models: int, ncols: int = 1) -> Figure:
    return Figure(figsize=(ncols * max(4.5, 1.0 + 0.9 * n_models), 3.6), layout="constrained")


def _length_plot(rows: Sequence[_Row], models: Sequence[str]) -> Markup:
    fig = _figure(len(models))
    series = {m: [len(r.reasoning) for r in rows if r.model == m and not r.error] for m in models}
    _box_axes(fig.subplots(), series, "reasoning length (characters)")
    return _svg(fig)


def _flag_plot(summary: Sequence[Mapping[str, Any]], names: Sequence[str]) -> Markup:
    fig = Figure(figsize=(max(6.5, 1.1 * len(names) + 2), 3.6), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(len(summary), 1)
    for i, entry in enumerate(summary):
        xs = [j + i * width for j in range(len(names))]
        ax.bar(xs, [100 * entry["rates"].get(n, 0.0) for n in names], width, label=_label(entry["model"]))
    ax.set_xticks([j + width * (len(summary) - 1) / 2 for j in range(len(names))], list(names))
    ax.set_ylabel("% of results flagged")
    ax.grid(axis="y", alpha=0.3)
    if summary:
        ax.legend(fontsize="small")
    return _svg(fig)


def _speed_plot(rows: Sequence[_Row], models: Sequence[str]) -> Markup:
    fig = _figure(len(models), ncols=2)
    left, right = fig.subplots(1, 2)
    ok = [r for r in rows if not r.error]
    latency = {m: [r.latency_s for r in ok if r.model == m and r.latency_s is not None] for m in models}
    speed = {m: [r.tokens_per_s for r in ok if r.model == m and r.tokens_per_s is not None] for m in models}
    _box_axes(left, latency, "latency (s)")
    _box_axes(right, speed, "completion tokens / s")
    return _svg(fig)


# --------------------------------------------------------------------------------------------- examples


def _valid_span(text: str, flag: Flag) -> tuple[int, int] | None:
    if flag.start is not None and flag.end is not None and 0 <= flag.start < flag.end <= len(text):
        if flag.span is None or text[flag.start : flag.end] == flag.span:
            return flag.start, flag.end
    if flag.span:
        found = text.find(flag.span)
        if found >= 0:
            return found, found + len(flag.span)
    return None


def highlight(text: str, spans: Iterable[tuple[int, int]]) -> Markup:
    """`text` escaped, with each (start, end) span wrapped in <mark>; overlapping spans are merged."""
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    parts: list[str] = []
    pos = 0
    for start, end in merged:
        parts += [escape(text[pos:start]), Markup("<mark>"), escape(text[start:end]), Markup("</mark>")]
        pos = end
    parts.append(escape(text[pos:]))
    return Markup("").join(parts)


def _examples(rows: Sequence[_Row], names: Sequence[str], limit: int) -> dict[str, list[dict[str, Any]]]:
    examples: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        picked = []
        for row in rows:
            flags = [f for f in row.flags if f.name == name]
            if not flags:
                continue
            spans = [s for s in (_valid_span(row.reasoning, f) for f in flags) if s]
            elsewhere = [f.span for f in flags if f.span and not _valid_span(row.reasoning, f)]
            picked.append(
                {
                    "row": row,
                    "reasons": [f.reason for f in flags],
                    "reasoning": highlight(row.reasoning, spans),
                    "elsewhere": elsewhere,
                }
            )
            if len(picked) >= limit:
                break
        if picked:
            examples[name] = picked
    return examples


# --------------------------------------------------------------------------------------------- page

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 80rem; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.5rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f3f3f3; }
figure { margin: 1rem 0; }
figure svg { max-width: 100%; height: auto; }
.example { border: 1px solid #ddd; border-radius: 4px; padding: 0.6rem 0.8rem; margin: 0.8rem 0; }
.meta { color: #555; font-size: 0.85rem; }
.text { white-space: pre-wrap; max-height: 18rem; overflow: auto; background: #fafafa; padding: 0.4rem;
        border-left: 3px solid #ddd; font-size: 0.9rem; }
.label { font-weight: 600; font-size: 0.8rem; margin-top: 0.4rem; }
mark { background: #ffd54f; }
.reason { color: #8a1c1c; font-size: 0.9rem; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p class="meta">{{ n_rows }} results from {{ summary|length }} model(s); {{ n_errors }} error(s).</p>

<h2>Summary per model</h2>
<table>
<thead><tr>
<th>model</th><th>rows</th><th>errors</th><th>median reasoning chars</th><th>median latency (s)</th>
<th>median tokens/s</th><th>completion tokens</th><th>flagged</th>
{% for name in flag_names %}<th>{{ name }}</th>{% endfor %}
</tr></thead>
<tbody>
{% for s in summary %}<tr>
<td>{{ s.model }}</td><td>{{ s.rows }}</td><td>{{ s.errors }}</td><td>{{ fmt(s.median_chars, 0) }}</td>
<td>{{ fmt(s.median_latency, 2) }}</td><td>{{ fmt(s.median_tps, 1) }}</td><td>{{ s.completion_tokens }}</td>
<td>{{ s.flagged }} ({{ pct(s.flagged_rate) }})</td>
{% for name in flag_names %}<td>{{ s.counts.get(name, 0) }} ({{ pct(s.rates.get(name, 0)) }})</td>{% endfor %}
</tr>
{% endfor %}</tbody>
</table>

{% if usage %}<h2>Usage (what this run generated; cached results are counted apart, never billed)</h2>
<table><tr><th>model</th>{% for c in usage_columns %}<th>{{ c.replace("_", " ") }}</th>{% endfor %}</tr>
{% for model, u in usage.items() %}<tr><td>{{ model }}</td>{% for c in usage_columns %}<td>{{ usage_cell(c, u[c]) }}</td>{% endfor %}</tr>
{% endfor %}</table>{% endif %}

<h2>Reasoning length per model</h2>
<figure>{{ length_plot }}</figure>
<h2>Flag rate per model</h2>
<figure>{{ flag_plot }}</figure>
<h2>Latency and throughput per model</h2>
<figure>{{ speed_plot }}</figure>

{% if judge %}<h2>Rule-based leakage flag vs judge</h2>
<table><tr><th>model</th><th>judged</th><th>leakage: agree</th><th>rule only</th><th>judge only</th><th>unclear</th><th>reasoning supports response (yes / no)</th></tr>
{% for model, j in judge.items() %}<tr><td>{{ model }}</td><td>{{ j.judged }}</td><td>{{ j.agree }}/{{ j.compared }}{% if j.agreement is not none %} ({{ pct(j.agreement) }}){% endif %}</td><td>{{ j.rule_only }}</td><td>{{ j.judge_only }}</td><td>{{ j.unclear }}</td><td>{{ j.consistency.yes }} / {{ j.consistency.no }}</td></tr>
{% endfor %}</table>{% endif %}
<h2>Flagged examples</h2>
{% if not examples %}<p>No result was flagged.</p>{% endif %}
{% for name, items in examples.items() %}
<h3 id="flag-{{ name }}">{{ name }} ({{ items|length }} shown)</h3>
{% for ex in items %}<div class="example">
<div class="meta">model {{ ex.row.model }} · row {{ ex.row.row_id }}{% if ex.row.finish_reason %} · finish_reason {{ ex.row.finish_reason }}{% endif %}</div>
{% for reason in ex.reasons %}<div class="reason">{{ reason }}</div>{% endfor %}
{% for span in ex.elsewhere %}<div class="reason">matched: <mark>{{ span }}</mark></div>{% endfor %}
<div class="label">question</div><div class="text">{{ ex.row.question }}</div>
<div class="label">reasoning</div><div class="text">{{ ex.reasoning }}</div>
<div class="label">response</div><div class="text">{{ ex.row.response }}</div>
</div>
{% endfor %}{% endfor %}

{% if errors %}<h2>Errors ({{ errors|length }} shown)</h2>
<table>
<thead><tr><th>model</th><th>row</th><th>error</th></tr></thead>
<tbody>{% for row in errors %}<tr><td>{{ row.model }}</td><td>{{ row.row_id }}</td><td>{{ row.error }}</td></tr>
{% endfor %}</tbody>
</table>{% endif %}
</body>
</html>
"""


def _fmt(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _pct(rate: float) -> str:
    return f"{100 * rate:.1f}%"


def _render(title: str, rows: Sequence[_Row], usage: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    from reasonry.ledger import LEDGER_COLUMNS, format_cell

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    models = _models(rows)
    names = _flag_names(rows)
    summary = _summary(rows)
    return env.from_string(_TEMPLATE).render(
        title=title,
        n_rows=len(rows),
        n_errors=sum(1 for r in rows if r.error),
        summary=summary,
        judge=judge_agreement(
            (r.model, any(f.name == "leakage" for f in r.flags), r.verdicts) for r in rows if not r.error
        ),
        flag_names=names,
        length_plot=_length_plot(rows, models),
        flag_plot=_flag_plot(summary, names),
        speed_plot=_speed_plot(rows, models),
        examples=_examples(rows, names, MAX_EXAMPLES_PER_FLAG),
        errors=[r for r in rows if r.error][:MAX_EXAMPLES_PER_FLAG],
        fmt=_fmt,
        pct=_pct,
        usage=usage or {},
        usage_columns=LEDGER_COLUMNS,
        usage_cell=format_cell,
    )


def render_report(
    title: str, records: Iterable[dict], out_path: str | Path, *, config: CheckConfig | None = None,
    usage: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Write one self-contained HTML report of `records` to `out_path` (atomically) and return its path.

    Records carrying `flags` (a list of `Flag` or of dicts with the Flag fields, possibly empty) are shown
    as given; `usage` is the run's ledger (with costs, reasonry.ledger.with_costs). Records without a `flags` key (or with None) are checked here with `check_record` under
    `config` (default `CheckConfig()`), and get `length` flags from `length_flags` over those
    records, per model. Records with an `error` are counted but not checked.
    """
    rows = [_row(record) for record in records]
    _check_missing(rows, config or CheckConfig())
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, _render(title, rows, usage))
    return path
