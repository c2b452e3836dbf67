"""Typed configuration shared by every task and engine: sampling parameters and model specs."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import Field, asdict, dataclass, field, replace
from typing import Any

from reasonry.errors import ConfigError

ENGINE_KINDS = ("hf", "openai", "vllm")


MAX_SEED = (1 << 63) - 1  # SQLite's integer range: a bigger seed could not be stored with its request


def option(default: Any, help: str, *, flag: str | None = None, hidden: bool = False, cli: bool = True) -> Any:
    """A dataclass field that is also a CLI flag: its default, help text and flag name live here only.

    The CLI generates its flags from these fields (reasonry.cli.flags), as TRL's HfArgumentParser does from
    SFTConfig; the dataclass's __post_init__ is the only place that validates the value.
    """
    return field(default=default, metadata={"help": help, "flag": flag, "hidden": hidden, "cli": cli})


def flag_name(item: Field[Any]) -> str:
    return str(item.metadata.get("flag") or "--" + item.name.replace("_", "-"))


def _require(checks: list[tuple[bool, str]]) -> None:
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def _finite(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


@dataclass(frozen=True)
class SamplingParams:
    """Sampling knobs. The defaults are the seed notebook's settings."""

    temperature: float = option(0.3, "Sampling temperature (0 = greedy).")
    top_p: float = option(0.9, "Nucleus sampling mass, in (0, 1].")
    top_k: int = option(50, "Keep the K most likely tokens (0 = off).")
    repetition_penalty: float = option(1.1, "Penalty on tokens already seen (1.0 = off).")
    max_new_tokens: int = option(256, "Most tokens to generate per request.")
    seed: int = option(0, "Sampling seed (0 to 2^63-1); a request's output depends only on it, the prompt and the "
                          "sample index.")
    stop: tuple[str, ...] = option((), "Stop string, repeatable.")

    def __post_init__(self) -> None:
        object.__setattr__(self, "stop", tuple(self.stop))
        _require([
            (_finite(self.temperature) and self.temperature >= 0, "--temperature must be a finite number >= 0"),
            (_finite(self.top_p) and 0 < self.top_p <= 1, "--top-p must be in (0, 1]"),
            (self.top_k >= 0, "--top-k must be >= 0 (0 turns it off)"),
            (_finite(self.repetition_penalty) and self.repetition_penalty > 0,
             "--repetition-penalty must be a finite number > 0 (1.0 turns it off)"),
            (self.max_new_tokens >= 1, "--max-new-tokens must be >= 1"),
            (0 <= self.seed <= MAX_SEED, "--seed must be between 0 and 2^63-1"),
        ])

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.canonical())

    def canonical(self) -> str:
        """Sorted JSON of every knob; computed once per (frozen) instance, it is part of every request key."""
        cached = self.__dict__.get("_canonical")
        if cached is None:
            data = asdict(self)
            data["stop"] = list(self.stop)
            cached = json.dumps(data, sort_keys=True, separators=(",", ":"))
            object.__setattr__(self, "_canonical", cached)
        return cached

    def with_(self, **changes: Any) -> SamplingParams:
        return replace(self, **changes)


def _positive(**values: float | None) -> list[tuple[bool, str]]:
    return [(value is None or (_finite(value) and value > 0), f"--{name.replace('_', '-')} must be > 0")
            for name, value in values.items()]


