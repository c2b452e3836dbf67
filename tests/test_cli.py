"""The command line as a user meets it: usage mistakes, flags shared by every model command, exit codes,
progress off a terminal, exact template and prompt output, cached reruns, locked databases, killed runs."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from reasonry.config import ENGINE_OPTIONS, SamplingParams, flag_name, parse_model_spec
from reasonry.engines import registry
from reasonry.errors import ConfigError
from reasonry.store import Store
from tests.cli_helpers import run_cli, run_subprocess

FAST = ["--max-new-tokens", "8", "--batch-size", "8"]
MODEL_COMMANDS = [["generate"], ["ensemble"], ["translate"], ["debate", "run"], ["steer", "ask"], ["serve"]]


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert "Traceback" not in err and 1 <= len(lines) <= 2, err  # the error line, at most a usage line before it
    assert lines[-1].startswith("error:"), err
    return lines[-1]


def _last_line_error(err: str) -> str:
    """After progress lines, the run ends with exactly one error line."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert "Traceback" not in err and lines[-1].startswith("error:"), err
    assert sum(line.startswith("error:") for line in lines) == 1, err
    return lines[-1]


@pytest.mark.parametrize(("args", "expected"), [
    ([], "Missing command"),
    (["gen"], "No such command 'gen'"),
    (["generate", "q.json", "-m", "hf:x", "--temprature", "1"], "--temperature"),
    (["generate", "q.json", "-m", "hf:x", "--top-k", "abc"], "--top-k"),
    (["generate", "q.json"], "--model"),
    (["debate"], "Missing command"),
])
def test_usage_mistakes_are_one_line_and_exit_2(args, expected, capsys, monkeypatch):
    result = run_cli(args, capsys, monkeypatch)
    assert result.code == 2
    assert expected in _one_line(result.err)


def test_usage_mistake_in_a_real_process():
    result = run_subprocess(["generate", "q.json", "--temprature", "1"])
    assert result.code == 2 and "Traceback" not in result.err
    assert "No such option: --temprature" in _one_line(result.err)


@pytest.mark.parametrize(("flags", "expected"), [
    (["--temperature", "inf"], "--temperature"),
    (["--temperature", "nan"], "--temperature"),
    (["--top-p", "0"], "--top-p"),
    (["--seed", str(2 ** 70)], "--seed"),
    (["--seed", "-1"], "--seed"),
    (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", "-1"], "--batch-size"),
    (["--dtype", "float8"], "--dtype"),
    (["--executor", "spark"], "--executor"),
    (["--replicas", "0"], "--replicas"),
    (["--samples", "0"], "--samples"),
    (["--device", "tpu"], "--device"),
    (["--device", "cuda:x"], "--device"),
])
def test_bad_values_are_refused_before_anything_is_stored(flags, expected, tmp_path, capsys, monkeypatch):
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "hi"}\n', encoding="utf-8")
    db = tmp_path / "r.db"
    result = run_cli(["generate", str(questions), "-m", "hf:./nowhere", "--db", str(db), *flags], capsys, monkeypatch)
    assert result.code == 2 and expected in _one_line(result.err)
    assert not db.exists()


def test_a_device_this_machine_lacks_is_one_line(tmp_path, tiny_model, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "hi"}\n', encoding="utf-8")
    for device in ("cuda", "cuda:1"):
        result = run_cli(["generate", str(questions), "-m", f"hf:{tiny_model}", "--device", device,
                          "--db", str(tmp_path / "r.db"), *FAST], capsys, monkeypatch)
        assert result.code == 2
        assert f"--device {device}: this machine has no CUDA GPU; use --device cpu" in _last_line_error(result.err)


def test_generate_refuses_to_write_over_its_question_file(tmp_path, tiny_model, capsys, monkeypatch):
    questions = tmp_path / "q.csv"
    questions.write_text("seq,question\n1,What is 2+3?\n", encoding="utf-8")
    before = questions.read_bytes()
    result = run_cli(["generate", str(questions), "-m", f"hf:{tiny_model}", "--out", str(questions),
                      "--db", str(tmp_path / "r.db"), *FAST], capsys, monkeypatch)
    assert result.code == 2 and "is the input file" in _one_line(result.err)
    assert questions.read_bytes() == before and not (tmp_path / "r.db").exists()


