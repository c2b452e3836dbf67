"""Prompt templates: the built-ins that reproduce the seeds, and the user's own `.j2` files."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from reasonry.errors import ConfigError, InputError
from reasonry.prompts.roles import ROLES
from reasonry.requests import MAX_PROMPT_CHARS, PromptTooLarge

BUILTIN_TEMPLATES: dict[str, tuple[str, str]] = {
    # name: (what the model writes after the prompt, description)
    "phi2": ("reasoning", "Seed 000 tag format: <|system|> role, <|instruction|>, <|context|> (input >= 2 chars), <|reasoning|>"),
    "alpaca-reasoning": ("reasoning", "Seed 003 'reasoning' mode: the model writes ### Reasoning: then ### Response:"),
    "alpaca-vanilla": ("response", "Seed 003 'vanilla' mode: instruction and input straight to ### Response:"),
    "alpaca-special": ("response", "Seed 003 'special' mode: a given reasoning, then ### Response:"),
    "fbq": ("questions", "Seed 003 FBQ_GVB_template.j2: N 'PARAGRAPH: ' fact-based questions from a CONTEXT answer"),
    "ensemble": ("reasoning", "reasonry ensemble: merge numbered candidate reasonings into one that does not state the answer"),
    "translate": ("response", "reasonry translate: the seed's translator role translating a text into another language"),
    "rebuttal": ("reasoning", "Debate: reasoning about an answer's weak points, then '### Rebuttals:' and N 'PARAGRAPH: ' rebuttals"),
    "debate-answer": ("reasoning", "Debate: seed 003 'reasoning' layout answering a question/rebuttal (optional system line first)"),
    "judge": ("response", "Debate: score a question/rebuttal 1-10 for depth and novelty"),
    "check-judge": ("response", "reasonry check --judge: does the reasoning state the answer, does it support the response"),
}



class _CappedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox (no attribute tricks, `range` capped) that also refuses `*`/`**` results over the prompt cap."""

    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and abs(right) > 1000:
            raise PromptTooLarge(f"template: exponent {right} is too large")
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(count, int) and len(seq) * count > MAX_PROMPT_CHARS:
                    raise PromptTooLarge(f"template: repeating a text {count:,} times goes over the "
                                         f"{MAX_PROMPT_CHARS:,}-character prompt limit")
        return super().call_binop(context, operator, left, right)


ENV = _CappedSandbox(
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)


@functools.lru_cache(maxsize=64)
def _compiled(source: str) -> jinja2.Template:
    return ENV.from_string(source)


@functools.lru_cache(maxsize=64)
def _variables(source: str) -> frozenset[str]:
    from jinja2 import meta

    return frozenset(meta.find_undeclared_variables(ENV.parse(source)))


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    source: str
    produces: str  # "reasoning" | "response" | "questions"
    path: Path | None = None

    @property
    def needs_reasoning(self) -> bool:
        return "reasoning" in _variables(self.source) and self.produces == "response"

    def render(self, **variables: Any) -> str:
        """The rendered prompt; PromptTooLarge when it (or any step of it) exceeds MAX_PROMPT_CHARS."""
        parts: list[str] = []
        size = 0
        try:
            for part in _compiled(self.source).generate(**variables):
                size += len(part)
                if size > MAX_PROMPT_CHARS:
                    raise PromptTooLarge(f"template {self.name}: the rendered prompt exceeds the "
                                         f"{MAX_PROMPT_CHARS:,}-character limit")
                parts.append(part)
        except PromptTooLarge as exc:
            raise PromptTooLarge(str(exc).replace("template:", f"template {self.name}:", 1)) from None
        except jinja2.UndefinedError as exc:
            raise InputError(f"template {self.name}: {exc.message}; available: {', '.join(sorted(variables))}") from None
        except jinja2.TemplateError as exc:
            raise ConfigError(f"template {self.name}: {exc}") from None
        except (OverflowError, MemoryError, RecursionError) as exc:
            raise ConfigError(f"template {self.name}: cannot be rendered ({type(exc).__name__}: "
                              f"{str(exc)[:200] or 'too large'}); simplify it") from None
        return "".join(parts)


@functools.lru_cache(maxsize=32)
def builtin_source(name: str) -> str:
    return resources.files("reasonry.prompts").joinpath("templates", f"{name}.j2").read_text(encoding="utf-8")


def load_template(name_or_path: str, *, produces: str | None = None) -> PromptTemplate:
    """A built-in by name, or a `.j2` file. User files produce a reasoning when they end with a reasoning tag."""
    if name_or_path in BUILTIN_TEMPLATES:
        kind = BUILTIN_TEMPLATES[name_or_path][0]
        return PromptTemplate(name_or_path, builtin_source(name_or_path), produces or kind)
    path = Path(name_or_path)
    if not path.exists():
        raise ConfigError(
            f"--template {name_or_path!r}: not a built-in ({', '.join(BUILTIN_TEMPLATES)}) and no such file"
        )
    try:
        source = path.read_text(encoding="utf-8")
        ENV.parse(source)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--template {path}: cannot read it ({exc})") from None
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"--template {path} line {exc.lineno}: {exc.message}") from None
    return PromptTemplate(path.stem, source, produces or _guess_produces(source), path)


def _guess_produces(source: str) -> str:
    tail = source.rstrip().lower()[-40:]
    if tail.endswith(("### response:", "<|response|>", "response:")):
        return "response"
    if "reasoning" in tail or "<think>" in tail:
        return "reasoning"
    return "response"


def role_text(role: str | None, system: str | None) -> str:
    if system is not None:
        return system
    name = role or "assistant"
    if name not in ROLES:
        raise ConfigError(f"--role {name!r}: choose one of {', '.join(ROLES)}, or give --system TEXT")
    return ROLES[name]
