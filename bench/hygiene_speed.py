"""Speed and peak memory of `dedup` and `decontaminate` on a large question file (CPU only).

Writes a JSONL file of N synthetic questions (10-80 words from a 20k-word vocabulary, Zipf-like; 5 % are
near-copies of an earlier row with one or two words changed; 0.5 % embed a benchmark question), and a
1,000-question benchmark file, then runs each operation in a fresh child process (peak RSS is the child's).

    python bench/hygiene_speed.py --rows 1000000             # prints a table
    python bench/hygiene_speed.py --rows 1000000 --write-docs
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from docs_section import replace_section, short_commit

HERE = Path(__file__).resolve().parent
SECTION = "## Data hygiene: dedup and decontaminate speed (`bench/hygiene_speed.py`)"


def make_files(folder: Path, rows: int, seed: int = 0) -> tuple[Path, Path]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(20_000)]
    cumulative = list(itertools.accumulate(1.0 / (i + 1) for i in range(len(vocab))))

    def sentence(n: int) -> list[str]:
        return rng.choices(vocab, cum_weights=cumulative, k=n)

    bench_questions = [" ".join(sentence(rng.randint(20, 60))) for _ in range(1000)]
    bench = folder / "bench.jsonl"
    bench.write_text("".join(json.dumps({"question": q}) + "\n" for q in bench_questions), encoding="utf-8")
    data = folder / "data.jsonl"
    recent: list[list[str]] = []
    with open(data, "w", encoding="utf-8") as handle:
        for i in range(rows):
            roll = rng.random()
            if roll < 0.05 and recent:
                words = list(rng.choice(recent))
                for _ in range(rng.randint(1, 2)):
                    words[rng.randrange(len(words))] = rng.choice(vocab)
            elif roll < 0.055:
                words = sentence(5) + rng.choice(bench_questions).split() + sentence(5)
            else:
                words = sentence(rng.randint(10, 80))
                recent = (recent + [words])[-1000:]
            handle.write(json.dumps({"seq": i + 1, "question": " ".join(words).capitalize() + "?"}) + "\n")
    return data, bench


CHILD = """
import json, resource, sys, time
from reasonry.hygiene import dedup, decontaminate
op, data, bench, folder = sys.argv[1:5]
started = time.perf_counter()
if op == "dedup":
    summary = dedup(data, report=folder + "/dups.jsonl", out=folder + "/kept.jsonl")
else:
    summary = decontaminate(data, bench, report=folder + "/contaminated.jsonl", out=folder + "/clean.jsonl")
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"op": op, "seconds": seconds, "peak_mib": peak, "summary": summary}))
"""


def run(op: str, data: Path, bench: Path, folder: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, op, str(data), str(bench), str(folder)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        data, bench = make_files(folder, args.rows)
        size_mib = data.stat().st_size / 2**20
        print(f"wrote {args.rows} rows ({size_mib:.0f} MiB) in {time.perf_counter() - started:.0f}s", flush=True)
        results = [run(op, data, bench, folder) for op in ("dedup", "decontaminate")]
    lines = ["| operation | rows | input MiB | seconds | rows/s | peak RSS MiB | found |", "|---|---|---|---|---|---|---|"]
    for r in results:
        found = r["summary"].get("duplicates", r["summary"].get("contaminated"))
        lines.append(f"| {r['op']} | {args.rows:,} | {size_mib:.0f} | {r['seconds']:.0f} | "
                     f"{args.rows / r['seconds']:,.0f} | {r['peak_mib']:.0f} | {found:,} |")
    table = "\n".join(lines)
    print(table)
    if args.write_docs:
        write_docs(table)


def write_docs(table: str) -> None:
    commit = short_commit()
    machine = f"{platform.processor() or platform.machine()}, {platform.system()}, Python {platform.python_version()}"
    body = (f"{SECTION}\n\nMachine: {machine}; {time.strftime('%Y-%m-%d')}; commit {commit}. One process, one core; "
            "the input is streamed (never loaded whole) and kept/clean rows are streamed to --out.\n"
            "dedup: MinHash (128 permutations, word 3-grams) + LSH at threshold 0.8, field question. "
            "decontaminate: 13-gram overlap against a 1,000-question benchmark.\n\n" + table + "\n")
    replace_section(SECTION, body)


if __name__ == "__main__":
    main()
