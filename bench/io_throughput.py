"""Rows per second of the question readers and the output writers, per format.

    python bench/io_throughput.py [--rows 50000]

Rows look like a real run's: a question, an input, a ~1,500-character reasoning, a response and metadata.
Prints a table (format, read rows/s, write rows/s, file MB).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from reasonry.io.readers import open_rows
from reasonry.io.writers import write_table

COLUMNS = ["seq", "question", "input", "reasoning", "response", "model", "completion_tokens", "latency_s"]
FORMATS = (".jsonl", ".json", ".csv", ".parquet", ".xlsx")


def rows(count: int) -> list[dict]:
    step = "First, note the numbers involved; then check each step against the question. "
    return [{"seq": i + 1, "question": f"Question {i}: what is {i} squared, and why?", "input": "" if i % 3 else "ctx",
             "reasoning": step * (12 + i % 17), "response": f"{i * i}.", "model": "m",
             "completion_tokens": 300 + i % 97, "latency_s": 0.5 + (i % 13) / 10} for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()
    data = rows(args.rows)
    print(f"{'format':<9} {'write rows/s':>13} {'read rows/s':>12} {'MB':>7}")
    with tempfile.TemporaryDirectory() as folder:
        for suffix in FORMATS:
            path = Path(folder) / f"q{suffix}"
            started = time.perf_counter()
            write_table(path, COLUMNS, iter(data))
            wrote = args.rows / (time.perf_counter() - started)
            started = time.perf_counter()
            count = sum(1 for _ in open_rows(path))
            read = count / (time.perf_counter() - started)
            assert count == args.rows
            print(f"{suffix:<9} {wrote:>13,.0f} {read:>12,.0f} {path.stat().st_size / 1e6:>7.1f}")


if __name__ == "__main__":
    main()