def test_last_skips_a_run_refused_at_its_input(tmp_path, tiny_model, capsys, monkeypatch):
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    good.write_text('{"question": "hi"}\n', encoding="utf-8")
    bad.write_text('{"question": "hi"}\n{"question": ["a", "b"]}\n', encoding="utf-8")
    db = str(tmp_path / "r.db")
    first = run_cli(["generate", str(good), "-m", f"hf:{tiny_model}", "--db", db, "--json", *FAST], capsys, monkeypatch)
    assert first.code == 0
    refused = run_cli(["generate", str(bad), "-m", f"hf:{tiny_model}", "--db", db, *FAST], capsys, monkeypatch)
    assert refused.code == 2 and "line 2" in _last_line_error(refused.err)
    assert Store(db).resolve_run("last") == json.loads(first.out)["run_id"]


def test_an_engine_error_names_its_row(tmp_path, tiny_model, capsys, monkeypatch):
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": "hi"}) + "\n" + json.dumps({"question": "word " * 200}) + "\n",
                         encoding="utf-8")
    result = run_cli(["generate", str(questions), "-m", f"hf:{tiny_model}", "--max-model-len", "64", "--json",
                      "--db", str(tmp_path / "r.db"), *FAST], capsys, monkeypatch)
    assert result.code == 3
    [error] = json.loads(result.out)["errors"]
    assert error.startswith("row 2: prompt has ") and "--max-model-len" in error


def test_an_engine_flag_no_model_uses_is_refused(tmp_path, capsys, monkeypatch):
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "hi"}\n', encoding="utf-8")
    result = run_cli(["generate", str(questions), "-m", "openai:m@http://127.0.0.1:9/v1", "--load-in-4bit",
                      "--db", str(tmp_path / "r.db")], capsys, monkeypatch)
    assert result.code == 2
    assert "--load-in-4bit is an option of hf models" in _one_line(result.err)


def test_shared_engine_options_go_to_the_engines_that_take_them():
    specs = [parse_model_spec("hf:./a"), parse_model_spec("openai:m@http://127.0.0.1:9/v1")]
    options = registry.check_options(specs, {"concurrency": 8, "batch_size": 4, "dtype": "bfloat16"})
    hf = registry.engine_options("hf", options)
    assert (hf.batch_size, hf.dtype) == (4, "bfloat16")
    assert registry.engine_options("openai", options).concurrency == 8
    with pytest.raises(ConfigError, match="unknown engine option 'bogus'"):
        registry.load_engine(specs[0], bogus=1)
    with pytest.raises(ConfigError, match="--concurrency is an option of openai"):
        registry.check_options(specs[:1], {"concurrency": 8})


def test_sampling_params_refuse_values_no_engine_can_use():
    for bad in ({"temperature": float("inf")}, {"temperature": float("nan")}, {"seed": 2 ** 63},
                {"repetition_penalty": float("inf")}, {"max_new_tokens": 0}):
        with pytest.raises(ConfigError):
            SamplingParams(**bad)  # type: ignore[arg-type]
    assert SamplingParams(seed=2 ** 63 - 1).seed == 2 ** 63 - 1


def _help(command: list[str], capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "200")
    result = run_cli([*command, "--help"], capsys, monkeypatch)
    assert result.code == 0, result.err
    return result.out


def test_every_model_command_lists_the_same_sampling_and_engine_flags(capsys, monkeypatch):
    expected = {flag for cls in (SamplingParams, *ENGINE_OPTIONS.values())
                for item in cls.__dataclass_fields__.values()
                if not item.metadata.get("hidden") and item.metadata.get("cli", True)
                for flag in flag_name(item).split("/")}  # on/off pairs: --cuda-graphs/--no-cuda-graphs
    expected.add("--base-url")
    for command in MODEL_COMMANDS:
        text = _help(command, capsys, monkeypatch)
        listed = set(re.findall(r"(--[a-z0-9][a-z0-9-]*)", text))
        assert expected <= listed, (command, expected - listed)
        assert "<bool>" not in text and "<list" not in text and "<str>" not in text
    for command in (["generate"], ["ensemble"], ["translate"], ["debate", "run"]):
        assert "--executor" in _help(command, capsys, monkeypatch)


def test_help_keeps_square_brackets(capsys, monkeypatch):
    text = _help(["generate"], capsys, monkeypatch)
    assert "KIND:MODEL[+ADAPTER][@URL]" in text and "reasonry[ray]" in text


def test_error_messages_keep_square_brackets(tmp_path, capsys, monkeypatch):
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "hi"}\n', encoding="utf-8")
    result = run_cli(["generate", str(questions), "-m", "vllm:./x", "--db", str(tmp_path / "r.db")], capsys,
                     monkeypatch)
    assert result.code == 2 and "pip install 'reasonry[vllm]'" in _last_line_error(result.err)
    assert not [t for t in threading.enumerate() if t.name == "reasonry-progress"]  # a failed run stops its ticker


