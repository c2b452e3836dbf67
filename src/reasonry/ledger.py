"""Reading the usage ledger: price tables (`--price MODEL=IN/OUT`, USD per 1M tokens) and costs per model."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from reasonry.errors import ConfigError

Prices = dict[str, tuple[float, float]]


def parse_prices(values: Iterable[str] | None) -> Prices:
    """`MODEL=IN/OUT` (prices per 1M prompt / completion tokens), repeatable; `*=IN/OUT` applies to every model."""
    prices: Prices = {}
    for value in values or ():
        model, sep, pair = value.rpartition("=")
        parts = pair.split("/")
        try:
            numbers = tuple(float(p) for p in parts)
        except ValueError:
            numbers = ()
        if not sep or not model or len(numbers) != 2 or not all(math.isfinite(n) and n >= 0 for n in numbers):
            raise ConfigError(f"--price {value!r}: write MODEL=IN/OUT, USD per 1M prompt/completion tokens "
                              "(e.g. --price gpt-4o-mini=0.15/0.60, or *=0.15/0.60 for every model)")
        prices[model] = (numbers[0], numbers[1])
    return prices


def price_of(model: str, prices: Prices) -> tuple[float, float] | None:
    return prices.get(model) or prices.get("*")


def with_costs(usage: dict[str, dict[str, Any]], prices: Prices) -> dict[str, dict[str, Any]]:
    """The ledger rows with a `cost` (USD, None without a price for that model) and a `total` row."""
    rows: dict[str, dict[str, Any]] = {}
    for model, counts in usage.items():
        price = price_of(model, prices)
        cost = None if price is None else (counts["prompt_tokens"] * price[0]
                                           + counts["completion_tokens"] * price[1]) / 1e6
        rows[model] = {**counts, "cost": cost}
    if len(rows) > 1:
        total = {name: sum(r[name] for r in rows.values()) for name in next(iter(usage.values()))}
        costs = [r["cost"] for r in rows.values() if r["cost"] is not None]
        rows["total"] = {**total, "cost": sum(costs) if costs else None}
    return rows


LEDGER_COLUMNS = ("requests", "failures", "retries", "cached", "prompt_tokens", "completion_tokens",
                  "engine_seconds", "cost")


def format_cell(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name == "engine_seconds":
        return f"{value:.1f}"
    if name == "cost":
        return f"${value:.4f}"
    return f"{value:,}"
