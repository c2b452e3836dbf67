"""The public Python API: one signature style for every task, re-exported from `reasonry`.

    import reasonry
    run = reasonry.generate(df, "hf:./phi-2", template="phi2", max_new_tokens=256)
    run.to_pandas()
    reasonry.check(run); reasonry.export(run, "train.jsonl", format="messages")

Data is a DataFrame, a list of dicts or a file path; models are one spec string or a list of them; sampling
parameters are keyword arguments. Errors name these parameters (not CLI flags).
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonry.config import ModelSpec, SamplingParams
from reasonry.errors import ConfigError, ReasonryError
from reasonry.store import RunRecord, Store

DataLike = Any  # str | Path | pandas.DataFrame | Sequence[Mapping[str, Any]]
ModelsLike = str | ModelSpec | Sequence[str | ModelSpec]
SAMPLING = tuple(f.name for f in dataclasses.fields(SamplingParams))


@dataclass
class Run:
    """A stored run: its id, database and summary. Reads like the summary dict (`run["generated"]`)."""

    run_id: str
    db: Path
    summary: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.summary[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.summary.get(key, default)

    def records(self, *, all_columns: bool = False) -> list[RunRecord]:
        """One record per (row, model, sample[, column]) with the row's fields and the stored result."""
        store = Store.existing(self.db)
        try:
            return list(store.run_records(self.run_id, columns=None if all_columns else ("",)))
        finally:
            store.close()

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame([{**record, "reasoning": record.final_reasoning} for record in self.records()])


def _models(models: ModelsLike, name: str = "models") -> list[str | ModelSpec]:
    if isinstance(models, str | ModelSpec):
        return [models]
    if not isinstance(models, Sequence) or not models:
        raise ConfigError(f"{name}: give a model spec such as 'hf:./model' or a list of them")
    return list(models)


def _run_ref(run: str | Run) -> str:
    return run.run_id if isinstance(run, Run) else run


def _db(run: str | Run, db: str | Path | None) -> Path:
    return Path(db) if db is not None else run.db if isinstance(run, Run) else Path("reasonry.db")


def sampling_params(function: str, sampling: Mapping[str, Any], base: SamplingParams | None = None) -> SamplingParams:
    """SamplingParams from keyword arguments; unknown names and bad values name the parameter."""
    unknown = sorted(set(sampling) - set(SAMPLING))
    if unknown:
        raise ConfigError(f"{function}(): unknown parameter {unknown[0]!r}; sampling parameters are "
                          f"{', '.join(SAMPLING)}")
    values = {k: tuple(v) if k == "stop" and not isinstance(v, str) else (v,) if k == "stop" else v
              for k, v in sampling.items()}
    try:
        return dataclasses.replace(base or SamplingParams(), **values)
    except ConfigError as exc:
        raise ConfigError(f"{function}(): " + _parameter_names(str(exc))) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{function}(): {exc}") from None


def _parameter_names(message: str) -> str:
    """'--max-new-tokens must be >= 1' -> 'max_new_tokens must be >= 1'."""
    return re.sub(r"--([a-z0-9-]+)", lambda m: m.group(1).replace("-", "_"), message)


@contextmanager
def _as_path(data: DataLike) -> Iterator[Path]:
    """A file path for `data`: the path itself, or a temporary .jsonl holding a DataFrame / list of dicts."""
    if isinstance(data, str | Path):
        yield Path(data)
        return
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        frame = data
    elif isinstance(data, Sequence) and all(isinstance(row, Mapping) for row in data):
        frame = pd.DataFrame(list(data))
    else:
        raise ConfigError("data: give a file path, a pandas DataFrame or a list of dicts")
    with tempfile.TemporaryDirectory(prefix="reasonry-") as folder:
        path = Path(folder) / "data.jsonl"
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
        yield path