def test_templates_prints_the_exact_file():
    from reasonry.prompts.library import builtin_source

    source = builtin_source("fbq")
    assert max(len(line) for line in source.splitlines()) > 80  # a wrapping printer would change it
    result = run_subprocess(["templates", "fbq"])
    assert result.code == 0 and result.out == source


def test_show_prompt_prints_the_stored_prompt_without_loading_a_model(tmp_path, tiny_model, capsys, monkeypatch):
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "First?"}\n{"question": "Second [x]?", "input": "ctx"}\n', encoding="utf-8")
    db = tmp_path / "r.db"
    shown = run_cli(["generate", str(questions), "-m", "hf:./not-loaded", "--show-prompt", "2", "--role", "logician"],
                    capsys, monkeypatch)
    assert shown.code == 0, shown.err
    run = run_cli(["generate", str(questions), "-m", f"hf:{tiny_model}", "--role", "logician", "--db", str(db),
                   *FAST, "--json"], capsys, monkeypatch)
    assert run.code == 0, run.err
    with sqlite3.connect(db) as conn:
        prompts = [row[0] for row in conn.execute("SELECT prompt FROM requests")]
    assert shown.out in prompts and "Second [x]?" in shown.out and "First?" not in shown.out
    beyond = run_cli(["generate", str(questions), "-m", "hf:./x", "--show-prompt", "3"], capsys, monkeypatch)
    assert beyond.code == 2 and "fewer data rows" in _one_line(beyond.err)


def test_show_prompt_warns_about_a_blank_question(tmp_path, tiny_model, capsys, monkeypatch):
    questions = tmp_path / "blank.csv"
    questions.write_text('question\n""\nhi\n', encoding="utf-8")
    result = run_cli(["generate", str(questions), "-m", f"hf:{tiny_model}", "--show-prompt", "1"], capsys, monkeypatch)
    assert result.code == 0 and "blank.csv data row 1: blank question" in result.err


def test_an_ensemble_of_one_reasoning_per_row_warns(tmp_path, tiny_model, capsys, monkeypatch):
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "hi"}\n', encoding="utf-8")
    db = str(tmp_path / "r.db")
    assert run_cli(["generate", str(questions), "-m", f"hf:{tiny_model}", "--db", db, *FAST], capsys,
                   monkeypatch).code == 0
    merged = run_cli(["ensemble", "last", "--aggregator", f"hf:{tiny_model}", "--db", db, *FAST], capsys, monkeypatch)
    assert merged.code in (0, 3) and "has one reasoning per row" in merged.err


def test_failed_rows_exit_3_and_json_keeps_the_counts(tmp_path, tiny_model, capsys, monkeypatch):
    questions = tmp_path / "q.csv"
    questions.write_text("question,reasoning\nHow many?,Count them.\nAnd now?,\n", encoding="utf-8")
    result = run_cli(["generate", str(questions), "-m", f"hf:{tiny_model}", "--template", "alpaca-special",
                      "--db", str(tmp_path / "r.db"), *FAST, "--json"], capsys, monkeypatch)
    assert result.code == 3
    summary = json.loads(result.out)
    assert (summary["requests"], summary["failed"]) == (2, 1)


def test_a_fully_cached_rerun_loads_no_model(tmp_path, tiny_model, capsys, monkeypatch):
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "One?"}\n{"question": "Two?"}\n', encoding="utf-8")
    args = ["generate", str(questions), "-m", f"hf:{tiny_model}", "--db", str(tmp_path / "r.db"), *FAST, "--json",
            "--dtype", "float32"]
    assert run_cli(args, capsys, monkeypatch).code == 0

    def refuse(*_args, **_kwargs):
        raise AssertionError("the model was loaded for a fully cached rerun")

    monkeypatch.setattr(registry, "load_engine", refuse)
    again = run_cli(args, capsys, monkeypatch)
    assert again.code == 0, again.err
    assert (json.loads(again.out)["cached"], json.loads(again.out)["generated"]) == (2, 0)


