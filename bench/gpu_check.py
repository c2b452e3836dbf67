"""The hf engine's attention on a GPU checked against transformers' own forward (no engine layout), bf16.

Every token the engine draws greedily (FlashAttention varlen, packed chunked prefill, CUDA graphs) must be the
argmax of transformers' logits for the same prefix, up to bf16 noise: its logit within `--tolerance` of the top.
Wrong keys (another row's, stale positions, a missing chunk) move logits by far more than that. The reference is
the same model outside the engine's loop, where its modules run their own forwards. Then the seed's sampling runs
once through the CUDA graphs and once through eager steps: every row must draw the same tokens. On a GPU the check
also fails if the Triton kernels are not in use (REASONRY_KERNELS=torch turns that part off).

    python bench/gpu_check.py
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from reasonry.config import SamplingParams, parse_model_spec
    from reasonry.engines.base import Request
    from reasonry.engines.hf import HFEngine
    from reasonry.tiny import build_tokenizer

    parser = argparse.ArgumentParser()
    parser.add_argument("--tolerance", type=float, default=0.15)
    parser.add_argument("--prompts", type=int, default=48)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp()) / "m"
    tokenizer = build_tokenizer(folder)
    config = Qwen2Config(vocab_size=tokenizer.vocab_size + 8, hidden_size=512, intermediate_size=1024,
                         num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
                         max_position_embeddings=2048, eos_token_id=2)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    engine = HFEngine(parse_model_spec(f"hf:{folder}"), batch_size=16, max_batch_tokens=300, ignore_eos=True)
    assert engine.kv_cache.flash or not torch.cuda.is_available(), "the varlen kernel is not in use"
    drawn: dict[str, tuple[list[int], list[int]]] = {}
    finish = engine.loop.finish

    def record(seq) -> None:
        drawn[seq.request.key] = (list(seq.prompt), list(seq.tokens))
        finish(seq)

    engine.loop.finish = record
    prompts = [" ".join(str((i * 37 + j * 11) % 97) for j in range(5 + 9 * i)) for i in range(args.prompts)]
    params = SamplingParams(max_new_tokens=40, temperature=0, repetition_penalty=1.0)
    list(engine.generate([Request(key=str(i), params=params, prompt=p) for i, p in enumerate(prompts)]))
    reference = engine.model
    worst, checked, off = 0.0, 0, 0
    for ids, out in drawn.values():
        full = torch.tensor([ids + out], device=engine.device)
        with torch.inference_mode():
            logits = reference(input_ids=full).logits[0, len(ids) - 1: -1].float()
        chosen = logits.gather(1, full[0, len(ids):, None]).squeeze(1)
        gap = (logits.max(dim=1).values - chosen).max().item()
        worst, checked = max(worst, gap), checked + len(out)
        off += int(gap > args.tolerance)
    engine.close()
    print(f"gpu_check: {len(prompts)} prompts (5..{5 + 9 * (len(prompts) - 1)} words), {checked} tokens; "
          f"largest gap to transformers' argmax logit {worst:.3f}; rows over {args.tolerance}: {off}; "
          f"fused {engine.fused}")
    # The seed's sampling through the graphs and through eager steps: the same kernels, so the same tokens.
    sampled = SamplingParams(max_new_tokens=40, temperature=0.3, top_p=0.9, top_k=50, repetition_penalty=1.1)
    runs = []
    for graphs in (True, False):
        drawn.clear()
        engine = HFEngine(parse_model_spec(f"hf:{folder}"), batch_size=16, max_batch_tokens=300, ignore_eos=True,
                          cuda_graphs=graphs)
        finish = engine.loop.finish
        engine.loop.finish = record
        list(engine.generate([Request(key=str(i), params=sampled, prompt=p) for i, p in enumerate(prompts)]))
        engine.close()
        runs.append({key: out for key, (_, out) in drawn.items()})
    same = sum(runs[0][key] == runs[1][key] for key in runs[0])
    print(f"gpu_check: sampled rows identical with and without CUDA graphs: {same} of {len(runs[0])}")
    kernels_off = torch.cuda.is_available() and os.environ.get("REASONRY_KERNELS", "triton") == "triton" and \
        engine.fused.get("layers") != config.num_hidden_layers
    if kernels_off:
        print("gpu_check: the Triton kernels are not in use (see the warning above)")
    sys.exit(1 if off or kernels_off or same < len(runs[0]) else 0)


if __name__ == "__main__":
    main()
