"""GPU throughput on fixed and variable-length work: the seed's one-prompt loop vs transformers' padded `generate`
and continuous batching `generate_batch` vs `reasonry generate` (hf engine), plus the decode-step ceiling.

A Qwen2.5-1.5B-shaped model (hidden 1536, 28 layers, 12 heads, 2 KV heads, MLP 8960, vocab 151936) with random
bf16 weights, prompts of 128 tokens, the seed's sampling (temperature 0.3, top_p 0.9, top_k 50, repetition_penalty
1.1). Two workloads, every path in one process:
- fixed: 256 new tokens each, EOS ignored;
- variable: a seeded hazard hook on the model's logits forces EOS, so output lengths follow a lognormal (median 200,
  sigma 0.8) clipped to 16..1024; the hook is a function of (seed, last token, position) only and is installed the
  same way on every path's model, so every path sees the same length distribution (each counts its own tokens).
The ceiling is one decode step (forward only, one token per row) of the engine replayed as a CUDA graph, every row
at one key length (256 ~ the fixed workload's mean keys per row, 384 ~ the variable one's).

    python bench/gpu_throughput.py --prompts 512 --out results.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

SEED_SAMPLING = {"temperature": 0.3, "top_p": 0.9, "top_k": 50, "repetition_penalty": 1.1}
PROMPT_TOKENS = 128
EOS = 2  # the hazard's end-of-sequence token (the tiny tokenizer's id 2)


def build_model(folder: Path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from reasonry.tiny import build_tokenizer

    tokenizer = build_tokenizer(folder)
    config = Qwen2Config(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=4096,
                         tie_word_embeddings=True, eos_token_id=EOS, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = Qwen2ForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    model.generation_config.eos_token_id = EOS
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    return model.eval(), tokenizer


def hazard_table(median: float = 200, sigma: float = 0.8, low: int = 16, high: int = 1024) -> torch.Tensor:
    """h[s] = P(the token at output index s is the last | none before), lengths ~ clipped lognormal."""
    def cdf(x: float) -> float:
        return 0.5 * (1 + math.erf((math.log(x) - math.log(median)) / (sigma * math.sqrt(2))))
    table = torch.zeros(high + 64, dtype=torch.float64)
    for length in range(low, high + 1):
        p = (cdf(length + 0.5) if length < high else 1.0) - (cdf(length - 0.5) if length > low else 0.0)
        alive = 1.0 - (cdf(length - 0.5) if length > low else 0.0)
        table[length - 1] = min(1.0, p / alive) if alive > 0 else 1.0
    table[high - 1:] = 1.0
    return table


class Hazard:
    """A forward hook that forces EOS where hash(seed, last token, position) < h[output index]."""

    def __init__(self, seed: int = 1234) -> None:
        self.table = hazard_table().cuda().float()
        self.seed = seed
        self.enabled = False
        self.handles: list = []
        self._inputs: tuple | None = None

    def install(self, model) -> None:
        self.handles.append(model.register_forward_pre_hook(self._pre, with_kwargs=True))
        self.handles.append(model.register_forward_hook(self._post, with_kwargs=True))

    def _pre(self, module, args, kwargs):
        self._inputs = (kwargs.get("input_ids", args[0] if args else None), kwargs.get("position_ids"),
                        kwargs.get("cache_position"), kwargs.get("logits_to_keep", 0))

    def _post(self, module, args, kwargs, output):
        if not self.enabled or self._inputs is None:
            return output
        ids, positions, cache_position, keep = self._inputs
        if positions is None:
            positions = cache_position[None, :].expand_as(ids)
        logits = output.logits
        if isinstance(keep, torch.Tensor):
            ids, positions = ids[:, keep], positions[:, keep]
        elif logits.shape[1] != ids.shape[1]:
            ids, positions = ids[:, -logits.shape[1]:], positions[:, -logits.shape[1]:]
        index = (positions + 1 - PROMPT_TOKENS).clamp(min=0, max=self.table.numel() - 1)
        x = ids.long() * -7046029254386353131 + positions.long() * -4658895280553007687 + self.seed
        x = (x ^ ((x >> 31) & ((1 << 33) - 1))) * -7723592293110705685
        x = x ^ ((x >> 29) & ((1 << 35) - 1))
        u = ((x >> 11) & ((1 << 53) - 1)).double() / float(1 << 53)
        fire = (u < self.table[index]) & (positions + 1 >= PROMPT_TOKENS)
        logits[..., EOS] = torch.where(fire, 1e4, logits[..., EOS])
        return output


def make_prompts(tokenizer, count: int, length: int) -> tuple[list[str], list[list[int]]]:
    texts, ids = [], []
    seen: set[str] = set()  # distinct prompts: the store answers a repeated request from its cache
    number = 0
    while len(texts) < count:
        number += 1
        words = f"{number} " + " ".join(str((number * 7919 + i * 104729) % 997) for i in range(length * 2))
        tokens = tokenizer(words, add_special_tokens=False)["input_ids"][:length]
        text = tokenizer.decode(tokens)
        if tokenizer(text, add_special_tokens=False)["input_ids"] == tokens and EOS not in tokens and text not in seen:
            seen.add(text)
            texts.append(text)
            ids.append(tokens)
    return texts, ids


def timed(fn) -> tuple[float, object]:
    torch.cuda.synchronize()
    start = time.perf_counter()
    value = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start, value


def _useful(row: list[int], fixed: bool) -> int:
    """Tokens up to and including the first EOS (fixed work: all)."""
    return len(row) if fixed or EOS not in row else row.index(EOS) + 1


def seed_loop(model, ids: list[list[int]], new_tokens: int, fixed: bool) -> float:
    """Seed 000: one prompt at a time through model.generate."""
    generated = 0
    def run():
        nonlocal generated
        for prompt in ids:
            inputs = torch.tensor([prompt], device="cuda")
            out = model.generate(input_ids=inputs, attention_mask=torch.ones_like(inputs), do_sample=True,
                                 max_new_tokens=new_tokens, min_new_tokens=new_tokens if fixed else 0,
                                 eos_token_id=None if fixed else EOS, **SEED_SAMPLING)
            generated += _useful(out[0, inputs.shape[1]:].tolist(), fixed)
    seconds, _ = timed(run)
    return generated / seconds


def padded_generate(model, ids: list[list[int]], new_tokens: int, batch: int, fixed: bool) -> float:
    generated = 0
    def run():
        nonlocal generated
        for start in range(0, len(ids), batch):
            chunk = ids[start:start + batch]
            inputs = torch.tensor(chunk, device="cuda")
            out = model.generate(input_ids=inputs, attention_mask=torch.ones_like(inputs), do_sample=True,
                                 max_new_tokens=new_tokens, min_new_tokens=new_tokens if fixed else 0,
                                 eos_token_id=None if fixed else EOS, pad_token_id=0, **SEED_SAMPLING)
            generated += sum(_useful(row, fixed) for row in out[:, inputs.shape[1]:].tolist())
    seconds, _ = timed(run)
    return generated / seconds


def cb_generate(model, ids: list[list[int]], new_tokens: int, fixed: bool) -> float:
    from transformers import GenerationConfig

    config = GenerationConfig(max_new_tokens=new_tokens, do_sample=True, eos_token_id=None if fixed else EOS,
                              pad_token_id=0, **SEED_SAMPLING)
    seconds, outputs = timed(lambda: model.generate_batch(inputs=ids, generation_config=config, progress_bar=False))
    generated = sum(_useful(list(o.generated_tokens), fixed) for o in outputs.values())
    return generated / seconds


def reasonry_e2e(folder: Path, texts: list[str], new_tokens: int, work: Path, hazard: Hazard, fixed: bool,
                 **engine_options) -> dict:
    import reasonry
    from reasonry.engines import registry
    from reasonry.engines.registry import load_engine

    questions = work / "q.jsonl"
    questions.write_text("\n".join(json.dumps({"seq": i, "question": t}) for i, t in enumerate(texts)),
                         encoding="utf-8")
    template = work / "plain.j2"
    template.write_text("{{ instruction }}", encoding="utf-8")
    params = reasonry.SamplingParams(max_new_tokens=new_tokens, **SEED_SAMPLING)
    engines = []

    def timed_load(spec, **options):
        start = time.perf_counter()
        engine_ = load_engine(spec, **options)
        hazard.install(engine_.model)
        runner = engine_.bench_runner = engine_.loop.runner  # kept past close() for the ceiling
        runner.drop_graphs()  # the graphs captured at start-up predate the hook: capture them again
        captured = time.perf_counter()
        runner.capture()
        engine_.capture_s = time.perf_counter() - captured
        torch.cuda.synchronize()
        engine_.load_s = time.perf_counter() - start  # load + capture, left out of the generation time
        engines.append(engine_)
        return engine_

    registry.load_engine = timed_load  # generate loads engines through registry.open_engine
    db = work / f"bench-{len(list(work.glob('*.db')))}.db"
    seconds, summary = timed(lambda: reasonry.generate(
        questions, [f"hf:{folder}"], out=work / "out.jsonl", db=db,
        config=reasonry.GenerateConfig(template=str(template), params=params,
                                       engine_options={"ignore_eos": fixed, **engine_options})))
    for handle in hazard.handles:
        handle.remove()
    hazard.handles.clear()
    engine = engines[0]
    generated = summary["completion_tokens"]
    without_load = seconds - engine.load_s
    stats = dict(engine.loop.stats)
    stats["graphs"] = len(engine.bench_runner._graphs)
    stats["fused"] = engine.fused
    return {"tok_s": generated / without_load, "load_s": engine.load_s, "capture_s": engine.capture_s,
            "generated": generated,
            "slots": engine.batch_size, "profile": stats, "engine": engine}


def ceiling(engine, kv_lens: list[int]) -> dict:
    """One decode step (forward only) at the engine's batch size, every row holding `kv_len` keys, replayed as
    a CUDA graph; the engine's attention (FlashAttention varlen) and the masked SDPA path side by side."""
    runner = engine.bench_runner
    cache = runner.cache
    batch = engine.batch_size
    out = {}
    default = cache.flash
    with torch.inference_mode():
        saved = runner.lens.clone(), runner.active.clone()
        for flash in (default, *({True, False} - {default})):
            cache.flash = flash
            runner.drop_graphs()
            runner.active[:batch] = 1
            for kv_len in kv_lens:
                name = f"kv{kv_len}" if flash == default else f"kv{kv_len}_{'flash' if flash else 'sdpa'}"
                out[name] = replayed(runner, batch, kv_len)
            if flash == default:  # the fixed cost of a step: small batches (the tail of variable work)
                for small in (8, 64):
                    out[f"b{small}_kv384"] = replayed(runner, small, 384)
        cache.flash = default
        # the same steps through the model's own modules (the engine's fusions undone): transformers' forward
        patched = {m: m.__dict__.pop("forward") for m in runner.model.modules() if "forward" in m.__dict__}
        try:
            runner.drop_graphs()
            for small, kv_len in ((batch, 256), (batch, 384), (8, 384)):
                name = f"stock_kv{kv_len}" if small == batch else f"stock_b{small}_kv{kv_len}"
                out[name] = replayed(runner, small, kv_len)
        finally:
            for module, forward in patched.items():
                module.forward = forward
        runner.lens.copy_(saved[0])
        runner.active.copy_(saved[1])
    return out


