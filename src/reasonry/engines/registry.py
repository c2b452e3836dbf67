"""Choose and load an engine from a model spec."""

from __future__ import annotations

from typing import Any

from reasonry.config import ModelSpec
from reasonry.engines.base import Engine
from reasonry.errors import EngineError

# Options each engine accepts; others are ignored so one option set can serve several --model flags.
ENGINE_OPTIONS: dict[str, tuple[str, ...]] = {
    "hf": ("device", "dtype", "load_in_4bit", "load_in_8bit", "merge_adapter", "batch_size", "max_batch_tokens",
           "max_model_len", "cuda_graphs", "gpu_memory_utilization", "poll_every", "ignore_eos"),
    "openai": ("api_key", "api_key_env", "concurrency", "rpm", "tpm", "timeout", "max_retries", "chat"),
    "vllm": ("tensor_parallel_size", "gpu_memory_utilization", "max_model_len", "dtype", "max_lora_rank",
             "enforce_eager"),
}


def load_engine(spec: ModelSpec, **options: Any) -> Engine:
    accepted = {k: v for k, v in options.items() if k in ENGINE_OPTIONS.get(spec.kind, ()) and v is not None}
    if spec.kind == "hf":
        from reasonry.engines.hf import HFEngine

        return HFEngine(spec, **accepted)
    if spec.kind == "openai":
        try:
            from reasonry.engines.openai import OpenAIEngine
        except ImportError as exc:
            raise EngineError(f"engine openai is not available ({exc})") from None
        return OpenAIEngine(spec, **accepted)
    if spec.kind == "vllm":
        try:
            from reasonry.engines.vllm import VLLMEngine
        except ImportError as exc:
            raise EngineError(f"engine vllm is not available ({exc})") from None
        return VLLMEngine(spec, **accepted)
    raise EngineError(f"unknown engine kind {spec.kind!r}")
