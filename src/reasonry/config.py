"""Typed configuration shared by every task and engine: sampling parameters and model specs."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from reasonry.errors import ConfigError

ENGINE_KINDS = ("hf", "openai", "vllm")


@dataclass(frozen=True)
class SamplingParams:
    """Sampling knobs. The defaults are the seed notebook's settings."""

    temperature: float = 0.3
    top_p: float = 0.9
    top_k: int = 50
    repetition_penalty: float = 1.1
    max_new_tokens: int = 256
    seed: int = 0
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        checks = [
            (self.temperature >= 0, "--temperature must be >= 0"),
            (0 < self.top_p <= 1, "--top-p must be in (0, 1]"),
            (self.top_k >= 0, "--top-k must be >= 0 (0 turns it off)"),
            (self.repetition_penalty > 0, "--repetition-penalty must be > 0 (1.0 turns it off)"),
            (self.max_new_tokens >= 1, "--max-new-tokens must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

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
