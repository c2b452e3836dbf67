"""The Task shape every step shares (as distilabel's Task): input items -> planned requests, results -> fields.

`run_planned()` (tasks/execute.py) sits between the two halves: it stores every request with the run, sends
only those without a stored success, and stores what `format_output` reads from each result.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any

from reasonry.engines.base import Result
from reasonry.tasks.execute import Planned, parse_result


class Task(ABC):
    @abstractmethod
    def format_input(self, item: Any) -> Iterator[Planned]:
        """The requests one input item (a question row, a row's records) needs; a row that cannot become a
        prompt yields a Planned with `error` set (stored as that row's failure, no model call)."""

    def format_output(self, result: Result, produces: str) -> dict[str, Any]:
        """The fields stored for one result: text, reasoning and response split by what the prompt asked for."""
        return parse_result(result, produces)

    def plan(self, items: Iterable[Any]) -> Iterator[Planned]:
        for item in items:
            yield from self.format_input(item)