# Engine options: one frozen dataclass per engine kind, the engine's keyword arguments (engines/registry.py builds
# one from the options a command was given and refuses names no engine has). A name two engines share (dtype) is
# one flag. HFOptions mirrors HFEngine's keyword arguments: change both together.
@dataclass(frozen=True)
class HFOptions:
    device: str | None = option(None, "cuda, cuda:1, cpu (default: CUDA when present).")
    dtype: str = option("auto", "auto, bfloat16, float16, float32.")
    load_in_4bit: bool = option(False, "4-bit weights (bitsandbytes, CUDA).")
    load_in_8bit: bool = option(False, "8-bit weights (bitsandbytes, CUDA).")
    merge_adapter: bool = option(False, "Merge the LoRA adapter into the weights.")
    batch_size: int | None = option(None, "Sequences decoding together (slots; default 512 on GPU, 16 on CPU; "
                                          "fewer when the KV cache does not fit).")
    max_model_len: int | None = option(None, "Prompt + output tokens per sequence (default: the model's context, "
                                             "at most 4096 on GPU / 2048 on CPU); a longer prompt fails on its row.")
    max_batch_tokens: int | None = option(None, "Prompt tokens per prefill forward (default 8192 GPU, 2048 CPU).")
    cuda_graphs: bool = option(True, "Replay decode steps as CUDA graphs on GPU.", flag="--cuda-graphs/--no-cuda-graphs")
    gpu_memory_utilization: float | None = option(None, "Share of free GPU memory the KV cache may use (default "
                                                         "0.9).")
    poll_every: int | None = option(None, "Decode steps between host read-backs (default 8 GPU, 1 CPU).",
                                    hidden=True)
    ignore_eos: bool = option(False, "Generate max-new-tokens every time (benchmarks).", hidden=True)

    def __post_init__(self) -> None:
        _require([
            *_positive(batch_size=self.batch_size, max_batch_tokens=self.max_batch_tokens,
                       max_model_len=self.max_model_len, poll_every=self.poll_every),
            (self.gpu_memory_utilization is None or (_finite(self.gpu_memory_utilization)
                                                     and 0 < self.gpu_memory_utilization <= 1),
             "--gpu-memory-utilization must be in (0, 1]"),
            (self.dtype in DTYPES, f"--dtype {self.dtype!r}: choose {', '.join(DTYPES)}"),
            (self.device is None or re.fullmatch(r"cpu|cuda(:\d+)?", self.device) is not None,
             f"--device {self.device!r}: choose cpu, cuda or cuda:N"),
            (not (self.load_in_4bit and self.load_in_8bit), "--load-in-4bit and --load-in-8bit exclude each other"),
        ])

    def output_settings(self) -> dict[str, Any]:
        """The options that change the generated tokens; request keys include them (engines/base.request_key)."""
        settings = {"dtype": None if self.dtype == "auto" else self.dtype,
                    "quantization": "4bit" if self.load_in_4bit else "8bit" if self.load_in_8bit else None,
                    "ignore_eos": self.ignore_eos or None}
        return {k: v for k, v in settings.items() if v}


@dataclass(frozen=True)
class OpenAIOptions:
    api_key: str | None = option(None, "API key (Python API only: keys do not belong on a command line).",
                                 cli=False)
    api_key_env: str | None = option(None, "Name of the environment variable holding the key (default "
                                           "OPENAI_API_KEY).")
    concurrency: int = option(64, "Requests in flight at once.")
    rpm: int | None = option(None, "At most this many requests per minute.")
    tpm: int | None = option(None, "At most this many tokens per minute.")
    timeout: float = option(120.0, "Seconds before one request is abandoned and retried.")
    max_retries: int = option(5, "Retries of a failed request before its row is marked failed.")
    backoff_base: float = option(0.5, "First retry delay in seconds (doubles each retry).", hidden=True)
    backoff_max: float = option(30.0, "Longest retry delay in seconds.", hidden=True)
    adaptive: bool = option(True, "Adapt the requests in flight to the server (fewer on 429/503 or rising latency, "
                                  "more while clean; --concurrency is the ceiling).", flag="--adaptive/--fixed")

    def __post_init__(self) -> None:
        _require([
            *_positive(concurrency=self.concurrency, rpm=self.rpm, tpm=self.tpm, timeout=self.timeout,
                       backoff_max=self.backoff_max),
            (self.max_retries >= 0, "--max-retries must be >= 0"),
            (_finite(self.backoff_base) and self.backoff_base >= 0, "--backoff-base must be >= 0"),
        ])


@dataclass(frozen=True)
class VLLMOptions:
    dtype: str = option("auto", "auto, bfloat16, float16, float32.")
    tensor_parallel_size: int | None = option(None, "GPUs per model (tensor parallel).")
    gpu_memory_utilization: float | None = option(None, "Share of GPU memory vLLM may take, in (0, 1].")
    max_model_len: int | None = option(None, "Longest prompt+output in tokens (default: the model's).")
    max_lora_rank: int | None = option(None, "Largest LoRA rank (default: the adapter's).")
    enforce_eager: bool = option(False, "No CUDA graphs (less memory, slower).")

    def __post_init__(self) -> None:
        _require([
            *_positive(tensor_parallel_size=self.tensor_parallel_size, max_model_len=self.max_model_len,
                       max_lora_rank=self.max_lora_rank),
            (self.gpu_memory_utilization is None or 0 < self.gpu_memory_utilization <= 1,
             "--gpu-memory-utilization must be in (0, 1]"),
            (self.dtype in DTYPES, f"--dtype {self.dtype!r}: choose {', '.join(DTYPES)}"),
        ])


