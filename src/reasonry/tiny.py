"""Build a tiny Qwen2-shaped model with random weights (and optionally a LoRA adapter) on disk.

Used by the offline demo and the tests: it goes through the same `from_pretrained` code as a real model,
but its output is noise. Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

from reasonry.prompts.library import BUILTIN_TEMPLATES, builtin_source
from reasonry.prompts.roles import ROLES

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% if enable_thinking is defined and enable_thinking %}{{ '<think>\n' }}{% endif %}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TAG_TOKENS = ["<|system|>", "<|instruction|>", "<|context|>", "<|reasoning|>", "<|response|>", "<think>", "</think>"]

CORPUS_LINES = [
    "Find the square root of 156. I calculate the square root by finding a number that multiplied by itself equals it.",
    "Given a text, find the most relevant keyword to describe it. A wind turbine converts wind energy into electricity.",
    "Write a letter to invite a birthday party. The reasoning should be rational, easy to understand and concise.",
    "Please generate reasoning of the following question. First, I identify the key facts, then I check them.",
    "アンリはリンゴを3個、ジャックは梨を4個、ジルは本を5冊持っています。果物は全部で何個ですか？",
    "私は母と一緒に住んでいます。家にはKIKI,BELLA,LUNAという名前の猫がいます。LUNAは白猫ですか？",
    "まず、説明書に記載されている情報を分析して、各猫の重要な詳細を特定する必要があります。",
    "To improve quality of response, you should perform validation before writing. Therefore the answer is 12.",
    "0 1 2 3 4 5 6 7 8 9 10 100 1000 ? ! . , ; : ' \" ( ) [ ] { } - _ / * + = < > | # @ & %",
]


def _corpus() -> list[str]:
    lines = list(CORPUS_LINES) + list(ROLES.values())
    lines += [builtin_source(name) for name in BUILTIN_TEMPLATES]
    return lines * 3


def build_tokenizer(out_dir: Path, vocab_size: int = 1024):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    fast.add_tokens(TAG_TOKENS)
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out_dir)
    return fast


def _quiet() -> None:
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")


def build_tiny_model(out_dir: str | Path, *, seed: int = 0, hidden_size: int = 128, layers: int = 2) -> Path:
    """Write a random-weight Qwen2 model + tokenizer to `out_dir` (skipped when already there)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    _quiet()
    out = Path(out_dir)
    if (out / "config.json").exists() and (out / "tokenizer.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(out)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1, head_dim=64,
        max_position_embeddings=2048, tie_word_embeddings=False,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():
        # Logits spread of a few units: peaked enough to be stable, flat enough that sampling knobs matter.
        model.lm_head.weight.normal_(0, 0.25)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(out)
    (out / "README.md").write_text(
        "# reasonry tiny model\n\nRandom weights, built on this machine by `reasonry` for trying the tool "
        "offline and for tests. Its output is noise.\n", encoding="utf-8")
    return out


def build_tiny_adapter(base_dir: str | Path, out_dir: str | Path, *, seed: int = 1, r: int = 8) -> Path:
    """Save a PEFT LoRA adapter for the tiny model with non-zero weights (so it changes the output)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    _quiet()
    out = Path(out_dir)
    if (out / "adapter_config.json").exists():
        return out
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj"],
                                                  task_type="CAUSAL_LM"))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    peft_model.save_pretrained(out)
    return out


def describe(path: Path) -> str:
    config = json.loads((path / "config.json").read_text())
    return f"{config['model_type']} hidden {config['hidden_size']}, {config['num_hidden_layers']} layers, random weights"
