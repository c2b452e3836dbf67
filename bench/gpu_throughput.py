"""GPU throughput: the seed's one-prompt loop vs raw transformers paths vs `reasonry generate` (hf engine).

A Qwen2.5-1.5B-shaped model (hidden 1536, 28 layers, 12 heads, 2 KV heads, MLP 8960, vocab 151936) with random
bf16 weights, 512 prompts of 128 tokens, 256 new tokens each (no early stop), the seed's sampling settings
(temperature 0.3, top_p 0.9, top_k 50, repetition_penalty 1.1). All measured in one process, one run.

    python bench/gpu_throughput.py --out results.json [--prompts 512] [--new-tokens 256]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

SEED_SAMPLING = {"temperature": 0.3, "top_p": 0.9, "top_k": 50, "repetition_penalty": 1.1}


def build_model(folder: Path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from reasonry.tiny import build_tokenizer

    tokenizer = build_tokenizer(folder)
    config = Qwen2Config(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=4096,
                         tie_word_embeddings=True, eos_token_id=None, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = Qwen2ForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    return model.eval(), tokenizer


def make_prompts(tokenizer, count: int, length: int) -> tuple[list[str], list[list[int]]]:
    texts, ids = [], []
    number = 0
    while len(texts) < count:
        number += 1
        words = " ".join(str((number * 7919 + i * 104729) % 997) for i in range(length * 2))
        tokens = tokenizer(words, add_special_tokens=False)["input_ids"][:length]
        text = tokenizer.decode(tokens)
        if tokenizer(text, add_special_tokens=False)["input_ids"] == tokens:
            texts.append(text)
            ids.append(tokens)
    return texts, ids


def timed(fn) -> tuple[float, object]:
    torch.cuda.synchronize()
    start = time.perf_counter()
    value = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start, value


def seed_loop(model, tokenizer, ids: list[list[int]], new_tokens: int) -> float:
    """Seed 000: one prompt at a time through model.generate."""
    generated = 0
    def run():
        nonlocal generated
        for prompt in ids:
            inputs = torch.tensor([prompt], device="cuda")
            out = model.generate(input_ids=inputs, attention_mask=torch.ones_like(inputs), do_sample=True,
                                 max_new_tokens=new_tokens, min_new_tokens=new_tokens, **SEED_SAMPLING)
            generated += out.shape[1] - inputs.shape[1]
    seconds, _ = timed(run)
    return generated / seconds


def padded_generate(model, tokenizer, ids: list[list[int]], new_tokens: int, batch: int) -> float:
    generated = 0
    def run():
        nonlocal generated
        for start in range(0, len(ids), batch):
            chunk = ids[start:start + batch]
            inputs = torch.tensor(chunk, device="cuda")
            out = model.generate(input_ids=inputs, attention_mask=torch.ones_like(inputs), do_sample=True,
                                 max_new_tokens=new_tokens, min_new_tokens=new_tokens, **SEED_SAMPLING)
            generated += (out.shape[1] - inputs.shape[1]) * len(chunk)
    seconds, _ = timed(run)
    return generated / seconds


def cb_generate(model, ids: list[list[int]], new_tokens: int, **cb) -> float:
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    config = GenerationConfig(max_new_tokens=new_tokens, do_sample=True, eos_token_id=None, pad_token_id=0,
                              **SEED_SAMPLING)
    cb_config = ContinuousBatchingConfig(**cb) if cb else None
    def run():
        return model.generate_batch(inputs=ids, generation_config=config, continuous_batching_config=cb_config,
                                    progress_bar=False)
    seconds, outputs = timed(run)
    generated = sum(len(o.generated_tokens) for o in outputs.values())
    return generated / seconds


def reasonry_e2e(folder: Path, texts: list[str], new_tokens: int, work: Path, **engine) -> dict:
    import reasonry
    from reasonry.engines import registry
    from reasonry.engines.registry import load_engine

    questions = work / "q.jsonl"
    questions.write_text("\n".join(json.dumps({"seq": i, "question": t if i < 512 else f"{i} {t}"})
                                   for i, t in enumerate(texts)),
                         encoding="utf-8")
    template = work / "plain.j2"
    template.write_text("{{ instruction }}", encoding="utf-8")
    params = reasonry.SamplingParams(max_new_tokens=new_tokens, **SEED_SAMPLING)
    load_seconds = []

    def timed_load(spec, **options):
        start = time.perf_counter()
        engine_ = load_engine(spec, **options)
        torch.cuda.synchronize()
        load_seconds.append(time.perf_counter() - start)
        return engine_

    registry.load_engine = timed_load  # generate loads engines through registry.open_engine
    db = work / f"bench-{len(list(work.glob('*.db')))}.db"
    seconds, summary = timed(lambda: reasonry.generate(
        questions, [f"hf:{folder}"], out=work / "out.jsonl", db=db,
        config=reasonry.GenerateConfig(template=str(template), params=params,
                                       engine_options={"ignore_eos": True, **engine})))
    generated = summary["completion_tokens"]
    without_load = seconds - load_seconds[0]
    return {"tok_s": generated / without_load, "tok_s_with_load": generated / seconds, "load_s": load_seconds[0],
            "generated": generated, "summary": summary}


def copy_bandwidth() -> float:
    x = torch.empty(2 * 1024**3, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    seconds, _ = timed(lambda: [y.copy_(x) for _ in range(10)])
    return 2 * x.numel() * 10 / seconds  # bytes read + written per second


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=512)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--seed-loop-prompts", type=int, default=3)
    parser.add_argument("--skip", default="", help="comma list of steps to skip: seed,padded,cb,reasonry")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    work = Path(tempfile.mkdtemp(prefix="reasonry-bench-"))
    folder = work / "qwen2.5-1.5b-shape"
    model, tokenizer = build_model(folder)
    texts, ids = make_prompts(tokenizer, args.prompts, args.prompt_tokens)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    rows: dict[str, dict] = {}
    bandwidth = copy_bandwidth()
    print(f"model weights {weight_bytes / 1e9:.2f} GB; copy bandwidth {bandwidth / 1e12:.2f} TB/s", flush=True)
    padded_generate(model, tokenizer, ids[:8], 8, 8)  # warm-up
    if "seed" not in skip:
        rows["a_seed_loop"] = {"tok_s": seed_loop(model, tokenizer, ids[:args.seed_loop_prompts], args.new_tokens),
                               "what": f"model.generate one prompt at a time ({args.seed_loop_prompts} prompts)"}
        print(rows["a_seed_loop"], flush=True)
    if "padded" not in skip:
        rows["b_padded_generate_bs64"] = {"tok_s": padded_generate(model, tokenizer, ids[:128], args.new_tokens, 64),
                                          "what": "model.generate, padded batches of 64 (128 prompts)"}
        print(rows["b_padded_generate_bs64"], flush=True)
    if "cb" not in skip:
        for name, cb in {"b_generate_batch_default": {},
                         "b_generate_batch_16k_graphs": {"max_batch_tokens": 16384, "use_cuda_graph": True}}.items():
            try:
                rows[name] = {"tok_s": cb_generate(model, ids, args.new_tokens, **cb),
                              "what": f"generate_batch over {len(ids)} requests {cb or 'default config'}"}
            except Exception as exc:  # report, keep measuring the rest
                rows[name] = {"tok_s": None, "what": f"failed: {type(exc).__name__}: {str(exc)[:200]}"}
            print(name, rows[name], flush=True)
    del model
    torch.cuda.empty_cache()
    if "reasonry" not in skip:
        variants = {"c_reasonry_generate": {}, "c_reasonry_bs256": {"batch_size": 256},
                    "c_reasonry_bs1024_x2": {"batch_size": 1024}, "c_reasonry_graphs": {"batching": "graphs"},
                    "c_reasonry_graphs_bs1024_x2": {"batching": "graphs", "batch_size": 1024}}
        for name, engine in variants.items():
            count = 2 if name.endswith("_x2") else 1
            e2e = reasonry_e2e(folder, texts * count, args.new_tokens, work, **engine)
            step_seconds = (e2e["generated"] / e2e["tok_s"]) / args.new_tokens / (count * len(texts) / max(
                1, min(engine.get("batch_size", 512), count * len(texts))))
            e2e["bandwidth_fraction"] = (weight_bytes / bandwidth) / step_seconds  # bandwidth: bytes read + written
            label = f"reasonry generate, hf engine, store + jsonl output, {engine or 'defaults (batch 512)'}"
            rows[name] = {**e2e, "what": label + (f", {count * len(texts)} prompts" if count > 1 else "")}
            print(name, {k: v for k, v in rows[name].items() if k != "summary"}, flush=True)
    best_b = max((r["tok_s"] for k, r in rows.items() if k.startswith("b_") and r["tok_s"]), default=None)
    report = {
        "date": dt.date.today().isoformat(), "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
        "transformers": __import__("transformers").__version__, "host": platform.node(), "cpus": os.cpu_count(),
        "prompts": len(ids), "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens,
        "copy_bandwidth_tb_s": bandwidth / 1e12, "weight_gb": weight_bytes / 1e9, "rows": rows,
        "ratios": {
            "c_over_best_b": rows.get("c_reasonry_generate", {}).get("tok_s", 0) / best_b if best_b else None,
            "c_over_a": (rows["c_reasonry_generate"]["tok_s"] / rows["a_seed_loop"]["tok_s"])
            if "c_reasonry_generate" in rows and "a_seed_loop" in rows else None,
        },
    }
    print(f"\n{'path':32} {'tok/s':>10}  what")
    for name, row in rows.items():
        value = f"{row['tok_s']:,.0f}" if row.get("tok_s") else "-"
        print(f"{name:32} {value:>10}  {row['what']}")
    print(json.dumps(report["ratios"]))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
