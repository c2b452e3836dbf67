"""Option groups shared by several commands (sampling, engine loading, input columns)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from reasonry.config import SamplingParams

Models = Annotated[list[str], typer.Option("--model", "-m", help="KIND:MODEL[+ADAPTER][@URL], repeatable: "
                                           "hf:./phi-2+./checkpoint-2031, openai:llama3@http://localhost:8000/v1")]
Db = Annotated[str, typer.Option("--db", help="SQLite file holding every request and result.")]
Temperature = Annotated[float, typer.Option(help="Sampling temperature (0 = greedy).")]
TopP = Annotated[float, typer.Option("--top-p", help="Nucleus sampling mass.")]
TopK = Annotated[int, typer.Option("--top-k", help="Keep the K most likely tokens (0 = off).")]
RepetitionPenalty = Annotated[float, typer.Option("--repetition-penalty", help="Penalty on tokens already seen (1.0 = off).")]
MaxNewTokens = Annotated[int, typer.Option("--max-new-tokens", help="Most tokens to generate per request.")]
Seed = Annotated[int, typer.Option(help="Sampling seed; a request's output depends only on it, the prompt and the sample index.")]
Stop = Annotated[list[str] | None, typer.Option("--stop", help="Stop string, repeatable.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print a machine-readable summary instead of tables.")]
Device = Annotated[str | None, typer.Option(help="hf: cuda, cuda:1, cpu (default: CUDA when present).")]
Dtype = Annotated[str, typer.Option(help="hf: auto, bfloat16, float16, float32.")]
BaseUrl = Annotated[str | None, typer.Option("--base-url", help="openai: server address for specs without @URL (or OPENAI_BASE_URL).")]
ApiKeyEnv = Annotated[str | None, typer.Option("--api-key-env", help="openai: name of the environment variable holding the key (default OPENAI_API_KEY).")]
Concurrency = Annotated[int, typer.Option(help="openai: requests in flight at once.")]
Rpm = Annotated[int | None, typer.Option("--rpm", help="openai: at most this many requests per minute.")]
Tpm = Annotated[int | None, typer.Option("--tpm", help="openai: at most this many tokens per minute.")]
Timeout = Annotated[float, typer.Option(help="openai: seconds before one request is abandoned and retried.")]


def sampling(temperature: float, top_p: float, top_k: int, repetition_penalty: float, max_new_tokens: int,
             seed: int, stop: list[str] | None) -> SamplingParams:
    return SamplingParams(temperature=temperature, top_p=top_p, top_k=top_k, repetition_penalty=repetition_penalty,
                          max_new_tokens=max_new_tokens, seed=seed, stop=tuple(stop or ()))


def engine_options(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
