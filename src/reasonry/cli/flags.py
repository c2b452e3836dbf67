"""CLI flags generated from the config dataclasses: one definition of default, help, flag name and validation.

`@model_flags()` adds the sampling flags (config.SamplingParams), every engine's option flags (config.HFOptions,
OpenAIOptions, VLLMOptions, plus --base-url) and, with `executor=True`, the Ray flags (config.ExecutorOptions)
to a command, and hands the command `params: SamplingParams`, `engine: EngineFlags` (and
`executor: ExecutorOptions`) instead of the loose values. Every model-running command therefore lists the same
flags, and a value is validated once, by the dataclass.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Sequence
from dataclasses import MISSING, Field, dataclass, fields
from typing import Annotated, Any

import typer

from reasonry.config import (
    ENGINE_OPTIONS,
    ExecutorOptions,
    ModelSpec,
    SamplingParams,
    flag_name,
    parse_model_spec,
)
from reasonry.engines.registry import check_options, option_kinds

SAMPLING_PANEL = "Sampling"
ENGINE_PANEL = "Engine (hf, openai, vllm)"
RAY_PANEL = "Executor"
BASE_URL_HELP = "openai: server address for specs without @URL (or OPENAI_BASE_URL)."


@dataclass(frozen=True)
class EngineFlags:
    """The engine flags a user gave (values other than the defaults) and --base-url."""

    given: dict[str, Any]
    base_url: str | None = None

    def spec(self, text: str) -> ModelSpec:
        return parse_model_spec(text, base_url=self.base_url)

    def options(self, specs: Sequence[ModelSpec]) -> dict[str, Any]:
        """The options for these models; one that none of them takes is refused (see engines/registry.py)."""
        return check_options(specs, self.given)


def _default(item: Field[Any]) -> Any:
    return item.default if item.default is not MISSING else item.default_factory()  # type: ignore[misc]


def _parameter(item: Field[Any], annotation: Any, default: Any, panel: str, prefix: str = "") -> inspect.Parameter:
    if typing.get_origin(annotation) is tuple:  # tuple[str, ...] fields are repeatable flags
        annotation, default = list[typing.get_args(annotation)[0]] | None, None
    info = typer.Option(flag_name(item), help=prefix + item.metadata["help"], hidden=item.metadata.get("hidden", False),
                        rich_help_panel=panel, show_default=default is not None and default is not False)
    return inspect.Parameter(item.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[annotation, info])


def _dataclass_parameters(cls: type, panel: str, defaults: dict[str, Any]) -> list[inspect.Parameter]:
    hints = typing.get_type_hints(cls)
    return [_parameter(item, hints[item.name], defaults.get(item.name, _default(item)), panel) for item in fields(cls)
            if item.metadata.get("cli", True)]


def _engine_parameters() -> list[inspect.Parameter]:
    kinds = option_kinds()
    seen: dict[str, inspect.Parameter] = {}
    for cls in ENGINE_OPTIONS.values():
        hints = typing.get_type_hints(cls)
        for item in fields(cls):
            if item.name not in seen and item.metadata.get("cli", True):
                prefix = "/".join(kinds[item.name]) + ": "
                seen[item.name] = _parameter(item, hints[item.name], _default(item), ENGINE_PANEL, prefix)
    base_url = inspect.Parameter("base_url", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        str | None, typer.Option("--base-url", help=BASE_URL_HELP, rich_help_panel=ENGINE_PANEL)])
    return [*seen.values(), base_url]


def _engine_defaults() -> dict[str, Any]:
    return {item.name: _default(item) for cls in ENGINE_OPTIONS.values() for item in fields(cls)}


def model_flags(*, sampling: dict[str, Any] | None = None, executor: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a command taking `params`, `engine` (and `executor`) with the generated flags.

    `sampling` overrides SamplingParams defaults for this command (e.g. {"max_new_tokens": 512}).
    """
    sampling_defaults = sampling or {}

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(func, eval_str=True)
        grouped = {"params", "engine", "executor"}
        own = [p for p in signature.parameters.values() if p.name not in grouped]
        sampling_params = _dataclass_parameters(SamplingParams, SAMPLING_PANEL, sampling_defaults)
        engine_params = _engine_parameters()
        executor_params = _dataclass_parameters(ExecutorOptions, RAY_PANEL, {}) if executor else []
        engine_defaults = _engine_defaults()

        @functools.wraps(func)
        def command(**values: Any) -> Any:
            picked = {p.name: values.pop(p.name) for p in sampling_params}
            picked["stop"] = tuple(picked["stop"] or ())
            values["params"] = SamplingParams(**picked)
            raw = {p.name: values.pop(p.name) for p in engine_params}
            base_url = raw.pop("base_url")
            values["engine"] = EngineFlags({k: v for k, v in raw.items() if v != engine_defaults[k]}, base_url)
            if executor:
                values["executor"] = ExecutorOptions(**{p.name: values.pop(p.name) for p in executor_params})
            return func(**values)

        parameters = [*own, *sampling_params, *engine_params, *executor_params]
        command.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        return command

    return decorate
