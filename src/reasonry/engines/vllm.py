"""Engine `vllm`: vLLM's offline `LLM` in-process, with one LoRA adapter per spec (extra `reasonry[vllm]`)."""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import time
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from reasonry.config import ModelSpec, SamplingParams
from reasonry.engines.base import Engine, Request, Result, check_local_path
from reasonry.engines.hf.sampling import request_seed
from reasonry.errors import ConfigError, EngineError, first_line
from reasonry.extract import strip_special_tokens

INSTALL_HINT = "pip install 'reasonry[vllm]'"
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the ranks vLLM accepts for max_lora_rank
WINDOW = 1024  # requests handed to one LLM.generate call; vLLM batches continuously inside it
CPU_MEMORY_FRACTION = 0.3  # on CPU vLLM reserves this fraction of RAM for the KV cache


def chat_tokenizer(spec: ModelSpec) -> Any:
    """The tokenizer whose chat template renders prompts: the adapter's when it ships one, as the hf engine does."""
    from transformers import AutoTokenizer

    source = spec.model
    if spec.adapters and (Path(spec.adapters[-1]) / "tokenizer_config.json").exists():
        source = spec.adapters[-1]
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise EngineError(f"--model {spec}: cannot load the tokenizer from '{source}' ({first_line(exc)})") from None


def render_chat_text(tokenizer: Any, spec: ModelSpec, messages: list[dict[str, str]], prefill: str | None) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"--chat: the tokenizer of {spec.model} has no chat template; use a raw --template")
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return text + (prefill or "")


def lora_rank(adapter: str) -> int:
    """The smallest max_lora_rank vLLM accepts that holds the adapter's rank (rank_pattern included)."""
    config_path = Path(adapter) / "adapter_config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EngineError(f"--model: adapter '{adapter}' has no readable adapter_config.json ({exc})") from None
    ranks = [int(config.get("r") or 8), *(int(r) for r in (config.get("rank_pattern") or {}).values())]
    needed = max(ranks)
    for allowed in LORA_RANKS:
        if allowed >= needed:
            return allowed
    raise EngineError(f"--model: adapter '{adapter}' has rank {needed}; vLLM supports at most {LORA_RANKS[-1]}")


def vllm_sampling_kwargs(params: SamplingParams, sample_index: int, prompt: str) -> dict[str, Any]:
    """reasonry's sampling knobs as vLLM SamplingParams keywords; the seed is per request, as in the hf engine."""
    return {
        "n": 1,  # each sample is its own request with its own seed
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k if params.top_k > 0 else -1,
        "repetition_penalty": params.repetition_penalty,
        "seed": request_seed(params.seed, sample_index, prompt),
        "max_tokens": params.max_new_tokens,
        "stop": list(params.stop) or None,
        "skip_special_tokens": False,
    }


