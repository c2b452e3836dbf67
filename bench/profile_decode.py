"""Where a decode step of the hf engine spends its time (torch.profiler), on the Qwen2.5-1.5B shape."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_throughput import build_model, make_prompts  # noqa: E402

from reasonry.config import SamplingParams, parse_model_spec  # noqa: E402
from reasonry.engines.hf import HFEngine  # noqa: E402


def main() -> None:
    import tempfile

    folder = Path(tempfile.mkdtemp()) / "m"
    model, tokenizer = build_model(folder)
    del model
    engine = HFEngine(parse_model_spec(f"hf:{folder}"), ignore_eos=True)
    texts, ids = make_prompts(engine.tokenizer, 512, 128)
    batch = [(None, t, i) for t, i in zip(texts, ids, strict=True)]

    class R:
        sample_index = 0
    batch = [(R(), t, i) for _, t, i in batch]
    for label, params in {
        "seed sampling": SamplingParams(max_new_tokens=32),
        "no rep penalty": SamplingParams(max_new_tokens=32, repetition_penalty=1.0),
        "greedy": SamplingParams(max_new_tokens=32, temperature=0, repetition_penalty=1.0),
    }.items():
        engine._decode(batch[:8], params.with_(max_new_tokens=4))
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.inference_mode():
            engine._decode(batch, params)
        torch.cuda.synchronize()
        print(f"{label}: {(time.perf_counter() - start) / 32 * 1000:.1f} ms/step (incl. prefill)", flush=True)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]) as prof:
        with torch.inference_mode():
            engine._decode(batch, SamplingParams(max_new_tokens=16))
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25))
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
