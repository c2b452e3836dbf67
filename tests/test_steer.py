"""Steering API and CLI on the tiny fixture model: versions, history across restarts, accept, preference pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reasonry.config import SamplingParams, parse_model_spec
from reasonry.engines.base import Request
from reasonry.store import Store
from reasonry.tasks.steer import Steerer, build_prompt, history, preference_pairs, threads
from reasonry.web.diff import tokenize, word_diff

PARAMS = SamplingParams(max_new_tokens=24, seed=7)
QUESTION = "アンリはリンゴを3個、ジャックは梨を4個、ジルは本を5冊持っています。果物は全部で何個ですか？"
REASONING = "Books are not fruit. Apples 3 + pears 4 = 7 fruits."

# The seed notebook's special prompt, verbatim.
SEED_SPECIAL = """Below is an instruction that describes a task, paired with an input that provides further context. You should write a response that appropriately completes the request.
To improve quality of response, you should perform validation before writing. You should create REASONING for validation in advance, and improve the response if necessary.

### Instruction:
{}

### Input:
{}

### Reasoning:
{}

### Response:
"""


@pytest.fixture(scope="module")
def engine(tiny_model: Path):
    from reasonry.engines.registry import load_engine

    with load_engine(parse_model_spec(f"hf:{tiny_model}")) as loaded:
        yield loaded


@pytest.fixture
def steerer(engine, tmp_path: Path) -> Steerer:
    return Steerer(Store(tmp_path / "steer.db"), {"tiny": engine}, params=PARAMS)


def test_prompts_reproduce_the_seed() -> None:
    prompt, messages, prefill = build_prompt("special", "Q?", "ctx", "R.")
    assert prompt == SEED_SPECIAL.format("Q?", "ctx", "R.") and messages is None and prefill is None
    assert build_prompt("reasoning", "Q?")[0].endswith("### Input:\n\n\n### Reasoning:\n")
    assert build_prompt("vanilla", "Q?")[0].endswith("### Response:\n")
    _, messages, prefill = build_prompt("special", "Q?", "", "R.", chat=True)
    assert messages == [{"role": "user", "content": "Q?"}] and prefill == "<think>\nR.\n</think>\n\n"


def test_stream_gives_the_same_text_as_generate(engine) -> None:
    request = Request(key="k", params=PARAMS, prompt=build_prompt("reasoning", QUESTION)[0])
    pieces = list(engine.stream(request))
    final = pieces[-1]
    assert "".join(pieces[:-1]) == final.text == next(iter(engine.generate([request]))).text
    assert final.completion_tokens == PARAMS.max_new_tokens or final.finish_reason == "stop"


def test_steered_version_differs_and_is_reproducible(steerer: Steerer) -> None:
    first = steerer.run("tiny", QUESTION)
    assert first.mode == "reasoning" and first.reasoning and first.seconds > 0 and first.completion_tokens
    vanilla = steerer.run(None, QUESTION, mode="vanilla", thread=first.thread)
    steered = steerer.run("tiny", "", mode="special", reasoning=REASONING, parent=first.id)
    again = steerer.run("tiny", QUESTION, mode="special", reasoning=REASONING, parent=first.id)
    assert steered.thread == first.thread and steered.question == QUESTION and steered.parent_id == first.id
    assert steered.reasoning == REASONING and steered.edited and not first.edited
    assert steered.response and steered.response != vanilla.response
    assert steered.response != first.response
    assert again.response == steered.response  # fixed seed: same prompt, same output
    other = steerer.run("tiny", QUESTION, mode="special", reasoning="Jack's 5 pears cannot be eaten.",
                        parent=first.id)
    assert other.response != steered.response
    assert steered.params["seed"] == 7 and steered.params["max_new_tokens"] == 24


def test_history_survives_a_new_store(steerer: Steerer, tmp_path: Path) -> None:
    first = steerer.run("tiny", QUESTION, "input text")
    second = steerer.run("tiny", "", mode="special", reasoning=REASONING, parent=first.id)
    steerer.store.close()
    reopened = Store(tmp_path / "steer.db")
    versions = history(reopened, first.thread)
    assert [v.id for v in versions] == [first.id, second.id]
    assert versions[1].response == second.response and versions[1].seconds == second.seconds
    assert versions[0].input == "input text" and versions[1].input == "input text"
    assert threads(reopened)[0]["versions"] == 2


def test_accept_and_preference_pairs(steerer: Steerer) -> None:
    first = steerer.run("tiny", QUESTION)
    edited = steerer.run("tiny", "", mode="special", reasoning=REASONING, parent=first.id)
    edited_again = steerer.run("tiny", "", mode="special", reasoning=REASONING + " So 7.", parent=edited.id)
    assert preference_pairs(steerer.store) == []
    root = first
    if not first.response:  # the noise model wrote no '### Response:': the original is the first response
        first = edited
    accepted = steerer.accept(edited_again.id)
    assert accepted.accepted and not steerer.get(first.id).accepted
    pairs = preference_pairs(steerer.store)
    assert len(pairs) == 1
    pair = pairs[0]
    assert pair["chosen"] == edited_again.response and pair["rejected"] == first.response
    assert pair["prompt"] == QUESTION and pair["chosen_reasoning"] == REASONING + " So 7."
    assert pair["rejected_id"] == first.id
    steerer.accept(edited_again.id, False)
    assert preference_pairs(steerer.store) == []
    vanilla = steerer.run("tiny", QUESTION, mode="vanilla", thread=first.thread)
    steerer.accept(edited.id)
    pairs = preference_pairs(steerer.store)
    expected = root.id if root.response else vanilla.id  # the chain's root first, else the thread's vanilla
    assert [(p["chosen_id"], p["rejected_id"]) for p in pairs] == [(edited.id, expected)]


def test_word_diff_is_per_word_and_per_cjk_character() -> None:
    assert "".join(tokenize("Hello, world  果物は")) == "Hello, world  果物は"
    assert word_diff("The answer is 12 fruits.", "The answer is 7 fruits.") == [
        ("equal", "The answer is "), ("delete", "12"), ("insert", "7"), ("equal", " fruits.")]
    assert word_diff("果物は12個", "果物は7個") == [("equal", "果物は"), ("delete", "12"), ("insert", "7"), ("equal", "個")]
    assert word_diff(None, "new") == [("insert", "new")]


def test_cli_ask_history_accept(tiny_model: Path, tmp_path: Path) -> None:
    from reasonry.cli import app

    runner = CliRunner()
    db = str(tmp_path / "cli.db")
    common = ["--model", f"hf:{tiny_model}", "--max-new-tokens", "16", "--seed", "3", "--db", db, "--json"]
    first = runner.invoke(app, ["steer", "ask", QUESTION, *common])
    assert first.exit_code == 0, first.output
    first_data = json.loads(first.stdout)
    assert first_data["mode"] == "reasoning" and first_data["seconds"] > 0
    reasoning_file = tmp_path / "reasoning.txt"
    reasoning_file.write_text(REASONING, encoding="utf-8")
    steered = runner.invoke(app, ["steer", "ask", *common, "--parent", str(first_data["id"]),
                                  "--reasoning", f"@{reasoning_file}"])
    assert steered.exit_code == 0, steered.output
    steered_data = json.loads(steered.stdout)
    assert steered_data["mode"] == "special" and steered_data["reasoning"] == REASONING
    assert steered_data["thread"] == first_data["thread"] and steered_data["edited"]
    plain = runner.invoke(app, ["steer", "ask", QUESTION, "--model", f"hf:{tiny_model}", "--max-new-tokens", "8",
                                "--db", db, "--mode", "vanilla", "--input", "ctx"])
    assert plain.exit_code == 0 and "response" in plain.stdout and "version 3" in plain.stdout
    accepted = runner.invoke(app, ["steer", "accept", str(steered_data["id"]), "--db", db])
    assert accepted.exit_code == 0 and "accepted" in accepted.output
    listed = runner.invoke(app, ["steer", "history", "--thread", first_data["thread"], "--db", db, "--json"])
    rows = json.loads(listed.stdout)
    assert [r["id"] for r in rows] == [first_data["id"], steered_data["id"]] and rows[1]["accepted"]
    table = runner.invoke(app, ["steer", "history", "--db", db])
    assert table.exit_code == 0 and "special" in table.stdout
    missing = runner.invoke(app, ["steer", "ask", "--model", f"hf:{tiny_model}", "--db", db, "--reasoning", "@nope.txt"])
    assert missing.exit_code != 0


def test_serve_closes_loaded_engines_when_a_later_one_fails(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import sys as _sys

    from reasonry.cli import main
    from reasonry.engines import registry
    from reasonry.errors import ConfigError

    closed: list[str] = []

    class Loaded:
        def __init__(self, spec) -> None:  # type: ignore[no-untyped-def]
            self.spec = spec

        def close(self) -> None:
            closed.append(str(self.spec))

    def load(spec, **_):  # type: ignore[no-untyped-def]
        if "second" in str(spec):
            raise ConfigError("cannot load the second model")
        return Loaded(spec)

    monkeypatch.setattr(registry, "load_engine", load)
    monkeypatch.setattr(_sys, "argv", ["reasonry", "serve", "--model", "openai:first@http://127.0.0.1:9",
                                       "--model", "openai:second@http://127.0.0.1:9", "--db", str(tmp_path / "s.db")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2 and "cannot load the second model" in capsys.readouterr().err
    assert len(closed) == 1 and "first" in closed[0]