def test_progress_lines_when_stderr_is_not_a_terminal(tmp_path, tiny_model):
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps({"question": f"Question {i}?"}) + "\n" for i in range(6)),
                         encoding="utf-8")
    env_args = ["generate", str(questions), "-m", f"hf:{tiny_model}", "--db", str(tmp_path / "r.db"),
                "--max-new-tokens", "8", "--batch-size", "2"]
    proc = subprocess.run([sys.executable, "-m", "reasonry", *env_args], capture_output=True, text=True,
                          env={**__import__("os").environ, "REASONRY_PROGRESS_SECONDS": "0", "HF_HUB_OFFLINE": "1"},
                          timeout=240)
    assert proc.returncode == 0, proc.stderr
    lines = re.findall(r"^\S+: (\d+)/6 \(\d+%\) · [\d.,e+-]+ req/s · [\d.,e+-]+ tok/s · (?:ETA \S+ · )?(\d+) failed",
                       proc.stderr, re.M)
    assert len(lines) >= 3 and lines[-1] == ("6", "0"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_library_warnings_print_above_the_bar():
    import io
    import warnings

    from rich.console import Console

    from reasonry.cli.progress import ProgressReporter

    buffer = io.StringIO()
    reporter = ProgressReporter(Console(file=buffer, force_terminal=True, width=100), "bar")
    reporter.start("m", 2)
    warnings.warn("`past_key_values` is deprecated", FutureWarning, stacklevel=1)
    reporter.finish()
    assert "warning: FutureWarning: `past_key_values` is deprecated" in buffer.getvalue()
    assert warnings.showwarning is not reporter._warning


def _hold_write_lock(db: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_a_locked_database_is_one_line_at_start_and_mid_run(tmp_path, tiny_model, capsys, monkeypatch):
    from reasonry.cli import progress

    monkeypatch.setenv("REASONRY_DB_TIMEOUT", "0.2")
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps({"question": f"Q{i}?"}) + "\n" for i in range(4)), encoding="utf-8")
    db = tmp_path / "r.db"
    Store(db).close()
    args = ["generate", str(questions), "-m", f"hf:{tiny_model}", "--db", str(db), *FAST, "--json"]
    holder = _hold_write_lock(db)
    at_start = run_cli(args, capsys, monkeypatch)
    holder.rollback()
    holder.close()
    assert at_start.code == 2 and "locked" in _one_line(at_start.err)

    holders: list[sqlite3.Connection] = []
    original = progress.ProgressReporter.result

    def lock_after_first_result(self, result):
        if not holders:
            holders.append(_hold_write_lock(db))
        original(self, result)

    monkeypatch.setattr(progress.ProgressReporter, "result", lock_after_first_result)
    mid_run = run_cli(args, capsys, monkeypatch)
    holders[0].rollback()
    holders[0].close()
    assert mid_run.code == 2 and "locked" in _last_line_error(mid_run.err)
    monkeypatch.setattr(progress.ProgressReporter, "result", original)
    resumed = run_cli(args, capsys, monkeypatch)
    assert resumed.code == 0 and json.loads(resumed.out)["requests"] == 4


def test_a_run_whose_process_is_gone_shows_as_interrupted(tmp_path, capsys, monkeypatch):
    db = tmp_path / "r.db"
    code = (f"from reasonry.store import Store; s = Store({str(db)!r}); "
            "print(s.create_run('generate', source=None, config={}))")
    dead = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    store = Store(db)
    alive = store.create_run("generate", source=None, config={})
    assert store.get_run(dead)["status"] == "interrupted"
    assert store.get_run(alive)["status"] == "running"
    store.close()
    listed = run_cli(["runs", "--db", str(db), "--json"], capsys, monkeypatch)
    statuses = {run["id"]: run["status"] for run in json.loads(listed.out)}
    assert statuses == {dead: "interrupted", alive: "running"}


def test_progress_lines_keep_coming_while_no_request_finishes():
    import io
    import time

    from rich.console import Console

    from reasonry.cli.progress import ProgressReporter

    buffer = io.StringIO()
    reporter = ProgressReporter(Console(file=buffer, width=80), "lines", every=0.05)
    reporter.start("slow-model", 10)
    time.sleep(0.4)
    reporter.finish()
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "slow-model: 10 requests"
    assert sum(line.startswith("slow-model: 0/10 (0%)") for line in lines) >= 3
    assert lines[-1].endswith("done in 0m00s")


def test_every_command_has_help_and_no_stray_arguments(capsys, monkeypatch):
    from reasonry.cli import command

    def paths(cmd, prefix):
        subs = getattr(cmd, "commands", {})
        if not subs:
            yield prefix
        for name, sub in subs.items():
            yield from paths(sub, [*prefix, name])

    for path in paths(command(), []):
        text = _help(path, capsys, monkeypatch)
        assert not re.search(r"\{(params|engine|executor)\}", text), path


def test_the_command_the_demo_prints_hits_its_cache(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    demo = run_cli(["demo", "--json"], capsys, monkeypatch)
    assert demo.code == 0, demo.err
    printed = next(line for line in demo.err.splitlines() if line.startswith("reasonry generate "))
    again = run_cli([*printed.split()[1:], "--json"], capsys, monkeypatch)
    assert again.code == 0, again.err
    assert (json.loads(again.out)["cached"], json.loads(again.out)["generated"]) == (4, 0)
