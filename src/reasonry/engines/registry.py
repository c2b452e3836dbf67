"""Choose and load an engine from a model spec, with typed options (config.HFOptions, OpenAIOptions, VLLMOptions).

One option set serves every model of a command (`generate -m hf:a -m openai:b --concurrency 8`): each engine
takes the options of its own kind. An option no engine has is refused, and `check_options` refuses an option
that none of the command's models uses (`--load-in-4bit` with only openai models), so nothing is dropped silently.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import fields, replace
from typing import Any

from reasonry.config import ENGINE_OPTIONS, ExecutorOptions, ModelSpec, flag_name
from reasonry.engines.base import Engine, Request, Result
from reasonry.errors import ConfigError, EngineError

EngineLoader = Callable[..., Engine]


def option_kinds() -> dict[str, list[str]]:
    """Every engine option name and the engine kinds that take it."""
    kinds: dict[str, list[str]] = {}
    for kind, cls in ENGINE_OPTIONS.items():
        for item in fields(cls):
            kinds.setdefault(item.name, []).append(kind)
    return kinds


def _flag(name: str) -> str:
    for cls in ENGINE_OPTIONS.values():
        for item in fields(cls):
            if item.name == name:
                return flag_name(item)
    return name


def engine_options(kind: str, options: Mapping[str, Any]) -> Any:
    """The typed options of one engine kind from a shared option set; unknown names are refused."""
    known = option_kinds()
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"unknown engine option {unknown[0]!r}; engine options are: {', '.join(sorted(known))}")
    if kind not in ENGINE_OPTIONS:
        raise EngineError(f"unknown engine kind {kind!r}")
    cls = ENGINE_OPTIONS[kind]
    return cls(**{k: v for k, v in options.items() if kind in known[k] and v is not None})


def check_options(specs: Sequence[ModelSpec], options: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a command's engine options against its models, before any model loads; returns them."""
    known = option_kinds()
    present = {spec.kind for spec in specs}
    for kind in present:
        engine_options(kind, options)
    for name in options:
        if not present & set(known[name]):
            models = ", ".join(str(spec) for spec in specs)
            raise ConfigError(f"{_flag(name)} is an option of {'/'.join(known[name])} models, and no model here is "
                              f"one ({models})")
    return dict(options)


def load_engine(spec: ModelSpec, **options: Any) -> Engine:
    typed = engine_options(spec.kind, options)
    values = {item.name: getattr(typed, item.name) for item in fields(typed)}
    if spec.kind == "hf":
        from reasonry.engines.hf import HFEngine

        return HFEngine(spec, **values)
    if spec.kind == "openai":
        try:
            from reasonry.engines.openai import OpenAIEngine
        except ImportError as exc:
            raise EngineError(f"engine openai is not available ({exc})") from None
        return OpenAIEngine(spec, **values)
    from reasonry.engines.vllm import VLLMEngine

    return VLLMEngine(spec, **values)


def open_engine(spec: ModelSpec, options: Mapping[str, Any], executor: ExecutorOptions | None = None) -> Engine:
    """The engine for one model: in this process, or replicas on a Ray cluster (`--executor ray`)."""
    executor = executor or ExecutorOptions()
    if executor.executor == "ray":
        from reasonry.engines.ray_executor import RayEngine

        return RayEngine(spec, dict(options), address=executor.ray_address, replicas=executor.replicas,
                         gpus_per_replica=executor.gpus_per_replica)
    return load_engine(spec, **options)


def keyed_spec(spec: ModelSpec, options: Mapping[str, Any]) -> ModelSpec:
    """The spec request keys are computed from: with the engine settings that change outputs (dtype, sampler…),
    known before the engine loads. HFEngine sets the same `settings` on its own spec once loaded."""
    typed = engine_options(spec.kind, options)
    settings = typed.output_settings() if hasattr(typed, "output_settings") else {}
    return replace(spec, options={**spec.options, "settings": settings}) if settings else spec


class LazyEngine(Engine):
    """Loads the real engine only when it is first needed, so a fully cached rerun loads no model."""

    def __init__(self, spec: ModelSpec, loader: EngineLoader, options: Mapping[str, Any]) -> None:
        self.spec = keyed_spec(spec, {k: v for k, v in options.items() if k in option_kinds()})
        self._loader = loader
        self._options = dict(options)
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self._loader(self.spec, **self._options)
        return self._engine

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        iterator = iter(requests)
        first = next(iterator, None)
        if first is None:
            return
        yield from self.engine.generate(itertools.chain([first], iterator))

    def stream(self, request: Request) -> Iterator[str | Result]:
        return self.engine.stream(request)

    def render_chat(self, messages: list[dict[str, str]], prefill: str | None = None) -> str | None:
        return self.engine.render_chat(messages, prefill)

    def count_tokens(self, text: str) -> int | None:
        return self.engine.count_tokens(text)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
