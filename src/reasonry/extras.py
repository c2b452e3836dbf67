"""Optional dependencies: which extra brings which module, and the one-line error when one is missing."""

from __future__ import annotations

from reasonry.errors import ReasonryError

# Top-level module -> (extra that installs it, what needs it).
EXTRAS: dict[str, tuple[str, str]] = {
    "torch": ("hf", "local models (hf:)"),
    "transformers": ("hf", "local models (hf:)"),
    "peft": ("hf", "LoRA adapters"),
    "accelerate": ("hf", "local models (hf:)"),
    "tokenizers": ("hf", "local models (hf:)"),
    "safetensors": ("hf", "local models (hf:)"),
    "datasets": ("hf", "datasets folders (and training, with the 'train' extra)"),
    "trl": ("train", "training"),
    "fastapi": ("web", "the web app (serve)"),
    "uvicorn": ("web", "the web app (serve)"),
    "starlette": ("web", "the web app (serve)"),
    "vllm": ("vllm", "vllm: models"),
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
    return MissingExtra(f"{purpose} need the '{extra}' extra ({module} is not installed): "
                        f"pip install 'reasonry[{extra}]'")
