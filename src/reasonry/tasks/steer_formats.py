"""Where the reasoning sits in a prompt format, so steering works in any of them.

A steering format knows three things about a prompt template: the `head` (the prompt up to where the
reasoning starts), the `section_end` (the text that closes the reasoning and opens the response, such as
alpaca's "\\n\\n### Response:\\n", phi2's "\\n<|response|>" or a chat model's "\\n</think>\\n\\n") and the vanilla
prompt (straight to the response). With those, every mode is a concatenation:

    reasoning  head                                  the model writes reasoning, end marker, response
    continue   head + prefix                         the model continues the reasoning, then responds
    special    head + reasoning + section_end        the model writes the response only
    vanilla    the vanilla template, else head + section_end (an empty reasoning)

Built-ins: `alpaca` (seed 003, the default), `phi2` (seed 000's tags with the four roles), `debate-answer`; any
user `.j2` file that either has a `{{ reasoning }}` slot (split there) or ends at a known reasoning tag.
Chat models (`chat=True`) prefill the assistant turn inside `<think>`.
"""

from __future__ import annotations

from dataclasses import dataclass

from reasonry.errors import ConfigError, InputError
from reasonry.extract import split_output
from reasonry.prompts.formats import THINK_PREFILL, user_content
from reasonry.prompts.library import PromptTemplate, _variables, load_template, role_text

# A reasoning tag a prompt may end at -> the text that closes that reasoning section.
SECTION_ENDS = (("### Reasoning:", "\n\n### Response:\n"), ("<|reasoning|>", "\n<|response|>"),
                ("Reasoning:", "\n\nResponse:\n"), ("<think>", "\n</think>\n\n"))
CHAT_HEAD, CHAT_END = THINK_PREFILL.split("{reasoning}")
ALIASES = {"alpaca": "alpaca-special", "alpaca-reasoning": "alpaca-special"}
VANILLA = {"alpaca-special": "alpaca-vanilla"}
SENTINEL = "\x00REASONING\x00"
MODES = ("reasoning", "special", "vanilla", "continue")


@dataclass(frozen=True)
class Prompt:
    """One model call's text: a raw prompt, or chat messages with an assistant prefill."""

    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    prefill: str | None = None


@dataclass(frozen=True)
class SteerFormat:
    name: str
    template: PromptTemplate | None  # None: the model's chat template
    section_end: str
    slot: bool = False  # the template has a {{ reasoning }} slot (else it ends at the reasoning tag)
    vanilla: PromptTemplate | None = None
    role: str | None = None
    system: str | None = None

    @property
    def chat(self) -> bool:
        return self.template is None

    @property
    def end_marker(self) -> str:
        """The stop string that ends the reasoning section (the section end without its blank lines)."""
        return self.section_end.strip() or self.section_end

    def _variables(self, question: str, input_text: str) -> dict[str, str]:
        return {"instruction": question, "input": input_text, "question": question,
                "system": role_text(self.role, self.system)}

    def head(self, question: str, input_text: str = "") -> str:
        assert self.template is not None
        variables = self._variables(question, input_text)
        if not self.slot:
            return self.template.render(**variables)
        return self.template.render(**variables, reasoning=SENTINEL).split(SENTINEL, 1)[0]

    def build(self, mode: str, question: str, input_text: str = "", reasoning: str | None = None, *,
              empty_ok: bool = False) -> Prompt:
        """The prompt of one steering call. `reasoning` is the given reasoning (special) or the prefix (continue);
        `empty_ok` lets special mode answer after an empty reasoning (a model that thought nothing)."""
        if mode not in MODES:
            raise ConfigError(f"--mode {mode!r}: choose one of {', '.join(MODES)}")
        if mode == "special" and not empty_ok and not (reasoning or "").strip():
            raise InputError("mode special needs a reasoning (--reasoning TEXT or @file.txt)")
        if mode == "continue" and not (reasoning or "").strip():
            raise InputError("mode continue needs a reasoning prefix (--continue-from TEXT or @file.txt)")
        if self.template is None:
            prefill = {"reasoning": None, "vanilla": None, "continue": CHAT_HEAD + (reasoning or ""),
                       "special": CHAT_HEAD + (reasoning or "") + CHAT_END}[mode]
            return Prompt(None, self._messages(question, input_text), prefill)
        if mode == "vanilla" and self.vanilla is not None:
            return Prompt(self.vanilla.render(**self._variables(question, input_text)))
        if mode == "special" and self.slot:
            return Prompt(self.template.render(**self._variables(question, input_text), reasoning=reasoning or ""))
        if mode in ("reasoning", "continue"):
            return self.inside(question, input_text, reasoning or "" if mode == "continue" else "")
        given = reasoning or "" if mode == "special" else ""
        return Prompt(self._before(question, input_text) + given + self.section_end)

    def inside(self, question: str, input_text: str = "", prefix: str = "") -> Prompt:
        """The prompt that leaves the model inside the reasoning section after `prefix` (which may be empty)."""
        if self.template is None:
            return Prompt(None, self._messages(question, input_text), CHAT_HEAD + prefix)
        return Prompt(self._before(question, input_text) + prefix if prefix else self.head(question, input_text))

    def _before(self, question: str, input_text: str) -> str:
        """The head a given reasoning follows: without trailing spaces (phi2's head ends in its indentation)."""
        head = self.head(question, input_text)
        return head if self.slot else head.rstrip(" \t")

    @staticmethod
    def _messages(question: str, input_text: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": user_content(question, input_text)}]

    def split(self, text: str) -> tuple[str | None, str | None]:
        """(reasoning, response) of text that starts inside the reasoning section (reasoning/continue modes)."""
        if self.template is None or self.end_marker not in text:
            return split_output(text, "reasoning")
        reasoning, response = text.split(self.end_marker, 1)
        return reasoning.strip(), split_output(response, "response")[1]


def _section_end(template: PromptTemplate) -> str | None:
    tail = template.source.rstrip()
    for tag, end in SECTION_ENDS:
        if tail.endswith(tag):
            return end
    return None


def steer_format(name: str = "alpaca", *, chat: bool = False, role: str | None = None,
                 system: str | None = None) -> SteerFormat:
    """The steering format of a built-in template name or a `.j2` file (or the chat template with `chat`)."""
    if chat:
        return SteerFormat("chat", None, CHAT_END, role=role, system=system)
    template = load_template(ALIASES.get(name, name))
    vanilla = load_template(VANILLA[template.name]) if template.name in VANILLA else None
    if "reasoning" in _variables(template.source):
        rendered = template.render(instruction="", input="", question="", system="", reasoning=SENTINEL)
        if rendered.count(SENTINEL) != 1:
            raise ConfigError(f"--template {name}: its {{{{ reasoning }}}} slot must appear exactly once")
        end = rendered.split(SENTINEL, 1)[1]
        if not end.strip():
            raise ConfigError(f"--template {name}: nothing follows the {{{{ reasoning }}}} slot, so the model "
                              "cannot be told where the response starts; add a response tag after it")
        return SteerFormat(template.name, template, end, True, vanilla, role, system)
    end = _section_end(template)
    if end is None:
        raise ConfigError(f"--template {name}: it has no {{{{ reasoning }}}} slot and does not end at a reasoning "
                          f"tag ({', '.join(tag for tag, _ in SECTION_ENDS)}); steering needs one of the two")
    return SteerFormat(template.name, template, end, False, vanilla, role, system)