def replayed(runner, rows: int, kv_len: int) -> dict:
    """A decode graph of `rows` rows, each at `kv_len` keys: milliseconds per replay and tokens per second."""
    runner.lens[:rows] = kv_len - 1
    graph, _ = runner._graph(rows, kv_len)
    for _ in range(3):
        graph.replay()
    seconds, _ = timed(lambda: [graph.replay() for _ in range(20)])
    return {"step_ms": seconds / 20 * 1e3, "tok_s": rows * 20 / seconds}


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
    parser.add_argument("--new-tokens", type=int, default=256, help="fixed workload (variable: up to 1024)")
    parser.add_argument("--seed-loop-prompts", type=int, default=2)
    parser.add_argument("--padded-prompts", type=int, default=64)
    parser.add_argument("--skip", default="", help="comma list: seed,padded,cb,reasonry,fixed,variable")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--reasonry-first", action="store_true",
                        help="run reasonry before the transformers paths (a long generate_batch last, cut by a "
                             "time limit, then still leaves reasonry's rows and its start time)")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    work = Path(tempfile.mkdtemp(prefix="reasonry-bench-"))
    folder = work / "qwen2.5-1.5b-shape"
    started = time.perf_counter()
    model, tokenizer = build_model(folder)
    build_s = time.perf_counter() - started
    texts, ids = make_prompts(tokenizer, args.prompts, PROMPT_TOKENS)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    bandwidth = copy_bandwidth()
    print(f"model weights {weight_bytes / 1e9:.2f} GB (built in {build_s:.1f} s); copy bandwidth "
          f"{bandwidth / 1e12:.2f} TB/s", flush=True)
    hazard = Hazard()
    rows: dict[str, dict] = {}
    ceilings: dict = {}
    workloads = [w for w in ("fixed", "variable") if w not in skip]
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="minutes"), "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__, "transformers": __import__("transformers").__version__, "host": platform.node(),
        "cpus": os.cpu_count(), "prompts": len(ids), "prompt_tokens": PROMPT_TOKENS, "fixed_new_tokens": args.new_tokens,
        "copy_bandwidth_tb_s": bandwidth / 1e12, "weight_gb": weight_bytes / 1e9,
        "order": "reasonry first" if args.reasonry_first else "transformers first",
        "rows": rows, "ceiling": ceilings, "ratios": {},
    }

    def save() -> None:  # after every row: a run cut short by a time limit keeps what it measured
        if args.out:
            args.out.write_text(json.dumps(report, indent=1, default=str))

    def transformers_paths() -> None:
        hazard.install(model)
        started = time.perf_counter()
        padded_generate(model, ids[:8], 8, 8, True)  # warm-up of the transformers paths
        report["warmup_s"] = time.perf_counter() - started
        for workload in workloads:
            fixed = workload == "fixed"
            hazard.enabled = not fixed
            new_tokens = args.new_tokens if fixed else 1024
            if "seed" not in skip:
                n = args.seed_loop_prompts
                rows[f"{workload}/a_seed_loop"] = {"tok_s": seed_loop(model, ids[:n], new_tokens, fixed),
                                                   "what": f"model.generate one prompt at a time ({n} prompts, "
                                                           "rate extrapolated to all)"}
            if "padded" not in skip:
                n = args.padded_prompts
                rows[f"{workload}/b_padded_generate"] = {
                    "tok_s": padded_generate(model, ids[:n], new_tokens, 64, fixed),
                    "what": f"model.generate, padded batches of 64 ({n} prompts)"}
            if "cb" not in skip:
                name = f"{workload}/b_generate_batch"
                rows[name] = {"tok_s": None, "what": f"generate_batch, {len(ids)} prompts: did not finish",
                              "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
                save()
                try:
                    rate = cb_generate(model, ids, new_tokens, fixed)
                    rows[name] = {"tok_s": rate, "what": f"generate_batch, {len(ids)} prompts"}
                except Exception as exc:  # report, keep measuring the rest
                    rows[name] = {"tok_s": None, "what": f"failed: {type(exc).__name__}: {exc}"[:200]}
            for name in [k for k in rows if k.startswith(workload)]:
                print(name, rows[name], flush=True)
            save()
        hazard.enabled = False
        for handle in hazard.handles:
            handle.remove()
        hazard.handles.clear()

    def reasonry_paths() -> None:
        for workload in workloads:
            fixed = workload == "fixed"
            hazard.enabled = not fixed
            e2e = reasonry_e2e(folder, texts, args.new_tokens if fixed else 1024, work, hazard, fixed)
            engine = e2e.pop("engine")
            rows[f"{workload}/c_reasonry"] = {**e2e, "what": f"reasonry generate (store + jsonl), defaults, {len(texts)} prompts"}
            print(f"{workload}/c_reasonry", rows[f"{workload}/c_reasonry"], flush=True)
            if not ceilings:
                try:
                    ceilings.update(ceiling(engine, [256, 384, 512, 1280]))
                except Exception as exc:  # keep the measured rows
                    ceilings["error"] = f"{type(exc).__name__}: {exc}"[:300]
                print("ceiling", ceilings, flush=True)
            engine.close()
            del engine.bench_runner, engine
            gc.collect()
            torch.cuda.empty_cache()
            save()
        hazard.enabled = False

    if args.reasonry_first and "reasonry" not in skip:
        model.cpu()  # the engine sizes its KV cache from free GPU memory: leave it what the default order leaves
        torch.cuda.empty_cache()
        reasonry_paths()
        model.cuda()
        transformers_paths()
    else:
        transformers_paths()
        del model
        torch.cuda.empty_cache()
        if "reasonry" not in skip:
            reasonry_paths()
    ratios = report["ratios"]
    for workload in workloads:
        ours = rows.get(f"{workload}/c_reasonry", {}).get("tok_s")
        cb = rows.get(f"{workload}/b_generate_batch", {}).get("tok_s")
        if ours and cb:
            ratios[f"{workload}: reasonry / generate_batch"] = ours / cb
        kv = "kv256" if workload == "fixed" else "kv384"  # about each workload's mean keys per decoding row
        if ours and kv in ceilings:
            ratios[f"{workload}: reasonry / ceiling {kv}"] = ours / ceilings[kv]["tok_s"]
    save()
    print(f"\n{'path':32} {'tok/s':>10}  what")
    for name, row in rows.items():
        value = f"{row['tok_s']:,.0f}" if row.get("tok_s") else "-"
        print(f"{name:32} {value:>10}  {row['what']}")
    print(json.dumps(ratios, indent=1))


if __name__ == "__main__":
    main()
