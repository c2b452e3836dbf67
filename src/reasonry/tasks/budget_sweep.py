"""Thinking-budget sweep: for each budget, every row's reasoning cut at that many tokens, then the response.

`generate --reasoning-budget 64,128,256` runs this after the normal generation of each model: one extra column
per budget ("budget 64", ...) beside the unbudgeted result, so the output shows where quality stops improving.
Two batched calls per budget through the plain Engine interface (so every engine can do it): the reasoning up to
N tokens stopping at the section end, then the response from the closed reasoning.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from reasonry.config import SamplingParams
from reasonry.engines.base import Engine, Request, request_key
from reasonry.errors import ConfigError
from reasonry.extract import split_output
from reasonry.store import Store, Usage
from reasonry.tasks.steer import make_request
from reasonry.tasks.steer_formats import SteerFormat


def parse_budgets(text: str) -> tuple[int, ...]:
    """'64,128,256' -> (64, 128, 256)."""
    try:
        budgets = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise ConfigError(f"--reasoning-budget {text!r}: give token counts separated by commas, e.g. 64,128,256") from None
    if not budgets or min(budgets) < 1:
        raise ConfigError(f"--reasoning-budget {text!r}: every budget must be >= 1")
    return tuple(sorted(set(budgets)))


def column_name(budget: int) -> str:
    return f"budget {budget}"


def sweep_budgets(store: Store, run_id: str, engine: Engine, label: str, fmt: SteerFormat, budgets: Sequence[int],
                  params: SamplingParams, *, close: str = "") -> dict[str, int]:
    """Add one column per budget to `run_id` for model `label`; cached results are kept (and linked to this run).
    Returns rows per column. What is generated goes into the run's usage ledger."""
    rows = list(store.run_inputs(run_id))
    done: dict[str, int] = {}
    stop = tuple(dict.fromkeys((fmt.end_marker, *params.stop)))
    spec = engine.spec
    for budget in budgets:
        column = column_name(budget)
        first: list[tuple[dict[str, Any], Request, str]] = []
        for row in rows:
            request = make_request(engine, fmt.inside(row["question"], row["input"] or ""),
                                   params.with_(max_new_tokens=budget, stop=stop))
            key = request_key(spec, f"{column}\n{request.prompt}", request.messages, request.prefill, params, 0)
            first.append((row, request, key))
        store.add_requests(run_id, [(row["row_index"], label, 0, key, column) for row, _, key in first],
                           [(Request(key=key, params=params, prompt=f"{column}\n{request.prompt or ''}"), spec.kind,
                             spec.model, spec.adapter, "reasoning") for _, request, key in first])
        cached = store.done_keys([key for _, _, key in first])
        wanted = [item for item in first if item[2] not in cached]
        started = time.perf_counter()
        thoughts = {result.key: result for result in engine.generate([request for _, request, _ in wanted])}
        second, items = [], []
        usage = Usage(cached=len(first) - len(wanted))
        for row, request, key in wanted:
            thought = thoughts[request.key]
            usage.count(thought)
            if thought.error is not None:  # no answer without a thought: the row keeps the thought's error
                items.append({"key": key, "text": "", "raw_text": "", "reasoning": "", "response": "",
                              "prompt_tokens": thought.prompt_tokens, "completion_tokens": thought.completion_tokens,
                              "finish_reason": thought.finish_reason, "latency_s": thought.latency_s,
                              "error": thought.error})
                continue
            reasoning = thought.text.split(fmt.end_marker, 1)[0].strip()
            reasoning += close if thought.finish_reason == "length" else ""
            call = fmt.build("special", row["question"], row["input"] or "", reasoning, empty_ok=True)
            second.append((key, reasoning, thought, make_request(engine, call, params)))
        answers = {result.key: result for result in engine.generate([item[-1] for item in second])}
        usage.engine_seconds = time.perf_counter() - started
        for key, reasoning, thought, request in second:
            answer = answers[request.key]
            usage.count(answer)
            text = reasoning + fmt.section_end + answer.text
            items.append({"key": key, "text": text, "raw_text": text, "reasoning": reasoning,
                          "response": split_output(answer.text, "response")[1], "prompt_tokens": thought.prompt_tokens,
                          "completion_tokens": thought.completion_tokens + answer.completion_tokens,
                          "finish_reason": answer.finish_reason, "latency_s": thought.latency_s + answer.latency_s,
                          "error": answer.error})
        with store.transaction():
            store.put_results(items)
            store.add_usage(run_id, label, usage)
        done[column] = len(first)
    config = store.get_run(run_id)["config"]
    columns = [c for c in config.get("translations", []) if c not in done] + list(done)
    store.update_run_config(run_id, translations=columns, reasoning_budgets=list(budgets))
    return done
