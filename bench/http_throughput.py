"""Throughput of `reasonry generate` through the openai engine against a local mock server (CPU only).

Each scenario runs `reasonry.tasks.generate.generate` (library API, .jsonl output) in a fresh child process
against `bench/mock_openai_server.py` in another process, then checks the output and the server's count for
lost or duplicated rows.

    python bench/http_throughput.py                # all scenarios, prints a table
    python bench/http_throughput.py --quick        # smaller row counts
    python bench/http_throughput.py --write-docs   # also writes the table into docs/benchmarks.md
    python bench/http_throughput.py --profile 100000  # cProfile of one 0 ms run, top functions
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs" / "benchmarks.md"
SECTION = "## HTTP throughput (openai engine)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MockServer:
    def __init__(self, delay_ms: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "mock_openai_server.py"), "--port", str(self.port), "--delay-ms",
             str(delay_ms)], stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("mock server did not start")

    def answered(self) -> int:
        return int(httpx.get(f"http://127.0.0.1:{self.port}/stats").json()["requests"])

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def write_questions(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        for i in range(rows):
            out.write(json.dumps({"seq": i, "question": f"Question {i}: what is {i} plus {i * 7 % 13}?"}) + "\n")


def simulate_template_cache() -> None:
    """Compile each template once instead of once per row: the fix proposed for prompts/library.py
    (PromptTemplate.render and needs_reasoning re-parse the source on every call). Benchmark-only patch."""
    import functools

    from reasonry.prompts import library

    compiled = functools.lru_cache(maxsize=64)(library.ENV.from_string)
    variables = functools.lru_cache(maxsize=64)(lambda source: frozenset(library._variables(source)))
    library.PromptTemplate.render = lambda self, **values: compiled(self.source).render(**values)
    library.PromptTemplate.needs_reasoning = property(
        lambda self: "reasoning" in variables(self.source) and self.produces == "response")


def run_one(args: argparse.Namespace) -> None:
    """Child process: one generate() call; prints a JSON line with timings and its own resource use."""
    if args.simulate_fix:
        simulate_template_cache()
    from reasonry.tasks.generate import GenerateConfig, generate

    config = GenerateConfig(template="alpaca-reasoning",
                            engine_options={"concurrency": args.concurrency, "timeout": 60.0})
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    summary = generate(args.input, [f"openai:bench@{args.url}"], out=args.out, db=args.db, config=config)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({"seconds": seconds, "cpu_s": cpu, "max_rss_mb": after.ru_maxrss / 1024,
                      "generated": summary["generated"], "failed": summary["failed"]}))


def scenario(name: str, rows: int, delay_ms: float, concurrency: int, work: Path,
             simulate_fix: bool = False) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    source, out, db = work / f"q{rows}.jsonl", work / f"{name}.jsonl", work / f"{name}.db"
    if not source.exists():
        write_questions(source, rows)
    for path in (out, db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        path.unlink(missing_ok=True)
    server = MockServer(delay_ms)
    try:
        server_cpu = server.cpu_seconds()
        child = subprocess.run(
            [sys.executable, __file__, "--one", "--input", str(source), "--out", str(out), "--db", str(db),
             "--url", server.url, "--concurrency", str(concurrency)] + (["--simulate-fix"] if simulate_fix else []),
            capture_output=True, text=True, check=False)
        if child.returncode != 0:
            raise RuntimeError(f"{name}: generate failed:\n{child.stderr[-3000:]}")
        measured = json.loads(child.stdout.strip().splitlines()[-1])
        answered = server.answered()
        server_cpu = server.cpu_seconds() - server_cpu
    finally:
        server.close()
    seqs = [json.loads(line)["seq"] for line in out.open(encoding="utf-8")]
    ideal = concurrency / (delay_ms / 1000) if delay_ms else None
    rate = rows / measured["seconds"]
    return {
        "scenario": name + (" (template fix)" if simulate_fix else ""), "rows": rows, "delay_ms": delay_ms, "concurrency": concurrency,
        "seconds": round(measured["seconds"], 2), "rows_per_s": round(rate),
        "ideal_ratio": round(rate / ideal, 2) if ideal else None,
        "lost": rows - len(set(seqs)), "duplicated": len(seqs) - len(set(seqs)),
        "server_extra_requests": answered - rows, "failed": measured["failed"],
        "client_cpu_s": round(measured["cpu_s"], 1), "server_cpu_s": round(server_cpu, 1),
        "peak_rss_mb": round(measured["max_rss_mb"]),
    }


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores (nproc), {cpu}, Python {platform.python_version()}, {platform.system()}"


COLUMNS = ("scenario", "rows", "delay_ms", "concurrency", "seconds", "rows_per_s", "ideal_ratio", "lost",
           "duplicated", "server_extra_requests", "client_cpu_s", "server_cpu_s", "peak_rss_mb")


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for result in results:
        lines.append("| " + " | ".join("" if result[c] is None else str(result[c]) for c in COLUMNS) + " |")
    return "\n".join(lines)


def write_docs(text: str) -> None:
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    current = DOCS.read_text(encoding="utf-8") if DOCS.exists() else "# Benchmarks\n"
    start = current.find(SECTION)
    if start == -1:
        updated = current.rstrip() + "\n\n" + text.rstrip() + "\n"
    else:
        end = current.find("\n## ", start + len(SECTION))
        updated = current[:start] + text.rstrip() + "\n" + (current[end:] if end != -1 else "")
    DOCS.write_text(updated, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description="openai engine throughput through reasonry generate")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--db", type=Path)
    parser.add_argument("--url")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="1k/10k/100k rows instead of 10k/100k/1M")
    parser.add_argument("--repeat", type=int, default=2, help="runs of the 100 ms scenario (noisy machine)")
    parser.add_argument("--only", choices=("latency", "rows", "memory"), action="append")
    parser.add_argument("--work", type=Path, default=Path("/tmp/reasonry-bench"))
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--simulate-fix", action="store_true",
                        help="compile templates once per run (the fix proposed for prompts/library.py)")
    args = parser.parse_args()
    if args.one:
        run_one(args)
        return
    scale = 10 if args.quick else 1
    plan = [("latency", f"100ms-{i + 1}", 10_000 // scale, 100.0) for i in range(args.repeat)]
    plan += [("rows", "0ms", 100_000 // scale, 0.0), ("memory", "0ms-1M", 1_000_000 // scale, 0.0)]
    results = []
    for kind, name, rows, delay in plan:
        if args.only and kind not in args.only:
            continue
        result = scenario(name, rows, delay, args.concurrency, args.work, args.simulate_fix)
        print(json.dumps(result), flush=True)
        results.append(result)
    header = f"{SECTION}\n\nMeasured {time.strftime('%Y-%m-%d')} on {machine()}; `python bench/http_throughput.py`."
    text = header + "\n\n" + table(results) + "\n"
    print("\n" + text)
    if args.write_docs:
        write_docs(text)


if __name__ == "__main__":
    main()
