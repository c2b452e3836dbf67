"""Engine `hf`: transformers in-process, base model + optional PEFT adapter, batched generation."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from itertools import islice
from pathlib import Path
from typing import Any

from reasonry.config import ModelSpec, SamplingParams
from reasonry.engines.attention import use_grouped_decode
from reasonry.engines.base import Engine, Request, Result, check_local_path
from reasonry.engines.sampling import request_seed, select_tokens
from reasonry.errors import ConfigError, EngineError, first_line
from reasonry.extract import strip_special_tokens


class HFEngine(Engine):
    """`hf:MODEL[+ADAPTER]`. Batches requests by sampling parameters and prompt length.

    batching: "static" (own decode loop: left-padded batches, batch-invariant seeded sampling, every knob
    including repetition_penalty), "cb" (transformers' continuous batching `generate_batch`, used only for
    requests without repetition penalty — it drops that processor — the rest go to "static"), "auto" = static.
    """

    def __init__(self, spec: ModelSpec, *, device: str | None = None, dtype: str = "auto",
                 load_in_4bit: bool = False, load_in_8bit: bool = False, merge_adapter: bool = False,
                 batch_size: int | None = None, max_batch_tokens: int | None = None, batching: str = "auto",
                 compile: bool = False, ignore_eos: bool = False) -> None:
        import torch
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        self.spec = spec
        self.torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.batching = batching
        if batching not in ("auto", "static", "cb", "graphs"):
            raise ConfigError(f"--batching {batching!r}: choose auto, static, cb or graphs")
        on_gpu = self.device.startswith("cuda")
        self.batch_size = batch_size or (512 if on_gpu else 16)
        self.max_batch_tokens = max_batch_tokens or (512 * 1024 if on_gpu else 16 * 1024)
        self.window = max(self.batch_size * 4, 64)
        check_local_path(spec.model, "model")
        for adapter in spec.adapters:
            check_local_path(adapter, "adapter")
        self.tokenizer = self._load_tokenizer()
        self.model = self._load_model(dtype, load_in_4bit, load_in_8bit)
        if spec.adapters:
            self.model = self._load_adapters(merge_adapter)
        self.model.eval()
        self.grouped_attention = use_grouped_decode(self.model)
        if compile:
            self.model.forward = torch.compile(self.model.forward, dynamic=True)
        self.eos_ids = [] if ignore_eos else self._eos_ids()  # ignore_eos: fixed-length runs for benchmarks
        settings = {"dtype": None if dtype == "auto" else dtype,
                    "quantization": "4bit" if load_in_4bit else "8bit" if load_in_8bit else None,
                    "ignore_eos": ignore_eos or None, "sampler": "transformers" if batching == "cb" else None}
        self.spec = replace(spec, options={**spec.options, "settings": {k: v for k, v in settings.items() if v}})
        self.special_tokens = list(self.tokenizer.all_special_tokens)

    # -- loading ---------------------------------------------------------------
    def _load_tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        source = self.spec.model
        if self.spec.adapters and (Path(self.spec.adapters[-1]) / "tokenizer_config.json").exists():
            source = self.spec.adapters[-1]
        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError) as exc:
            raise EngineError(f"--model {self.spec}: cannot load the tokenizer from '{source}' ({first_line(exc)})") from None
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer

    def _load_model(self, dtype: str, load_in_4bit: bool, load_in_8bit: bool) -> Any:
        from transformers import AutoModelForCausalLM

        torch = self.torch
        kwargs: dict[str, Any] = {}
        if load_in_4bit or load_in_8bit:
            kwargs["quantization_config"] = _bnb_config(load_in_4bit, self.device)
            kwargs["device_map"] = {"": 0}
        if dtype == "auto":
            kwargs["dtype"] = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        else:
            kwargs["dtype"] = getattr(torch, dtype)
        try:
            model = AutoModelForCausalLM.from_pretrained(self.spec.model, **kwargs)
        except (OSError, ValueError) as exc:
            raise EngineError(f"--model {self.spec}: cannot load '{self.spec.model}' ({first_line(exc)})") from None
        if "device_map" not in kwargs:
            model.to(self.device)
        return model

    def _load_adapters(self, merge: bool) -> Any:
        from peft import PeftModel

        model = self.model
        for adapter in self.spec.adapters:
            try:
                model = PeftModel.from_pretrained(model, adapter)
            except (RuntimeError, ValueError, KeyError, OSError) as exc:
                raise EngineError(
                    f"--model {self.spec}: adapter '{adapter}' does not fit base model '{self.spec.model}' "
                    f"({first_line(exc)})") from None
            if merge or len(self.spec.adapters) > 1:
                model = model.merge_and_unload()
        return model

    def _eos_ids(self) -> list[int]:
        ids: set[int] = set()
        config_eos = getattr(self.model.generation_config, "eos_token_id", None)
        for value in (config_eos, self.tokenizer.eos_token_id):
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, list):
                ids.update(value)
        return sorted(ids)

    # -- Engine ------------------------------------------------------------------
    def render_chat(self, messages: list[dict[str, str]], prefill: str | None = None) -> str:
        if not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError(f"--chat: the tokenizer of {self.spec.model} has no chat template; use a raw --template")
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return text + (prefill or "")

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        iterator = iter(requests)
        while window := list(islice(iterator, self.window)):
            yield from self._generate_window(window)

    def stream(self, request: Request) -> Iterator[str | Result]:
        """Decode one request token by token with the same seeded sampling as `generate` (the same tokens and
        text; it ends at a stop string instead of running on); yield text pieces, then the final Result."""
        from transformers import DynamicCache

        torch = self.torch
        params = request.params
        started = time.perf_counter()
        try:
            text = self._prompt_text(request)
            ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        except Exception as exc:  # reported on the result, as `generate` does
            yield Result(key=request.key, error=f"tokenize: {first_line(exc)}", finish_reason="error")
            return
        device = self.device
        step_input = torch.tensor([ids], dtype=torch.long, device=device)
        mask = torch.ones_like(step_input)
        step_position = torch.arange(len(ids), device=device)[None, :]
        seeds = torch.tensor([request_seed(params.seed, request.sample_index, text)], dtype=torch.long, device=device)
        seen = step_input if params.repetition_penalty != 1.0 else None
        cache = DynamicCache()
        tokens: list[int] = []
        hit_eos = False
        sent = 0
        hold = max((len(s) for s in params.stop), default=1) - 1  # a stop string may still be forming
        for step in range(params.max_new_tokens):
            with torch.inference_mode():
                out = self.model(input_ids=step_input, attention_mask=mask, position_ids=step_position,
                                 past_key_values=cache, use_cache=True, logits_to_keep=1)
                chosen = select_tokens(out.logits[:, -1, :].float(), seen, seeds, step,
                                       temperature=params.temperature, top_k=params.top_k, top_p=params.top_p,
                                       repetition_penalty=params.repetition_penalty)
            token = int(chosen[0])
            tokens.append(token)
            if token in self.eos_ids:
                hit_eos = True
                break
            if seen is not None:
                seen = torch.cat([seen, chosen[:, None]], dim=1)
            shown = strip_special_tokens(self.tokenizer.decode(tokens, skip_special_tokens=False), self.special_tokens)
            stops = [shown.index(s) for s in params.stop if s and s in shown]
            if stops:
                shown = shown[: min(stops)]
            ready = len(shown) if stops else max(sent, len(shown) - hold)
            if not shown.endswith("\ufffd") and ready > sent:  # an incomplete UTF-8 sequence waits
                yield shown[sent:ready]
                sent = ready
            if stops:
                break
            mask = torch.cat([mask, torch.ones((1, 1), dtype=mask.dtype, device=device)], dim=1)
            step_position = step_position[:, -1:] + 1
            step_input = chosen[:, None]
        result = self._result((request, text, ids), tokens, hit_eos, time.perf_counter() - started, params)
        if len(result.text) > sent:
            yield result.text[sent:]
        yield result

    def close(self) -> None:
        del self.model
        if self.torch.cuda.is_available():
            self.torch.cuda.empty_cache()

    # -- batching ----------------------------------------------------------------
    def _prompt_text(self, request: Request) -> str:
        if request.prompt is not None:
            return request.prompt
        assert request.messages is not None
        return self.render_chat(request.messages, request.prefill)

    def _generate_window(self, window: list[Request]) -> Iterator[Result]:
        encoded = []
        for request in window:
            try:
                text = self._prompt_text(request)
                ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
            except Exception as exc:  # one bad prompt is recorded on its row
                yield Result(key=request.key, error=f"tokenize: {first_line(exc)}", finish_reason="error")
                continue
            encoded.append((request, text, ids))
        groups: dict[SamplingParams, list[tuple[Request, str, list[int]]]] = {}
        for item in encoded:
            groups.setdefault(item[0].params, []).append(item)
        for params, items in groups.items():
            items.sort(key=lambda item: len(item[2]))
            use_cb = self.batching == "cb" and params.repetition_penalty == 1.0
            for batch in self._batches(items, params):
                yield from (self._run_cb(batch, params) if use_cb else self._run_static(batch, params))

    def _batches(self, items: list, params: SamplingParams) -> Iterator[list]:
        batch: list = []
        for item in items:
            tokens = (len(item[2]) + params.max_new_tokens) * (len(batch) + 1)
            if batch and (len(batch) >= self.batch_size or tokens > self.max_batch_tokens):
                yield batch
                batch = []
            batch.append(item)
        if batch:
            yield batch

    def _run_static(self, batch: list, params: SamplingParams) -> list[Result]:
        torch = self.torch
        started = time.perf_counter()
        try:
            with torch.inference_mode():
                tokens, finished = self._decode(batch, params)
        except torch.cuda.OutOfMemoryError:
            if len(batch) == 1:
                raise
            torch.cuda.empty_cache()
            half = len(batch) // 2
            return self._run_static(batch[:half], params) + self._run_static(batch[half:], params)
        elapsed = time.perf_counter() - started
        return [self._result(item, out, done, elapsed, params) for item, out, done in zip(batch, tokens, finished, strict=True)]

    def _prepare(self, batch: list, params: SamplingParams) -> tuple[Any, Any, Any, int]:
        """Left-padded input ids, attention mask and per-request sampling seeds of a batch."""
        torch = self.torch
        pad = self.tokenizer.pad_token_id
        width = max(len(ids) for _, _, ids in batch)
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (_, _, ids) in enumerate(batch):
            input_ids[row, width - len(ids):] = torch.tensor(ids)
            mask[row, width - len(ids):] = 1
        seeds = torch.tensor([request_seed(params.seed, req.sample_index, text) for req, text, _ in batch],
                             dtype=torch.long)
        return input_ids.to(self.device), mask.to(self.device), seeds.to(self.device), width

    def _decode(self, batch: list, params: SamplingParams) -> tuple[list[list[int]], list[bool]]:
        from transformers import DynamicCache

        if self.batching == "graphs":
            from reasonry.engines.graphs import decode_with_static_cache

            return decode_with_static_cache(self, batch, params)
        torch = self.torch
        device = self.device
        input_ids, mask, seeds, width = self._prepare(batch, params)
        history = None
        if params.repetition_penalty != 1.0:
            # Prompt + output ids per row; padding positions repeat the row's last prompt token (no effect).
            history = torch.empty((len(batch), width + params.max_new_tokens), dtype=torch.long, device=device)
            history[:, :width] = torch.where(mask.bool(), input_ids, input_ids[:, -1:])
        eos = torch.tensor(self.eos_ids or [-1], device=device)
        alive = torch.arange(len(batch), device=device)  # rows of the full batch still decoding
        outputs = torch.full((len(batch), params.max_new_tokens), -1, dtype=torch.long, device=device)
        done = torch.zeros(len(batch), dtype=torch.bool, device=device)
        cache = DynamicCache()
        position = (mask.cumsum(-1) - 1).clamp(min=0)
        step_input, step_position = input_ids, position
        for step in range(params.max_new_tokens):
            out = self.model(input_ids=step_input, attention_mask=mask, position_ids=step_position,
                             past_key_values=cache, use_cache=True, logits_to_keep=1)
            logits = out.logits[:, -1, :].float()
            seen = history[:, : width + step] if history is not None else None
            chosen = select_tokens(logits, seen, seeds, step, temperature=params.temperature, top_k=params.top_k,
                                   top_p=params.top_p, repetition_penalty=params.repetition_penalty)
            was_done = done[alive]
            outputs[alive, step] = chosen.masked_fill(was_done, -1)  # rows past their EOS keep nothing
            if history is not None:
                history[:, width + step] = chosen
            done[alive] = was_done | torch.isin(chosen, eos)
            if step + 1 == params.max_new_tokens:
                break
            if self.eos_ids:
                keep = ~done[alive]
                remaining = int(keep.sum())
                if remaining == 0:
                    break
                if remaining <= len(alive) // 2:
                    index = keep.nonzero().squeeze(-1)
                    cache.batch_select_indices(index)
                    alive, chosen, mask, seeds = alive[index], chosen[index], mask[index], seeds[index]
                    step_position = step_position[index]
                    if history is not None:
                        history = history[index]
            mask = torch.cat([mask, torch.ones((len(alive), 1), dtype=mask.dtype, device=device)], dim=1)
            step_position = step_position[:, -1:] + 1
            step_input = chosen[:, None]
        rows = outputs.tolist()
        return [[t for t in row if t != -1] for row in rows], done.tolist()

    def _result(self, item: tuple, tokens: list[int], hit_eos: bool, elapsed: float, params: SamplingParams) -> Result:
        request, _, ids = item
        raw = self.tokenizer.decode(tokens, skip_special_tokens=False)
        text = strip_special_tokens(raw, self.special_tokens)
        finish = "stop" if hit_eos else "length"
        for stop in params.stop:
            if stop and stop in text:
                text = text[: text.index(stop)]
                finish = "stop"
        return Result(key=request.key, text=text, raw_text=raw, prompt_tokens=len(ids),
                      completion_tokens=len(tokens), finish_reason=finish, latency_s=elapsed)

    def _run_cb(self, batch: list, params: SamplingParams) -> list[Result]:
        from transformers import GenerationConfig

        started = time.perf_counter()
        config = GenerationConfig(
            max_new_tokens=params.max_new_tokens, do_sample=params.temperature > 0,
            temperature=params.temperature or None, top_p=params.top_p, top_k=params.top_k or None,
            eos_token_id=self.eos_ids, pad_token_id=self.tokenizer.pad_token_id,
        )
        if self.grouped_attention:  # generate_batch accepts only its own attention implementations
            self.model.set_attn_implementation("sdpa")
        try:
            outputs = self.model.generate_batch(inputs=[ids for _, _, ids in batch], generation_config=config,
                                                progress_bar=False)
        finally:
            if self.grouped_attention:
                use_grouped_decode(self.model)
        elapsed = time.perf_counter() - started
        ordered = sorted(outputs.values(), key=lambda o: int(str(o.request_id).rsplit("_", 1)[-1]))
        results = []
        for item, output in zip(batch, ordered, strict=True):
            tokens = list(output.generated_tokens)
            hit_eos = bool(tokens) and tokens[-1] in self.eos_ids
            results.append(self._result(item, tokens, hit_eos, elapsed, params))
        return results


def _bnb_config(four_bit: bool, device: str) -> Any:
    import importlib.util

    flag = "--load-in-4bit" if four_bit else "--load-in-8bit"
    if not device.startswith("cuda"):
        raise EngineError(f"{flag} needs a CUDA GPU (bitsandbytes); this machine runs on {device}")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise EngineError(f"{flag} needs bitsandbytes: pip install bitsandbytes")
    import torch
    from transformers import BitsAndBytesConfig

    if four_bit:
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
                                  bnb_4bit_use_double_quant=True)
    return BitsAndBytesConfig(load_in_8bit=True)
