"""Where the hf engine's loop spends its time (torch.profiler over `HFEngine.generate`), Qwen2.5-1.5B shape.

    python bench/profile_decode.py [--prompts 512] [--new-tokens 64]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_throughput import PROMPT_TOKENS, SEED_SAMPLING, build_model, make_prompts  # noqa: E402

from reasonry.config import SamplingParams, parse_model_spec  # noqa: E402
from reasonry.engines.base import Request  # noqa: E402
from reasonry.engines.hf import HFEngine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=512)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp()) / "m"
    model, tokenizer = build_model(folder)
    del model
    engine = HFEngine(parse_model_spec(f"hf:{folder}"), ignore_eos=True)
    texts, _ = make_prompts(engine.tokenizer, args.prompts, PROMPT_TOKENS)
    params = SamplingParams(max_new_tokens=args.new_tokens, **SEED_SAMPLING)
    requests = [Request(key=str(i), params=params, prompt=t) for i, t in enumerate(texts)]
    list(engine.generate(requests))  # captures the CUDA graphs this work needs
    start = time.perf_counter()
    list(engine.generate([Request(key=f"w{r.key}", params=params, prompt=r.prompt + " ") for r in requests]))
    torch.cuda.synchronize()
    print(f"warm run: {args.prompts * args.new_tokens / (time.perf_counter() - start):,.0f} tok/s", flush=True)
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    start = time.perf_counter()
    with torch.profiler.profile(activities=activities) as prof:
        list(engine.generate([Request(key=f"p{r.key}", params=params, prompt=r.prompt + "  ") for r in requests]))
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    events = prof.key_averages()
    print(events.table(sort_by="self_cuda_time_total", row_limit=40, max_name_column_width=70))
    print(events.table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=70))
    kernels = sum(e.self_device_time_total for e in events) / 1e6
    print(f"profiled wall {wall:.2f} s; GPU kernel time {kernels:.2f} s ({kernels / wall:.0%} busy)")
    print(engine.loop.stats)


if __name__ == "__main__":
    main()
