"""Optional dependencies: which extra brings which module, and the one-line error when one is missing."""

from __future__ import annotations

from reasonry.errors import ReasonryError

# Top-level module -> (extra that installs it, what needs it).
EXTRAS: dict[str, tuple[str, str]] = {
    "torch": ("hf", "a local model (hf:)"),
    "transformers": ("hf", "a local model (hf:)"),
    "peft": ("hf", "a LoRA adapter"),
    "accelerate": ("hf", "a local model (hf:)"),
    "tokenizers": ("hf", "a local model (hf:)"),
    "safetensors": ("hf", "a local model (hf:)"),
    "datasets": ("hf", "a datasets folder (training: the 'train' extra)"),
    "trl": ("train", "training"),
    "fastapi": ("web", "the web app (serve)"),
    "uvicorn": ("web", "the web app (serve)"),
    "starlette": ("web", "the web app (serve)"),
    "vllm": ("vllm", "a vllm: model"),
    "ray": ("ray", "--executor ray"),
}


class MissingExtra(ReasonryError):
    """An optional dependency that is not installed; the message names the extra to install."""


def missing_extra(error: ModuleNotFoundError) -> MissingExtra | None:
    """The one-line error for a missing optional module, or None when `error` is about another module."""
    module = (error.name or "").split(".")[0]
    if module not in EXTRAS:
        return None
    extra, purpose = EXTRAS[module]
    return MissingExtra(f"{purpose} needs the '{extra}' extra ({module} is not installed): "
                        f"pip install 'reasonry[{extra}]'")