class VLLMEngine(Engine):
    """`vllm:MODEL[+ADAPTER]`. The tokenizer loads at once; vLLM starts on the first request that is not cached."""

    def __init__(self, spec: ModelSpec, *, tensor_parallel_size: int | None = None,
                 gpu_memory_utilization: float | None = None, max_model_len: int | None = None,
                 dtype: str = "auto", max_lora_rank: int | None = None, enforce_eager: bool = False) -> None:
        if importlib.util.find_spec("vllm") is None:
            raise EngineError(f"engine vllm needs vLLM, which is not installed: {INSTALL_HINT}")
        if len(spec.adapters) > 1:
            raise ConfigError(f"--model {spec}: vllm applies one LoRA adapter per model; merge the adapters "
                              "first or use the hf engine")
        for name, what in [(spec.model, "model"), *((a, "adapter") for a in spec.adapters)]:
            check_local_path(name, what)
        self.spec = spec
        self.lora_rank = max_lora_rank or (lora_rank(spec.adapters[0]) if spec.adapters else None)
        self.llm_options = _llm_options(tensor_parallel_size, gpu_memory_utilization, max_model_len, dtype,
                                        enforce_eager)
        self.tokenizer = chat_tokenizer(spec)
        self.special_tokens = list(self.tokenizer.all_special_tokens)
        self._llm: Any = None
        self._lora: Any = None

    # -- Engine ------------------------------------------------------------------
    def render_chat(self, messages: list[dict[str, str]], prefill: str | None = None) -> str:
        return render_chat_text(self.tokenizer, self.spec, messages, prefill)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        iterator = iter(requests)
        while window := list(islice(iterator, WINDOW)):
            yield from self._generate_window(window)

    def close(self) -> None:
        llm, self._llm = self._llm, None
        if llm is None:
            return
        engine_core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if hasattr(engine_core, "shutdown"):
            engine_core.shutdown()
        del llm
        gc.collect()

    # -- vLLM ----------------------------------------------------------------------
    def _start(self) -> Any:
        if self._llm is not None:
            return self._llm
        os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # stdout carries --json summaries
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        from vllm import LLM

        options = dict(self.llm_options)
        if self.spec.adapters:
            from vllm.lora.request import LoRARequest

            options.update(enable_lora=True, max_lora_rank=self.lora_rank, max_loras=1)
            adapter = str(Path(self.spec.adapters[0]).expanduser().resolve())
            self._lora = LoRARequest(lora_name=Path(adapter).name, lora_int_id=1, lora_path=adapter)
        try:
            self._llm = LLM(model=self.spec.model, enable_prefix_caching=True, **options)
        except Exception as exc:  # whatever vLLM raises at start-up, it is not one row's fault
            raise EngineError(f"--model {self.spec}: vLLM cannot load it ({first_line(exc)})") from None
        return self._llm

    def _generate_window(self, window: list[Request]) -> Iterator[Result]:
        prepared: list[tuple[Request, str]] = []
        for request in window:
            try:
                prepared.append((request, self._prompt_text(request)))
            except Exception as exc:  # one bad chat row is recorded on its row
                yield Result(key=request.key, error=f"render: {first_line(exc)}", finish_reason="error")
        if prepared:
            yield from self._run_isolating_failures(prepared)

    def _run_isolating_failures(self, prepared: list[tuple[Request, str]]) -> list[Result]:
        """vLLM rejects a whole batch for one bad prompt (e.g. too long): rerun one by one to find it."""
        try:
            return self._run(prepared)
        except EngineError:
            raise
        except Exception as exc:
            if len(prepared) == 1:
                return [Result(key=prepared[0][0].key, error=f"vllm: {first_line(exc)}", finish_reason="error")]
            return [result for item in prepared for result in self._run_isolating_failures([item])]

    def _run(self, prepared: list[tuple[Request, str]]) -> list[Result]:
        from vllm import SamplingParams as VLLMSamplingParams

        llm = self._start()
        prompts = [text for _, text in prepared]
        sampling = [VLLMSamplingParams(**vllm_sampling_kwargs(r.params, r.sample_index, text)) for r, text in prepared]
        started = time.perf_counter()
        outputs = llm.generate(prompts, sampling, use_tqdm=False, lora_request=self._lora)
        elapsed = time.perf_counter() - started
        return [self._result(request, output, elapsed) for (request, _), output in zip(prepared, outputs, strict=True)]

    def _result(self, request: Request, output: Any, elapsed: float) -> Result:
        completion = output.outputs[0]
        raw = completion.text
        text = strip_special_tokens(raw, self.special_tokens)
        for stop in request.params.stop:  # vLLM stops on the raw text; a special token may have hidden one
            if stop and stop in text:
                text = text[: text.index(stop)]
        return Result(key=request.key, text=text, raw_text=raw, prompt_tokens=len(output.prompt_token_ids or ()),
                      completion_tokens=len(completion.token_ids), finish_reason=completion.finish_reason or "stop",
                      latency_s=elapsed)

    def _prompt_text(self, request: Request) -> str:
        if request.prompt is not None:
            return request.prompt
        assert request.messages is not None
        return self.render_chat(request.messages, request.prefill)


def _llm_options(tensor_parallel_size: int | None, gpu_memory_utilization: float | None,
                 max_model_len: int | None, dtype: str, enforce_eager: bool) -> dict[str, Any]:
    options: dict[str, Any] = {"dtype": dtype or "auto", "enforce_eager": enforce_eager}
    if tensor_parallel_size:
        options["tensor_parallel_size"] = tensor_parallel_size
    if gpu_memory_utilization is None and not _has_cuda():
        gpu_memory_utilization = CPU_MEMORY_FRACTION
    if gpu_memory_utilization is not None:
        options["gpu_memory_utilization"] = gpu_memory_utilization
    if max_model_len:
        options["max_model_len"] = max_model_len
    return options


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
