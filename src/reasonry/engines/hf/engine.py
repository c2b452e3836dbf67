"""Engine `hf`: the user's transformers model (PEFT adapters included) behind one continuous-batching loop."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from reasonry.config import HFOptions, ModelSpec
from reasonry.engines.base import Engine, Request, Result, check_local_path
from reasonry.engines.hf import cache as kv
from reasonry.engines.hf.fusion import fuse_attention, fuse_decoder_layers, fuse_mlps, fuse_rms_norms
from reasonry.engines.hf.loop import DecodeLoop, LoopFailed
from reasonry.engines.hf.runner import ModelRunner, round_up
from reasonry.engines.hf.sampling import request_seed
from reasonry.engines.hf.scheduler import Scheduler, Sequence
from reasonry.errors import ConfigError, EngineError, first_line
from reasonry.extract import strip_special_tokens


class HFEngine(Engine):
    """`hf:MODEL[+ADAPTER]`: continuous batching on a KV cache allocated once; CUDA graphs on a GPU.

    batch_size: sequences decoded together (slots; fewer if the KV cache for max_model_len does not fit).
    max_model_len: prompt + output tokens a sequence may hold; longer prompts are an error on their row.
    max_batch_tokens: prompt tokens per prefill forward (longer prompts are prefilled in chunks).
    """

    concurrent = True

    def __init__(self, spec: ModelSpec, *, device: str | None = None, dtype: str = "auto",
                 load_in_4bit: bool = False, load_in_8bit: bool = False, merge_adapter: bool = False,
                 batch_size: int | None = None, max_model_len: int | None = None,
                 max_batch_tokens: int | None = None, cuda_graphs: bool = True,
                 gpu_memory_utilization: float | None = None, poll_every: int | None = None, ignore_eos: bool = False,
                 overlap: bool | None = None) -> None:
        import torch
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        self.spec = spec
        self.torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        _check_device(self.device, torch)
        on_gpu = self.device.startswith("cuda")
        check_local_path(spec.model, "model")
        for adapter in spec.adapters:
            check_local_path(adapter, "adapter")
        self.tokenizer = self._load_tokenizer()
        self.model = self._load_model(dtype, load_in_4bit, load_in_8bit)
        if spec.adapters:
            self.model = self._load_adapters(merge_adapter)
        self.model.eval()
        self.eos_ids = [] if ignore_eos else self._eos_ids()  # ignore_eos: fixed-length runs for benchmarks
        settings = HFOptions(dtype=dtype, load_in_4bit=load_in_4bit, load_in_8bit=load_in_8bit,
                             ignore_eos=ignore_eos).output_settings()  # the same keys the registry computes
        self.spec = replace(spec, options={**spec.options, "settings": settings})
        self.special_tokens = list(self.tokenizer.all_special_tokens)
        self.poll_every = poll_every or (8 if on_gpu else 1)
        self.overlap = on_gpu if overlap is None else overlap  # next window launched before the last is read
        self._build_loop(batch_size or (512 if on_gpu else 16), max_model_len, max_batch_tokens or (8192 if on_gpu else 2048),
                         cuda_graphs and on_gpu, gpu_memory_utilization or 0.9)

    def _build_loop(self, wanted: int, max_model_len: int | None, chunk_tokens: int, graphs: bool,
                    memory_fraction: float) -> None:
        torch = self.torch
        config = kv.text_config(self.model)
        on_gpu = self.device.startswith("cuda")
        context = getattr(config, "max_position_embeddings", None) or 4096
        self.max_model_len = max_model_len or min(context, 4096 if on_gpu else 2048)
        if self.max_model_len > context:
            raise ConfigError(f"--max-model-len {self.max_model_len}: the model's context is {context} tokens")
        output = self.model.get_output_embeddings()
        vocab = output.weight.shape[0] if output is not None else config.vocab_size
        dtype = next(self.model.parameters()).dtype
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            dtype = torch.bfloat16
        device = torch.device(self.device)
        max_len = round_up(self.max_model_len + self.past_end + 1, 16)
        reserve = wanted * vocab * 24 + chunk_tokens * config.hidden_size * 64 + (2 << 30)
        slots = kv.plan_slots(config, dtype, device, max_len, wanted, memory_fraction, reserve)
        if slots < 1:
            raise EngineError(f"--model {self.spec}: no memory left for the KV cache of one {self.max_model_len}-token "
                              "sequence; lower --max-model-len")
        if any(getattr(m, "sinks", None) is not None for m in self.model.modules()):
            raise EngineError(f"--model {self.spec}: attention sinks (gpt-oss) are not supported by the hf engine; "
                              "serve it with vllm: or an openai: server")
        self.batch_size = slots
        self.kv_cache = kv.KVCache(config, slots, max_len, dtype, device)
        kv.attach(self.model, self.kv_cache)
        if on_gpu:
            torch.backends.cuda.enable_cudnn_sdp(False)  # cuDNN plans one kernel per (batch, key length) shape
        self.fused = {"norms": fuse_rms_norms(self.model) if on_gpu else 0, "mlp": fuse_mlps(self.model, self.kv_cache),
                      "attention": fuse_attention(self.model, self.kv_cache),
                      "layers": fuse_decoder_layers(self.model)}  # last: it joins layers whose attention was replaced
        runner = ModelRunner(self.model, self.kv_cache, vocab, graphs=graphs, kv_step=256 if on_gpu else 32)
        started = time.perf_counter()
        runner.capture()
        self.capture_s = time.perf_counter() - started
        self.loop = DecodeLoop(runner, Scheduler(slots, chunk_tokens), eos=set(self.eos_ids),
                               poll_every=self.poll_every, prefill_chunks=16 if on_gpu else 2, overlap=self.overlap,
                               finish=self._finish, stop_hit=self._stop_hit, stream_piece=self._stream_piece)

    @property
    def past_end(self) -> int:
        """Steps a sequence may draw after its last token before the host sees it ended (a slot holds them)."""
        return self.poll_every * (2 if self.overlap else 1)

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
        """Results in completion order; requests are read lazily, enough to keep every slot busy."""
        sink: queue.Queue = queue.Queue()
        outstanding: list[Sequence] = []
        pending = 0
        iterator = iter(requests)
        exhausted = False
        try:
            while True:
                while not exhausted and pending < 2 * self.batch_size:
                    request = next(iterator, None)
                    if request is None:
                        exhausted = True
                        break
                    seq = self._sequence(request, sink)
                    if isinstance(seq, Result):
                        yield seq
                        continue
                    outstanding.append(seq)
                    pending += 1
                    self.loop.submit(seq)
                if pending == 0:
                    return
                item = sink.get()
                if isinstance(item, LoopFailed):
                    raise EngineError(f"--model {self.spec}: decoding failed ({item.message})")
                pending -= 1
                yield item
        finally:
            for seq in outstanding:
                seq.cancelled.set()

    def stream(self, request: Request) -> Iterator[str | Result]:
        """Text pieces as they are decoded (every poll), then the final Result; the same tokens as `generate`.
        Closing the iterator early (a client that went away) drops the request from the batch."""
        sink: queue.Queue = queue.Queue()
        seq = self._sequence(request, sink, stream=True)
        if isinstance(seq, Result):
            yield seq
            return
        self.loop.submit(seq)
        try:
            while True:
                item = sink.get()
                if isinstance(item, LoopFailed):
                    raise EngineError(f"--model {self.spec}: decoding failed ({item.message})")
                yield item
                if isinstance(item, Result):
                    return
        finally:
            seq.cancelled.set()

    def close(self) -> None:
        loop = getattr(self, "loop", None)
        if loop is not None:
            loop.close()
        self.__dict__.pop("model", None)
        self.__dict__.pop("kv_cache", None)
        if self.torch.cuda.is_available():
            self.torch.cuda.empty_cache()

    # -- requests and results -------------------------------------------------------
    def check(self, request: Request) -> str | None:
        prepared = self._prepare(request)
        return prepared.error if isinstance(prepared, Result) else None

    def _prepare(self, request: Request) -> tuple[str, list[int], int] | Result:
        """(prompt text, its token ids, room for new tokens), or the Result that refuses the request."""
        try:
            text = request.prompt if request.prompt is not None else self.render_chat(request.messages or [],
                                                                                        request.prefill)
            ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        except Exception as exc:  # one bad prompt is recorded on its row
            return Result(key=request.key, error=f"tokenize: {first_line(exc)}", finish_reason="error")
        room = self.kv_cache.max_len - 1 - self.past_end - len(ids)
        if not ids or room < 1 or len(ids) >= self.max_model_len:
            return Result(key=request.key, prompt_tokens=len(ids), finish_reason="error",
                          error=f"prompt has {len(ids)} tokens; the engine holds {self.max_model_len} per sequence "
                                "(prompt + output): shorten the prompt or raise --max-model-len" if ids else
                                "prompt is empty")
        return text, ids, room

    def _sequence(self, request: Request, sink: queue.Queue, stream: bool = False) -> Sequence | Result:
        prepared = self._prepare(request)
        if isinstance(prepared, Result):
            return prepared
        text, ids, room = prepared
        max_new = min(request.params.max_new_tokens, room, self.max_model_len - len(ids))
        return Sequence(request=request, text=text, prompt=ids, max_new=max_new, sink=sink, stream=stream,
                        seed=request_seed(request.params.seed, request.sample_index, text))

    def _shown(self, seq: Sequence) -> tuple[str, bool]:
        """The text so far, cut at the first stop string; True when one was found."""
        text = strip_special_tokens(self.tokenizer.decode(seq.tokens, skip_special_tokens=False), self.special_tokens)
        cuts = [text.index(s) for s in seq.params.stop if s and s in text]
        return (text[: min(cuts)], True) if cuts else (text, False)

    def _stop_hit(self, seq: Sequence) -> bool:
        return self._shown(seq)[1]

    def _stream_piece(self, seq: Sequence) -> None:
        shown, _ = self._shown(seq)
        hold = max((len(s) for s in seq.params.stop), default=1) - 1  # a stop string may still be forming
        ready = max(seq.sent, len(shown) - hold)
        if not shown[:ready].endswith("\ufffd") and ready > seq.sent:  # an incomplete UTF-8 sequence waits
            seq.sink.put(shown[seq.sent: ready])
            seq.sent = ready

    def _finish(self, seq: Sequence) -> None:
        raw = self.tokenizer.decode(seq.tokens, skip_special_tokens=False)
        text = strip_special_tokens(raw, self.special_tokens)
        finish = seq.finish or "length"
        for stop in seq.params.stop:
            if stop and stop in text:
                text = text[: text.index(stop)]
                finish = "stop"
        if finish == "length":  # cut inside a multi-byte character: its first bytes decode to U+FFFD
            text = text.rstrip("\ufffd")
        if seq.stream and len(text) > seq.sent:
            seq.sink.put(text[seq.sent:])
        seq.sink.put(Result(key=seq.request.key, text=text, raw_text=raw, prompt_tokens=len(seq.prompt),
                            completion_tokens=len(seq.tokens), finish_reason=finish,
                            latency_s=time.perf_counter() - seq.submitted))


def _check_device(device: str, torch: Any) -> None:
    if not device.startswith("cuda"):
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device.partition(":")[2] or 0)
    if index >= count:
        have = f"{count} CUDA GPU{'s' if count != 1 else ''} (cuda:0..cuda:{count - 1})" if count else "no CUDA GPU"
        raise ConfigError(f"--device {device}: this machine has {have}; use --device cpu"
                          + (" or one of those" if count else ""))


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
