#!/usr/bin/env bash
# The whole loop on a CUDA machine: generate (hf, bf16) -> check -> export -> LoRA train -> QLoRA train ->
# generate with the adapter, in 4-bit. A smoke run of the GPU-only paths the CPU suite cannot reach.
# Usage: bash bench/gpu_loop.sh OUT_DIR   (reasonry importable, e.g. PYTHONPATH=src)
set -euo pipefail
out=${1:-/tmp/reasonry-gpu-loop}
work=$(mktemp -d)
mkdir -p "$out"
r() { python3 -m reasonry "$@"; }
python3 - "$work" <<'PY'
import json, sys
from pathlib import Path
from reasonry.tiny import build_tiny_model
work = Path(sys.argv[1])
build_tiny_model(work / "base", hidden_size=256, layers=4)
rows = [{"seq": i, "question": f"Question {i}: how many fruits are left if {i} pears are eaten?",
         "reasoning": "Books are not fruit; count only apples and pears, and check the pears exist."} for i in range(64)]
(work / "q.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
PY
r generate "$work/q.jsonl" --model "hf:$work/base" --template alpaca-special --max-new-tokens 48 \
    --db "$work/r.db" --out "$out/generated.xlsx" --json | tee "$out/generate.json"
r check last --db "$work/r.db" --json > "$out/check.json"
r export last --db "$work/r.db" --format alpaca-special --out "$work/sft.jsonl" --json | tee "$out/export.json"
r train "$work/sft.jsonl" --base "hf:$work/base" --out "$work/lora" --max-steps 40 --lr 1e-3 --json | tee "$out/train_lora.json"
r train "$work/sft.jsonl" --base "hf:$work/base" --out "$work/qlora" --max-steps 40 --lr 1e-3 --load-in-4bit --json | tee "$out/train_qlora.json"
cp "$work/lora/loss.jsonl" "$out/loss_lora.jsonl"; cp "$work/qlora/loss.jsonl" "$out/loss_qlora.jsonl"
r generate "$work/q.jsonl" --model "hf:$work/base+$work/lora" --template alpaca-special \
    --max-new-tokens 32 --db "$work/r.db" --out "$out/with_lora.jsonl" --json | tee "$out/generate_lora.json"
r generate "$work/q.jsonl" --model "hf:$work/base+$work/qlora" --load-in-4bit --template alpaca-special \
    --max-new-tokens 32 --db "$work/r.db" --out "$out/with_qlora_4bit.jsonl" --json \
    | tee "$out/generate_qlora_4bit.json"
echo "gpu loop ok"
