"""`train`: LoRA (QLoRA on CUDA) fine-tuning with TRL on an exported dataset: SFT, or DPO on preference pairs.

The adapter written to `out` (adapter_config.json, weights, tokenizer) loads back with
`reasonry generate --model hf:BASE+OUT`. The loss of every logged step goes to `out/loss.jsonl`.

Data formats, inferred from the records' keys: `text` (plain language modelling; the alpaca-special
export), `prompt`/`completion` (loss on the completion only), `messages` (conversational, through the
tokenizer's chat template). `conversations` (ShareGPT) and `instruction`/`output` (alpaca) are converted to
`messages` and to the alpaca-special text. A `reasoning_content` field of a message is folded into a
`<think>` block at the start of its content, so that the reasoning is trained whatever the chat template.

Preference pairs (`prompt`/`chosen`/`rejected`, the `export --format dpo` layout, plain text or message lists)
train with TRL's DPOTrainer (`method="dpo"`, chosen by default for such data); the LoRA adapter is the policy and
the frozen base is the reference model.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reasonry.config import parse_model_spec
from reasonry.errors import ConfigError, EngineError, InputError, ReasonryError, first_line
from reasonry.io.atomic import atomic_folder, write_text

TRAIN_FORMATS = ("text", "prompt-completion", "conversational", "sharegpt", "alpaca", "preference")
METHODS = ("auto", "sft", "dpo")
PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")
FORMAT_ALIASES = {"alpaca-special": "text", "messages": "conversational"}
DATA_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
ATTENTION_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
LOSS_LOG = "loss.jsonl"


@dataclass
class TrainConfig:
    format: str | None = None
    method: str = "auto"  # auto: dpo for preference pairs, sft otherwise
    beta: float = 0.1  # DPO: strength of the pull towards the reference model
    epochs: float = 1.0
    max_steps: int | None = None
    lr: float = 2e-4
    max_seq_len: int = 2048
    lora_r: int = 16
    lora_alpha: int | None = None  # default 2 * lora_r
    lora_dropout: float = 0.05
    target_modules: str = "all-linear"  # "all-linear", "attention" (q,k,v,o projections) or a comma list
    batch_size: int = 2
    grad_accum: int = 1
    seed: int = 42
    load_in_4bit: bool = False
    logging_steps: int = 1

    def check(self) -> None:
        positive = {"--epochs": self.epochs, "--lr": self.lr, "--max-seq-len": self.max_seq_len,
                    "--lora-r": self.lora_r, "--batch-size": self.batch_size, "--grad-accum": self.grad_accum}
        for flag, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{flag} must be > 0 (got {value})")
        if self.max_steps is not None and self.max_steps <= 0:
            raise ConfigError(f"--max-steps must be > 0 (got {self.max_steps})")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"--lora-dropout must be in [0, 1) (got {self.lora_dropout})")
        if self.method not in METHODS:
            raise ConfigError(f"--method {self.method!r}: choose one of {', '.join(METHODS)}")
        if not self.beta > 0:
            raise ConfigError(f"--beta must be > 0 (got {self.beta})")

    def modules(self) -> str | list[str]:
        value = self.target_modules.strip()
        if value in ("all-linear", "all", ""):
            return "all-linear"
        if value == "attention":
            return list(ATTENTION_MODULES)
        return [m.strip() for m in value.split(",") if m.strip()]


# --------------------------------------------------------------------------------------------- data


def load_records(path: str | Path) -> Any:
    """The dataset at `path` (.jsonl, .json, .parquet) as a `datasets.Dataset`; InputError when unusable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    kind = DATA_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise InputError(f"{path}: unknown data format '{path.suffix}'; use {', '.join(DATA_SUFFIXES)}")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty; nothing to train on")
    from datasets import load_dataset
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    try:
        dataset = load_dataset(kind, data_files=str(path), split="train")
    except Exception as exc:  # datasets wraps parse errors in several exception types
        raise InputError(f"{path}: cannot read it as {kind} ({first_line(exc, limit=None)})") from None
    if len(dataset) == 0:
        raise InputError(f"{path}: no records; nothing to train on")
    return dataset


def infer_format(columns: list[str], path: str | Path = "data") -> str:
    names = set(columns)
    if set(PREFERENCE_COLUMNS) <= names:
        return "preference"
    if "text" in names:
        return "text"
    if {"prompt", "completion"} <= names:
        return "prompt-completion"
    if "messages" in names:
        return "conversational"
    if "conversations" in names:
        return "sharegpt"
    if {"instruction", "output"} <= names:
        return "alpaca"
    raise InputError(f"{path}: cannot tell the format from the columns ({', '.join(columns)}); expected text, "
                     "prompt/completion or messages (or give --format)")


