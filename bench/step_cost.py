"""Where a decode step's time goes on a GPU: the engine's pieces timed apart with CUDA events, Qwen2.5-1.5B shape,
the seed's sampling, every row decoding at `--kv` keys. Prints a table per batch size.

    python bench/step_cost.py [--batches 512,64,8] [--kv 256]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_throughput import SEED_SAMPLING, build_model, replayed  # noqa: E402

from reasonry.config import SamplingParams, parse_model_spec  # noqa: E402
from reasonry.engines.hf import HFEngine  # noqa: E402
from reasonry.engines.hf.sampling import plan_for, sample, top_candidates  # noqa: E402


def gpu_ms(fn, repeat: int = 20) -> float:
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeat):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeat


def measure(runner, batch: int, kv: int, plan) -> dict[str, float]:
    graph, logits = runner._graph(batch, kv)
    rows = runner.rows(slice(0, batch))
    history = runner._history(slice(0, batch), runner.lens[:batch], kv)

    def step() -> None:
        runner.decode_step(batch, kv, plan)
        runner.lens[:batch].fill_(kv - 1)

    return {
        "forward (graph replay)": gpu_ms(graph.replay),
        "whole step (decode_step)": gpu_ms(step),
        "sample()": gpu_ms(lambda: sample(logits.clone(), history, rows, plan)),
        "  logits.clone() (in the line above)": gpu_ms(logits.clone),
        "  top-k candidates": gpu_ms(lambda: top_candidates(logits, plan.top_k)),
        "  history for the penalty": gpu_ms(lambda: runner._history(slice(0, batch), runner.lens[:batch], kv)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", default="512,64,8")
    parser.add_argument("--kv", type=int, default=256)
    parser.add_argument("--attention", default="", help="batch:kv,... forward only, flash vs masked SDPA")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp()) / "m"
    model, _ = build_model(folder)
    del model
    torch.cuda.empty_cache()
    engine = HFEngine(parse_model_spec(f"hf:{folder}"), ignore_eos=True)
    runner = engine.loop.runner
    params = SamplingParams(max_new_tokens=256, **SEED_SAMPLING)
    plan = plan_for([params], runner.vocab)
    report = {}
    with torch.inference_mode():
        for batch in [int(b) for b in args.batches.split(",")]:
            runner.set_params(list(range(batch)), [params] * batch, list(range(batch)))
            runner.active[:batch] = 1
            runner.lens[:batch] = args.kv - 1
            runner.history[:batch].random_(0, runner.vocab)
            row = measure(runner, batch, args.kv, plan)
            row["step - forward"] = row["whole step (decode_step)"] - row["forward (graph replay)"]
            report[batch] = row
            print(f"\nbatch {batch}, kv {args.kv}")
            for name, ms in row.items():
                print(f"  {name:40} {ms:8.3f} ms")
        for pair in filter(None, args.attention.split(",")):
            batch, kv = (int(x) for x in pair.split(":"))
            report[f"forward b{batch} kv{kv}"] = row = {}
            for flash in (True, False):
                runner.cache.flash = flash
                runner.drop_graphs()
                runner.active[:batch] = 1
                row["flash" if flash else "sdpa"] = replayed(runner, batch, kv)["step_ms"]
            print(f"forward b{batch} kv{kv}: " + ", ".join(f"{k} {v:.3f} ms" for k, v in row.items()))
    engine.close()
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