def generate(data: DataLike, models: ModelsLike, *, template: str = "phi2", out: str | Path | None = None,
             db: str | Path = "reasonry.db", samples: int = 1, chat: bool = False, role: str | None = None,
             system: str | None = None, refresh: bool = False, engine_options: Mapping[str, Any] | None = None,
             config: Any = None, reporter: Any = None, **sampling: Any) -> Run:
    """Generate for every row of `data` with every model; returns the stored Run.

    `config` (a GenerateConfig) replaces template/samples/chat/role/system/refresh/engine_options/sampling.
    Column names can be given as question_col=, input_col=, reasoning_col=, reference_col=, id_col=.
    """
    from reasonry.tasks.generate import GenerateConfig
    from reasonry.tasks.generate import generate as run_generate

    columns = {k: sampling.pop(k) for k in list(sampling)
               if k in ("question_col", "input_col", "reasoning_col", "reference_col", "id_col", "encoding", "sheet")}
    if config is None:
        config = GenerateConfig(template=template, role=role, system=system, chat=chat, samples=samples,
                                refresh=refresh, engine_options=dict(engine_options or {}),
                                params=sampling_params("generate", sampling))
    elif sampling:
        config = dataclasses.replace(config, params=sampling_params("generate", sampling, config.params))
    if samples < 1:
        raise ConfigError("generate(): samples must be >= 1")
    with _as_path(data) as path:
        summary = run_generate(path, _models(models), out=out, db=db, config=config, reporter=reporter, **columns)
    return Run(summary["run_id"], Path(db), summary)


def ensemble(run: str | Run, aggregator: str | ModelSpec, *, template: str = "ensemble", out: str | Path | None = None,
             db: str | Path | None = None, chat: bool = False, refresh: bool = False,
             engine_options: Mapping[str, Any] | None = None, **sampling: Any) -> Run:
    """Merge each row's reasonings with `aggregator` (stored as model `ensemble` in the same run)."""
    from reasonry.tasks.ensemble import ensemble as run_ensemble
    from reasonry.tasks.followup import FollowUpConfig

    config = FollowUpConfig(params=sampling_params("ensemble", sampling, FollowUpConfig().params), chat=chat,
                            refresh=refresh, engine_options=dict(engine_options or {}))
    path = _db(run, db)
    summary = run_ensemble(_run_ref(run), aggregator, template=template, out=out, db=path, config=config)
    return Run(summary["run_id"], path, summary)


def translate(run: str | Run, to: str, model: str | ModelSpec, *, field: str = "reasoning",
              template: str = "translate", out: str | Path | None = None, db: str | Path | None = None,
              chat: bool = False, refresh: bool = False, engine_options: Mapping[str, Any] | None = None,
              **sampling: Any) -> Run:
    """Translate `field` of every result into `to` (adds the column `{field}_{to}`)."""
    from reasonry.tasks.followup import FollowUpConfig
    from reasonry.tasks.translate import translate as run_translate

    config = FollowUpConfig(params=sampling_params("translate", sampling, FollowUpConfig().params), chat=chat,
                            refresh=refresh, engine_options=dict(engine_options or {}))
    path = _db(run, db)
    summary = run_translate(_run_ref(run), to, model, field=field, template=template, out=out, db=path,
                            config=config)
    return Run(summary["run_id"], path, summary)


def check(run: str | Run, *, db: str | Path | None = None, models: Sequence[str] | None = None) -> dict[str, Any]:
    """Quality-check every finished result of `run`; returns the summary per model."""
    from reasonry.tasks.check import check_run

    store = Store.existing(_db(run, db))
    try:
        return check_run(store, store.resolve_run(_run_ref(run)), models=models)
    finally:
        store.close()