def resolve_method(method: str, fmt: str, path: str | Path) -> str:
    """The training method for data of format `fmt`: DPO needs preference pairs, SFT anything else."""
    if method == "auto":
        return "dpo" if fmt == "preference" else "sft"
    if method == "dpo" and fmt != "preference":
        raise InputError(f"{path}: --method dpo needs preference pairs (prompt/chosen/rejected, from "
                         "`reasonry export --format dpo`); this file is {fmt} data for SFT")
    if method == "sft" and fmt == "preference":
        raise InputError(f"{path}: preference pairs (prompt/chosen/rejected) train with --method dpo, not sft")
    return method


def resolve_format(requested: str | None, columns: list[str], path: str | Path) -> str:
    if requested is None:
        return infer_format(columns, path)
    name = FORMAT_ALIASES.get(requested, requested)
    if name not in TRAIN_FORMATS:
        raise ConfigError(f"--format {requested!r}: choose one of {', '.join(TRAIN_FORMATS + tuple(FORMAT_ALIASES))}")
    needed = {"text": ["text"], "prompt-completion": ["prompt", "completion"], "conversational": ["messages"],
              "sharegpt": ["conversations"], "alpaca": ["instruction", "output"],
              "preference": list(PREFERENCE_COLUMNS)}[name]
    missing = [c for c in needed if c not in columns]
    if missing:
        raise InputError(f"{path}: --format {requested} needs column(s) {', '.join(missing)}; "
                         f"columns are {', '.join(columns)}")
    return name


def _fold(message: dict[str, Any]) -> dict[str, str]:
    from reasonry.export import think_content

    content = message.get("content") or ""
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if reasoning and "<think>" not in content:
        content = think_content(reasoning, content)
    return {"role": message["role"], "content": content}


_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "system": "system", "model": "assistant"}


def _sharegpt_messages(turns: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [_fold({"role": _SHAREGPT_ROLES.get(t["from"], t["from"]), "content": t.get("value"),
                   "reasoning": t.get("reasoning")}) for t in turns]


def _alpaca_text(record: dict[str, Any]) -> str:
    from reasonry.export import Example, special_text

    example = Example("", record.get("instruction") or "", record.get("input") or "",
                      record.get("reasoning") or "", record.get("output") or "", None)
    return special_text(example)


def prepare_dataset(dataset: Any, fmt: str) -> tuple[Any, str]:
    """(dataset with only the columns TRL needs, the TRL format: text / prompt-completion / conversational /
    preference)."""
    if fmt == "preference":
        pairs = dataset.select_columns(list(PREFERENCE_COLUMNS))
        if isinstance(pairs[0]["chosen"], list):  # message lists: fold reasoning fields into <think> blocks
            pairs = pairs.map(lambda r: {k: [_fold(m) for m in r[k]] for k in PREFERENCE_COLUMNS})
        return pairs, fmt
    if fmt == "text":
        return dataset.select_columns(["text"]), "text"
    if fmt == "prompt-completion":
        return dataset.select_columns(["prompt", "completion"]), fmt
    if fmt == "alpaca":
        return dataset.map(lambda r: {"text": _alpaca_text(r)}, remove_columns=dataset.column_names), "text"
    if fmt == "sharegpt":
        return dataset.map(lambda r: {"messages": _sharegpt_messages(r["conversations"])},
                           remove_columns=dataset.column_names), "conversational"
    return dataset.map(lambda r: {"messages": [_fold(m) for m in r["messages"]]},
                       remove_columns=dataset.column_names), "conversational"


# --------------------------------------------------------------------------------------------- model


def base_model_name(base: str) -> str:
    if ":" not in base or base.split(":", 1)[0] not in ("hf",):
        if base.split(":", 1)[0] in ("openai", "vllm"):
            raise ConfigError(f"--base {base!r}: training needs transformers weights; write hf:MODEL")
        base = f"hf:{base}"
    spec = parse_model_spec(base)
    if spec.adapters:
        raise ConfigError(f"--base {base!r}: give the base model without '+ADAPTER'")
    return spec.model


def _check_4bit() -> None:
    import torch

    if not torch.cuda.is_available():
        raise EngineError("--load-in-4bit: QLoRA needs a CUDA GPU (none found); train without --load-in-4bit")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise EngineError("--load-in-4bit: bitsandbytes is not installed (pip install bitsandbytes)") from None


def load_base(name: str, load_in_4bit: bool) -> tuple[Any, Any]:
    """(model, tokenizer) of the base; EngineError when it cannot be loaded."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if load_in_4bit:
        _check_4bit()
    cuda = torch.cuda.is_available()
    kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32}
    if load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=kwargs["dtype"])
        kwargs["device_map"] = {"": 0}
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise EngineError(f"--base hf:{name}: cannot load the model ({first_line(exc, limit=None)})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def lora_config(config: TrainConfig) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha or 2 * config.lora_r,
                      lora_dropout=config.lora_dropout, target_modules=config.modules(), bias="none",
                      task_type="CAUSAL_LM")


def trainer_config(config: TrainConfig, out: Path, method: str) -> Any:
    """TRL's SFTConfig or DPOConfig with the same optimisation settings."""
    import torch
    from trl import DPOConfig, SFTConfig

    cls = DPOConfig if method == "dpo" else SFTConfig
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    fields = {f.name for f in dataclasses.fields(cls)}
    # transformers renamed gradient_checkpointing to activation_checkpointing in 5.2x; accept either.
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    specific = {"beta": config.beta} if method == "dpo" else {"packing": False, "dataset_text_field": "text"}
    return cls(
        output_dir=str(out), num_train_epochs=config.epochs, max_steps=config.max_steps or -1,
        learning_rate=config.lr, per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum, seed=config.seed, data_seed=config.seed,
        max_length=config.max_seq_len, logging_steps=config.logging_steps, save_strategy="no", report_to="none",
        use_cpu=not cuda, bf16=bf16, fp16=cuda and not bf16, **{checkpointing: cuda},
        dataloader_pin_memory=cuda, push_to_hub=False, disable_tqdm=True, lr_scheduler_type="linear",
        warmup_steps=0, **specific,
    )


# --------------------------------------------------------------------------------------------- training


def _loss_callback(path: Path, on_log: Callable[[dict[str, Any]], None] | None) -> Any:
    from transformers import TrainerCallback

    class LossLog(TrainerCallback):
        """Appends {step, loss, learning_rate, epoch} to loss.jsonl at every logged step."""

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kwargs: Any) -> None:
            if not logs or "loss" not in logs:
                return
            entry = {"step": state.global_step, "max_steps": state.max_steps, "loss": float(logs["loss"]),
                     "learning_rate": logs.get("learning_rate"), "epoch": logs.get("epoch")}
            with path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry) + "\n")
            if on_log:
                on_log(entry)

    return LossLog()


