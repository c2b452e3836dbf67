"""Request bodies of /api and /v1 as pydantic models, and the one way a validation error becomes a one-line 400.

Sampling parameters stay plain values here: `steer_api.params_from` checks them for both APIs (caps included).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    model_validator,
)

from reasonry.errors import InputError
from reasonry.tasks.steer import MODES

MAX_INT = (1 << 63) - 1  # SQLite's integer range: a bigger id or seed is refused, not an OverflowError


def _whole(value: Any) -> Any:
    """Blank means absent; a bool is not a number (pydantic would read True as 1)."""
    if value == "" or value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("whole number")
    return value


Whole = Annotated[int | None, BeforeValidator(_whole)]
# The bounds sit on the int inside the optional: on the union pydantic would apply them to None too (a TypeError, a 500).
Id = Annotated[Annotated[int, Field(ge=1, le=MAX_INT)] | None, BeforeValidator(_whole)]
Count = Annotated[Annotated[int, Field(ge=0, le=MAX_INT)] | None, BeforeValidator(_whole)]
Text = StrictStr | None

# OpenAI fields this server does not implement, with the values that mean "not used"
UNSUPPORTED = {"logprobs": (None, False), "top_logprobs": (None, 0), "echo": (None, False), "best_of": (None, 1),
               "suffix": (None, ""), "logit_bias": (None, {}), "frequency_penalty": (None, 0, 0.0),
               "presence_penalty": (None, 0, 0.0), "tools": (None, []), "response_format": (None, {"type": "text"})}
ROLES_OF_MESSAGES = ("system", "user", "assistant")

FIELD_MESSAGES = {  # fields whose type is a union: one message instead of one per alternative
    "stop": "stop must be a string or a list of strings",
    "prompt": "prompt must be a string (one prompt per request)",
    "messages": "messages must be a non-empty list of {role, content} with string content",
    "params": "params must be an object",
    "edit": "edit must be an object {kind, text, replacement}",
}


def read_body(model: type[BaseModel], body: dict[str, Any]) -> Any:
    """`body` as `model`; the first validation error becomes one InputError line naming the field."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise InputError(one_line(exc)) from None


def one_line(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    loc = [str(part) for part in error["loc"] if isinstance(part, str)]
    name = loc[0] if loc else "body"
    kind, value = error["type"], error.get("input")
    if kind == "value_error":
        message = str(error["msg"]).removeprefix("Value error, ")
        return message if message != "whole number" else f"{name} must be a whole number, not {value!r}"
    if name in FIELD_MESSAGES:
        return FIELD_MESSAGES[name]
    if kind == "string_type":
        return f"{name} must be a string"
    if kind.startswith("int_"):
        return f"{name} must be a whole number, not {value!r}"
    if kind in ("greater_than_equal", "less_than_equal"):
        return f"{name} must be between 1 and {MAX_INT}"
    return f"{name}: {error['msg']}"


class SteerBody(BaseModel):
    """POST /api/steer and /api/steer/stream."""

    model_config = ConfigDict(extra="ignore")

    question: Text = None
    input: Text = None
    model: Text = None
    mode: Text = None
    reasoning: Text = None
    thread: Text = None
    params: dict[str, Any] | None = None
    parent: Id = None
    reasoning_budget: Id = None
    reasoning_min: Count = None
    budget_close: Text = None

    @model_validator(mode="after")
    def _mode(self) -> SteerBody:
        self.mode = self.mode or "reasoning"
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r}: choose one of {', '.join(MODES)}")
        if self.mode in ("special", "continue") and not self.reasoning:
            raise ValueError(f"mode {self.mode} needs a reasoning")
        return self


class EditBody(BaseModel):
    """One reasoning edit of a batch: prefix, template, replace or regex."""

    model_config = ConfigDict(extra="forbid")

    kind: Text = None
    text: Text = None
    replacement: Text = None


class BatchBody(BaseModel):
    """POST /api/batch."""

    model_config = ConfigDict(extra="ignore")

    edit: EditBody
    model: Text = None
    run: Text = None
    run_model: Text = None
    limit: Id = None
    params: dict[str, Any] | None = None


class BatchAcceptBody(BaseModel):
    """POST /api/batch/{id}/accept."""

    model_config = ConfigDict(extra="ignore")

    without_flags: list[StrictStr] = []
    all: StrictBool = False


class AcceptBody(BaseModel):
    """POST /api/versions/{id}/accept: a version becomes training data, so only a JSON true/false decides."""

    model_config = ConfigDict(extra="ignore")

    accepted: StrictBool = True


class OpenAIBody(BaseModel):
    """The fields /v1/completions and /v1/chat/completions read; other OpenAI fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    model: Any = None
    stream: StrictBool = False
    n: Whole = None
    stop: StrictStr | list[StrictStr] | None = None
    mode: Text = None
    reasoning: Text = None
    input: Text = None
    template: Text = None
    # sampling parameters: checked by params_from
    max_tokens: Any = None
    max_completion_tokens: Any = None
    temperature: Any = None
    top_p: Any = None
    top_k: Any = None
    seed: Any = None
    repetition_penalty: Any = None

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, body: Any) -> Any:
        """OpenAI fields that would change the answer are refused unless left at their defaults, never ignored."""
        if isinstance(body, dict):
            for name, default in UNSUPPORTED.items():
                if body.get(name) not in default:
                    raise ValueError(f"{name} is not supported by this server; leave it out")
        return body

    @model_validator(mode="after")
    def _checks(self) -> OpenAIBody:
        if self.n is not None and self.n != 1:
            raise ValueError("n > 1 is not supported; send several requests")
        if self.mode is not None and self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r}: choose one of {', '.join(MODES)}")
        if self.reasoning:
            self.mode = "special"
        elif self.mode == "special":
            raise ValueError("mode special needs a reasoning (a non-empty string)")
        if self.template is not None and self.template not in ("chat", "alpaca"):
            raise ValueError("template must be chat or alpaca")
        return self

    def sampling(self) -> dict[str, Any]:
        """The sampling fields given, by /api's names (max_completion_tokens wins over max_tokens)."""
        names = {"max_tokens": "max_new_tokens", "max_completion_tokens": "max_new_tokens", "temperature": "temperature",
                 "top_p": "top_p", "seed": "seed", "top_k": "top_k", "repetition_penalty": "repetition_penalty"}
        return {names[key]: getattr(self, key) for key in names if getattr(self, key) is not None}


class CompletionBody(OpenAIBody):
    prompt: StrictStr | Annotated[list[StrictStr], Field(min_length=1, max_length=1)]


class ChatBody(OpenAIBody):
    messages: Annotated[list[dict[str, Any]], Field(min_length=1)]

    @model_validator(mode="after")
    def _messages(self) -> ChatBody:
        for message in self.messages:
            content = message.get("content")
            if isinstance(content, list):  # content parts, as newer clients send them: text only
                if not all(isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
                           for part in content):
                    raise ValueError("messages: only text content parts ({type: text, text}) are supported")
                message["content"] = "".join(part["text"] for part in content)
            if not isinstance(message.get("content"), str):
                raise ValueError(FIELD_MESSAGES["messages"])
            if message.get("role", "user") not in ROLES_OF_MESSAGES:
                raise ValueError(f"messages: role {message.get('role')!r}: use one of {', '.join(ROLES_OF_MESSAGES)}")
        return self
