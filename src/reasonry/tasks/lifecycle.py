"""`open_run()`: the one run lifecycle every task goes through (status running -> done | failed | interrupted)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasonry.store import Store


@dataclass
class OpenRun:
    """A run being worked on; the task sets `summary`, which is stored with the final status."""

    store: Store
    run_id: str
    task: str
    summary: dict[str, Any] = field(default_factory=dict)


@contextmanager
def open_run(store: Store, kind: str, *, source: str | None = None, config: dict[str, Any] | None = None,
             models: Sequence[tuple[str, str]] = (), run_id: str | None = None,
             on: str | None = None) -> Iterator[OpenRun]:
    """Create (or reopen, with `run_id`) a run and record how it ends: done, failed or interrupted. A run the same
    command started and did not finish (interrupted, or its process gone) is reopened, unless its source file has
    changed since it started.

    With `on`, the task adds to an existing run (ensemble, translate): the run keeps its own status and
    summary, and this task's status and summary are recorded in its config under `tasks.<kind>`.
    """
    if on is None:
        if run_id is None:
            earlier = store.interrupted_run(kind, source, config or {}, models)
            if earlier is not None and not _changed_since(source, earlier["created_at"]):
                run_id = earlier["id"]
        run = OpenRun(store, store.create_run(kind, source=source, config=config or {}, models=models,
                                              run_id=run_id), kind)
    else:
        run = OpenRun(store, on, kind)
        _record_task(store, run, "running")
    status = "failed"
    try:
        yield run
        status = "done"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if on is None:
            store.finish_run(run.run_id, status, run.summary)
        else:
            _record_task(store, run, status)


def _changed_since(source: str | None, started: float) -> bool:
    path = Path(source) if source else None
    return path is not None and path.exists() and path.stat().st_mtime > started


def _record_task(store: Store, run: OpenRun, status: str) -> None:
    tasks = dict(store.get_run(run.run_id)["config"].get("tasks") or {})
    tasks[run.task] = {"status": status, "at": time.time(), "summary": run.summary}
    store.update_run_config(run.run_id, tasks=tasks)
