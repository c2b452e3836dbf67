"""Adaptive concurrency of the openai engine against a local server whose concurrency limit changes mid-run.

The server (tests/limit_server.py, aiohttp on 127.0.0.1) answers 429 above its limit and takes 80 ms + 2 ms per
answer token (answers of 8-200 tokens, skewed short). The engine starts at --concurrency 48 while the server
allows 8, then 16, then 4. Compared: the adaptive limit (default) and a fixed one (`adaptive=False`, the old
behaviour: retries with backoff only). "use" is the busy share of the server's slots.

    python bench/adaptive_concurrency.py [--phase-s 10] [--write-docs]
"""

from __future__ import annotations

import argparse
import platform
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from docs_section import replace_section, short_commit  # noqa: E402
from limit_server import LimitServer  # noqa: E402

from reasonry.config import SamplingParams, parse_model_spec  # noqa: E402
from reasonry.engines.base import Request  # noqa: E402
from reasonry.engines.openai import OpenAIEngine  # noqa: E402

SECTION = "## Adaptive concurrency (openai engine) (`bench/adaptive_concurrency.py`)"
LIMITS = (8, 16, 4)
MEAN_SERVICE_S = 0.08 + 0.002 * 72  # mean answer length of LimitServer.tokens_for: about 72 tokens


def scenario(adaptive: bool, phase_s: float) -> list[str]:
    rows = int(sum(limit / MEAN_SERVICE_S * phase_s for limit in LIMITS) * 1.05)
    with LimitServer(LIMITS[0], base_ms=80, per_token_ms=2) as server:
        engine = OpenAIEngine(parse_model_spec(f"openai:m@{server.url}"), concurrency=48, adaptive=adaptive)
        start = time.monotonic()

        def change() -> None:
            for i, limit in enumerate(LIMITS[1:], start=1):
                time.sleep(max(0.0, start + i * phase_s - time.monotonic()))
                server.set_limit(limit)

        threading.Thread(target=change, daemon=True).start()
        results = list(engine.generate(Request(key=str(i), params=SamplingParams(), prompt=f"row {i}")
                                       for i in range(rows)))
        end = time.monotonic()
        failed = sum(1 for r in results if r.error)
        last_sent = max(begin for begin, _ in server.busy)
        name = "adaptive" if adaptive else "fixed 48"
        lines = []
        for i, limit in enumerate(LIMITS):
            a, b = start + i * phase_s, min(start + (i + 1) * phase_s, last_sent)
            steady = a + 2.0
            if b <= steady:
                continue
            ok, rejected = server.count(server.successes, steady, b), server.count(server.rejections, steady, b)
            first = server.count(server.rejections, a, steady)
            lines.append(f"| {name} | {limit} | {server.use_of_limit(steady, b):.2f} | {ok / (b - steady):.1f} | "
                         f"{limit / MEAN_SERVICE_S:.1f} | {first} | {rejected} ({rejected / max(1, ok):.1%}) | "
                         f"{failed if i == 0 else ''} |")
        lines.append(f"| {name}, whole run | – | {server.use_of_limit(start, last_sent):.2f} | "
                     f"{len(results) / (end - start):.1f} | – | – | {len(server.rejections)} total | {failed} |")
        return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--phase-s", type=float, default=10.0)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    header = ["| client | server limit | use of limit | answers/s | ideal answers/s | 429s in first 2 s | "
              "429s after (share of answers) | requests failed |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines = header + scenario(True, args.phase_s) + scenario(False, args.phase_s)
    table = "\n".join(lines)
    print(table)
    if args.write_docs:
        write_docs(table, args.phase_s)


def write_docs(table: str, phase_s: float) -> None:
    commit = short_commit()
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    body = (f"{SECTION}\n\nMachine: {platform.machine()}, {platform.system()}, Python {platform.python_version()}; "
            f"{time.strftime('%Y-%m-%d')}; commit {commit}; load average {load} (shared machine). Client and server "
            f"in one process. Phases of {phase_s:g} s with the server limit at {', '.join(map(str, LIMITS))}; "
            "measures per phase after its first 2 s, up to the last request sent. `--concurrency 48`, "
            "`max_retries` 5.\n\n" + table + "\n")
    replace_section(SECTION, body)


if __name__ == "__main__":
    main()
