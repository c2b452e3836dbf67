"""What the OpenAI engine reads off the wire: JSON answers, streamed deltas, and the two kinds of failure."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from reasonry.engines.base import Result


class Retryable(Exception):
    """A failure worth another try (timeouts, dropped connections, 429/5xx, malformed answers)."""

    def __init__(self, message: str, retry_after: float | None = None, *, overloaded: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.overloaded = overloaded


class Rejected(Exception):
    """A refusal that another identical try would meet again; `unexpected`: extra sampling fields it names."""

    def __init__(self, message: str, unexpected: set[str] | None = None) -> None:
        super().__init__(message)
        self.unexpected = unexpected or set()


def json_object(raw: bytes, where: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        raise Retryable(f"malformed JSON from {where}: {raw[:80]!r}") from None
    if not isinstance(data, dict):
        raise Retryable(f"malformed answer from {where}: not a JSON object")
    return data


def raw_text(text: str, reasoning: str | None) -> str:
    return f"<think>\n{reasoning}\n</think>\n\n{text}" if reasoning else text


class StreamState:
    """Collects streamed deltas; the emitted pieces join into the same raw_text `generate` would store."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit = emit
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.usage: dict[str, Any] = {}
        self.finish = "stop"
        self.finished = False
        self.sent = False

    def whole(self, data: dict[str, Any], *, chat: bool) -> None:
        """A plain JSON answer to a stream request: the same text, sent as one piece."""
        try:
            choice = data["choices"][0]
            message = choice["message"] if chat else {"content": choice["text"]}
        except (KeyError, IndexError, TypeError):
            raise Retryable("a JSON answer to a stream request without choices[0] text") from None
        delta = {k: message.get(k) for k in ("reasoning_content", "reasoning", "content")}
        self.feed({"usage": data.get("usage"), "choices": [{"delta": delta, "text": message.get("content"),
                                                              "finish_reason": choice.get("finish_reason") or "stop"}]},
                  chat=chat)

    def feed(self, chunk: dict[str, Any], *, chat: bool) -> None:
        self.usage = chunk.get("usage") or self.usage
        for choice in chunk.get("choices") or []:
            if choice.get("finish_reason"):
                self.finish, self.finished = choice["finish_reason"], True
            if not chat:
                self._content(choice.get("text") or "")
                continue
            delta = choice.get("delta") or {}
            thought = delta.get("reasoning_content") or delta.get("reasoning")
            if thought:
                self._send(("<think>\n" if not self.reasoning else "") + thought)
                self.reasoning.append(thought)
            self._content(delta.get("content") or "")

    def _content(self, piece: str) -> None:
        if not piece:
            return
        closing = "\n</think>\n\n" if self.reasoning and not self.text else ""
        self.text.append(piece)
        self._send(closing + piece)

    def _send(self, piece: str) -> None:
        self.sent = True
        self.emit(piece)

    def result(self, key: str, latency: float) -> Result:
        text = "".join(self.text)
        reasoning = "".join(self.reasoning) or None
        return Result(key=key, text=text, raw_text=raw_text(text, reasoning), reasoning=reasoning,
                      prompt_tokens=int(self.usage.get("prompt_tokens") or 0),
                      completion_tokens=int(self.usage.get("completion_tokens") or 0),
                      finish_reason=self.finish, latency_s=latency)