DTYPES = ("auto", "bfloat16", "float16", "float32")
ENGINE_OPTIONS: dict[str, type] = {"hf": HFOptions, "openai": OpenAIOptions, "vllm": VLLMOptions}


@dataclass(frozen=True)
class ExecutorOptions:
    """Where engines run: in this process, or as replicas on a Ray cluster (reasonry[ray])."""

    executor: str = option("local", "local (this process) or ray (engine replicas on a Ray cluster; "
                                    "reasonry[ray]).")
    ray_address: str | None = option(None, "Ray cluster to join (default RAY_ADDRESS, else a local cluster).")
    replicas: int = option(1, "Engine replicas (Ray actors), each loading the model once.")
    gpus_per_replica: float = option(0, "GPUs each replica reserves.")

    def __post_init__(self) -> None:
        _require([
            (self.executor in ("local", "ray"), f"--executor {self.executor!r}: choose local or ray"),
            (self.replicas >= 1, "--replicas must be >= 1"),
            (_finite(self.gpus_per_replica) and self.gpus_per_replica >= 0, "--gpus-per-replica must be >= 0"),
        ])


@dataclass(frozen=True)
class ModelSpec:
    """Which model to run and where: parsed from `kind:model[+adapter][@base_url]`.

    Examples: `hf:./phi-2+./checkpoint-2031`, `openai:llama3-8b@http://localhost:8000/v1`,
    `vllm:./model+./adapter`.
    """

    kind: str
    model: str
    adapters: tuple[str, ...] = ()
    base_url: str | None = None
    options: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def adapter(self) -> str | None:
        return "+".join(self.adapters) if self.adapters else None

    @property
    def label(self) -> str:
        """A short readable name for column headers."""
        parts = [_short(self.model)] + [_short(a) for a in self.adapters]
        return "+".join(parts)

    def __str__(self) -> str:
        text = f"{self.kind}:{self.model}"
        if self.adapters:
            text += "+" + "+".join(self.adapters)
        if self.base_url:
            text += "@" + self.base_url
        return text


def _short(path_or_id: str) -> str:
    cleaned = path_or_id.rstrip("/\\")
    parts = [p for p in cleaned.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    if not parts:
        return cleaned
    if len(parts) >= 2 and parts[-1].startswith("checkpoint-"):
        return "/".join(parts[-2:])
    return parts[-1]


def parse_model_spec(text: str, *, base_url: str | None = None) -> ModelSpec:
    """Parse a `--model` value; raises ConfigError naming the flag on a bad spec."""
    raw = text.strip()
    if ":" not in raw or raw.split(":", 1)[0] not in ENGINE_KINDS:
        raise ConfigError(
            f"--model {text!r}: expected KIND:MODEL with KIND one of {', '.join(ENGINE_KINDS)} "
            "(e.g. hf:Qwen/Qwen2.5-0.5B-Instruct, hf:./base+./adapter, openai:llama3@http://localhost:8000/v1)"
        )
    kind, rest = raw.split(":", 1)
    url = None
    if kind == "openai":
        if "@" in rest:
            rest, url = rest.split("@", 1)
        url = url or base_url or os.environ.get("OPENAI_BASE_URL")
        if not url:
            raise ConfigError(
                f"--model {text!r}: no server address; write openai:MODEL@http://host:port/v1, "
                "or pass --base-url, or set OPENAI_BASE_URL"
            )
    parts = [p for p in rest.split("+")]
    if not parts[0] or any(not p for p in parts):
        raise ConfigError(f"--model {text!r}: empty model or adapter name")
    adapters = tuple(parts[1:])
    if kind == "openai" and adapters:
        raise ConfigError(f"--model {text!r}: adapters are chosen by the server for openai models; drop '+…'")
    return ModelSpec(kind=kind, model=parts[0], adapters=adapters, base_url=url)