def export(run: str | Run | None, out: str | Path, *, db: str | Path | None = None, steering: bool = False,
           debate: str | None = None, license: str = "other", **options: Any) -> dict[str, Any]:
    """Write training data from a run (or the steering versions, or a debate run) to `out`: a data file, or a
    folder `out/` ready for the Hub (data/train.jsonl + a dataset card that `datasets.load_dataset` reads).

    Options are ExportOptions fields: format=, reasoning_style=, chat=, system=, models=, exclude_flags=,
    kinds= (debate rows), exclude_marks= ("duplicate", "contaminated"), ...
    """
    from reasonry.export import ExportOptions, export_dataset

    known = {f.name for f in dataclasses.fields(ExportOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"export(): unknown parameter {unknown[0]!r}; options are {', '.join(sorted(known))}")
    for name in ("models", "exclude_flags", "kinds", "exclude_marks"):
        if name in options:
            value = options[name]
            options[name] = (value,) if isinstance(value, str) else tuple(value)
    store = Store.existing(_db(run, db) if run is not None else Path(db or "reasonry.db"))
    try:
        return export_dataset(store, out, run_id=_run_ref(run) if run is not None else None, steering=steering,
                              debate_run=debate, options=ExportOptions(**options), license=license)
    finally:
        store.close()


def steer(question: str, model: str | ModelSpec, *, input: str = "", mode: str = "reasoning",
          reasoning: str | None = None, db: str | Path = "reasonry.db", chat: bool = False,
          engine_options: Mapping[str, Any] | None = None, **sampling: Any) -> Any:
    """Ask one steering question and store the answer as a version; returns the Version."""
    from reasonry.config import parse_model_spec
    from reasonry.engines.registry import load_engine
    from reasonry.tasks.steer import Steerer, Version

    spec = model if isinstance(model, ModelSpec) else parse_model_spec(model)
    params = sampling_params("steer", sampling)
    store = Store(db)
    try:
        with load_engine(spec, **dict(engine_options or {})) as engine:
            steerer = Steerer(store, {spec.label: engine}, chat=chat, params=params)
            version = None
            for piece in steerer.stream(spec.label, question, input, mode=mode, reasoning=reasoning):
                if isinstance(piece, Version):
                    version = piece
            if version is None:
                raise ReasonryError(f"steer(): model {spec.label} returned nothing")
            return version
    finally:
        store.close()


def debate(topics: DataLike, model_a: str | ModelSpec, *, model_b: str | ModelSpec | None = None,
           judge: str | ModelSpec | None = None, db: str | Path = "reasonry.db", out: str | Path | None = None,
           question_col: str | None = None, answer_col: str | None = None, **settings: Any) -> Run:
    """Grow debate trees over `topics`; settings are DebateConfig fields (rounds=, breadth=, max_nodes=, ...)."""
    from reasonry.config import parse_model_spec
    from reasonry.debate import read_topics, run_debate
    from reasonry.debate.config import DebateConfig

    def spec(value: str | ModelSpec | None) -> ModelSpec | None:
        return parse_model_spec(value) if isinstance(value, str) else value

    sampling = {k: settings.pop(k) for k in list(settings) if k in SAMPLING}
    known = {f.name for f in dataclasses.fields(DebateConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(f"debate(): unknown parameter {unknown[0]!r}")
    config = DebateConfig(model_a=spec(model_a), model_b=spec(model_b), judge=spec(judge),  # type: ignore[arg-type]
                          params=sampling_params("debate", sampling), **settings)
    with _as_path(topics) as path:
        rows = read_topics(path, question_col=question_col, answer_col=answer_col)
    summary = run_debate(rows, config, db=db, out=out, source=str(topics) if isinstance(topics, str | Path) else None)
    return Run(summary["run_id"], Path(db), summary)


def train(data: str | Path, base: str, out: str | Path, **settings: Any) -> dict[str, Any]:
    """LoRA fine-tuning of `base` on an exported file; settings are TrainConfig fields (epochs=, lr=, ...)."""
    from reasonry.train import TrainConfig
    from reasonry.train import train as run_train

    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(f"train(): unknown parameter {unknown[0]!r}; settings are {', '.join(sorted(known))}")
    return run_train(data, base, out, TrainConfig(**settings))


def usage(run: str | Run, *, db: str | Path | None = None,
          prices: Mapping[str, tuple[float, float]] | None = None) -> dict[str, dict[str, Any]]:
    """The run's usage ledger per model (requests, failures, retries, cached, tokens, engine seconds) and, with
    `prices` ({model or "*": (USD per 1M prompt tokens, per 1M completion tokens)}), the cost."""
    from reasonry.ledger import with_costs

    store = Store.existing(_db(run, db))
    try:
        return with_costs(store.run_usage(store.resolve_run(_run_ref(run))), dict(prices or {}))
    finally:
        store.close()


def dedup(source: str | Path | Run, *, db: str | Path | None = None, **settings: Any) -> dict[str, Any]:
    """Near-duplicates (MinHash/LSH) in a question file or a run; see reasonry.hygiene.dedup for the settings."""
    from reasonry import hygiene

    if isinstance(source, Run):
        source, db = source.run_id, db or source.db
    return hygiene.dedup(source, db=db or "reasonry.db", **settings)


def decontaminate(source: str | Path | Run, against: str | Path, *, db: str | Path | None = None,
                  **settings: Any) -> dict[str, Any]:
    """Rows that share a word n-gram (13 by default) with a benchmark file; see reasonry.hygiene.decontaminate."""
    from reasonry import hygiene

    if isinstance(source, Run):
        source, db = source.run_id, db or source.db
    return hygiene.decontaminate(source, against, db=db or "reasonry.db", **settings)