def require_training_packages() -> None:
    import importlib.util

    needed = ("torch", "transformers", "datasets", "peft", "trl")
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise EngineError(f"reasonry train needs the 'train' extra ({', '.join(missing)} not installed): "
                          "pip install 'reasonry[train]'")


def train(data: str | Path, base: str, out: str | Path, config: TrainConfig | None = None, *,
          on_log: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """LoRA SFT or DPO of `base` (hf:MODEL) on the export at `data`; the adapter goes to `out`. Returns a summary."""
    config = config or TrainConfig()
    config.check()
    require_training_packages()
    name = base_model_name(base)
    dataset = load_records(data)
    fmt = resolve_format(config.format, list(dataset.column_names), data)
    method = resolve_method(config.method, fmt, data)
    dataset, trl_format = prepare_dataset(dataset, fmt)
    out = _check_adapter_folder(Path(out))
    model, tokenizer = load_base(name, config.load_in_4bit)
    chat = trl_format == "conversational" or (fmt == "preference" and isinstance(dataset[0]["chosen"], list))
    if chat and not tokenizer.chat_template:
        raise InputError(f"{data}: chat records need a chat template, and hf:{name} has none; export "
                         "alpaca-special or prompt-completion instead")
    with atomic_folder(out) as work:  # `out` changes only once training succeeded
        trainer = _trainer(model, tokenizer, dataset, config, work, method, _loss_callback(work / LOSS_LOG, on_log))
        started = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - started
        trainer.save_model(str(work))
        tokenizer.save_pretrained(str(work))
        losses = read_losses(work / LOSS_LOG)
        summary = {
            "out": str(out), "base": name, "data": str(data), "format": fmt, "method": method,
            "records": len(dataset), "steps": int(result.global_step),
            "first_loss": losses[0]["loss"] if losses else None, "last_loss": losses[-1]["loss"] if losses else None,
            "train_loss": float(result.training_loss), "seconds": round(seconds, 2),
            "trainable_params": _trainable(trainer.model), "loss_log": str(out / LOSS_LOG), "config": asdict(config),
        }
        write_text(work / "train.json", json.dumps(summary, indent=1, default=str))
    return summary


def _check_adapter_folder(out: Path) -> Path:
    """`out` may be new, empty, or an earlier adapter of `reasonry train` (replaced once training succeeds)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: is a file; give a folder for the adapter")
    if out.is_dir() and any(out.iterdir()) and not (out / "train.json").exists():
        raise InputError(f"--out {out}: holds other files; give a new or empty folder (or an earlier adapter's "
                         "folder, which is replaced)")
    return out


def _trainer(model: Any, tokenizer: Any, dataset: Any, config: TrainConfig, out: Path, method: str,
             callback: Any) -> Any:
    from transformers import PrinterCallback
    from trl import DPOTrainer, SFTTrainer

    cls = DPOTrainer if method == "dpo" else SFTTrainer
    try:
        trainer = cls(model=model, args=trainer_config(config, out, method), train_dataset=dataset,
                      processing_class=tokenizer, peft_config=lora_config(config), callbacks=[callback])
    except ReasonryError:
        raise
    except ValueError as exc:  # e.g. target modules absent from the model
        raise ConfigError(f"cannot set up training: {first_line(exc, limit=None)}") from None
    trainer.remove_callback(PrinterCallback)
    return trainer


def _trainable(model: Any) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def read_losses(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
