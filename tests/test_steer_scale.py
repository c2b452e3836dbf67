"""Steering at dataset scale on the tiny model: any prompt format, continue inside the reasoning, thinking
budgets, batch edits over a run, and the Excel review round trip (edited with openpyxl)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reasonry.config import SamplingParams, parse_model_spec
from reasonry.engines.base import Engine, Result
from reasonry.errors import ConfigError, InputError
from reasonry.store import Store
from reasonry.tasks.steer import Budget, Steerer, get_version, preference_pairs
from reasonry.tasks.steer_formats import steer_format

PARAMS = SamplingParams(max_new_tokens=12, seed=5)
PEARS = "Henri has 3 apples, Jack has 4 pears and Jill has 5 books. If Jack's 5 pears are eaten, how many fruits are left?"
BOOKS = "Books are not fruit. "


class Scripted(Engine):
    """An engine that answers from a script: it shows exactly which prompts the steering code sends."""

    def __init__(self, replies: list[Result]) -> None:
        self.spec = parse_model_spec("openai:scripted@http://127.0.0.1:9")
        self.replies, self.requests = list(replies), []

    def generate(self, requests):  # type: ignore[no-untyped-def]
        for request in requests:
            self.requests.append(request)
            reply = self.replies.pop(0)
            yield Result(key=request.key, text=reply.text, completion_tokens=reply.completion_tokens,
                         finish_reason=reply.finish_reason)


@pytest.fixture(scope="module")
def engine(tiny_model: Path):
    from reasonry.engines.registry import load_engine

    with load_engine(parse_model_spec(f"hf:{tiny_model}")) as loaded:
        yield loaded


def test_every_builtin_format_and_a_user_template(tmp_path: Path) -> None:
    phi2 = steer_format("phi2", role="logician")
    special = phi2.build("special", "Q?", "ctx", "R.").prompt
    assert special.startswith("\n        <|system|>You are an excellent logician")
    assert special.endswith("<|instruction|>Q?\n<|context|>ctx\n<|reasoning|>\nR.\n<|response|>")
    assert phi2.build("continue", "Q?", "", "Step 1").prompt.endswith("<|instruction|>Q?\n<|reasoning|>\nStep 1")
    assert phi2.split("Step 1, step 2.\n<|response|>7 fruits") == ("Step 1, step 2.", "7 fruits")
    alpaca = steer_format("alpaca")
    assert alpaca.build("continue", "Q?", "", "Books").prompt.endswith("### Input:\n\n\n### Reasoning:\nBooks")
    assert alpaca.build("vanilla", "Q?").prompt.endswith("### Input:\n\n\n### Response:\n")
    chat = steer_format(chat=True)
    assert chat.build("continue", "Q?", "", "Books").prefill == "<think>\nBooks"
    own = tmp_path / "mine.j2"
    own.write_text("[Q] {{ instruction }}\n[THINK] {{ reasoning }}\n[ANSWER] ", encoding="utf-8")
    mine = steer_format(str(own))
    assert mine.build("special", "Q?", "", "R.").prompt == "[Q] Q?\n[THINK] R.\n[ANSWER] "
    assert mine.build("continue", "Q?", "", "R").prompt == "[Q] Q?\n[THINK] R"
    assert mine.split("R and more\n[ANSWER] 7") == ("R and more", "7")
    plain = tmp_path / "plain.j2"
    plain.write_text("Question: {{ instruction }}\nAnswer:", encoding="utf-8")
    with pytest.raises(ConfigError, match="reasoning"):
        steer_format(str(plain))


def test_phi2_model_is_steered_in_its_own_format(engine, tmp_path: Path) -> None:
    steerer = Steerer(Store(tmp_path / "s.db"), {"tiny": engine}, params=PARAMS, template="phi2", role="assistant")
    first = steerer.run("tiny", PEARS)
    steered = steerer.run("tiny", "", mode="special", reasoning=BOOKS + "Only 4 pears exist.", parent=first.id)
    assert steered.params["template"] == "phi2" and steered.reasoning == BOOKS + "Only 4 pears exist."
    request = steerer.request("tiny", "special", PEARS, "", steered.reasoning)
    assert request.prompt.endswith("<|reasoning|>\n" + steered.reasoning + "\n<|response|>")
    continued = steerer.run("tiny", "", mode="continue", reasoning=BOOKS, parent=first.id)
    assert continued.mode == "continue" and continued.reasoning.startswith(BOOKS.strip())
    assert continued.params["prefix"] == BOOKS and continued.edited


def test_budget_is_two_calls_that_close_the_reasoning() -> None:
    fmt = steer_format("alpaca")
    engine = Scripted([Result("", text="Count the fruit one by one and", completion_tokens=8, finish_reason="length"),
                       Result("", text="7 fruits.", completion_tokens=3)])
    steerer = Steerer(Store(":memory:"), {"s": engine}, params=PARAMS)
    version = steerer.run("s", PEARS, budget=Budget(8, close=" Time is up."))
    first, second = engine.requests
    assert first.params.max_new_tokens == 8 and "### Response:" in first.params.stop
    assert first.prompt == fmt.build("reasoning", PEARS).prompt
    assert second.prompt == fmt.build("special", PEARS, "", "Count the fruit one by one and Time is up.").prompt
    assert second.params.max_new_tokens == PARAMS.max_new_tokens
    assert version.reasoning == "Count the fruit one by one and Time is up." and version.response == "7 fruits."
    assert version.params["budget_hit"] and version.params["reasoning_tokens"] == 8


def test_reasoning_min_resumes_a_reasoning_that_ends_early() -> None:
    engine = Scripted([Result("", text="Books.", completion_tokens=2), Result("", text=" not fruit.", completion_tokens=3),
                       Result("", text="7", completion_tokens=1)])
    steerer = Steerer(Store(":memory:"), {"s": engine}, params=PARAMS)
    version = steerer.run("s", PEARS, budget=Budget(50, minimum=4))
    assert engine.requests[1].prompt.endswith("### Reasoning:\nBooks.\nWait,")
    assert engine.requests[1].params.max_new_tokens == 48
    assert version.reasoning == "Books.\nWait, not fruit." and version.params["resumed"] == 1
    assert not version.params["budget_hit"]


def test_cli_continue_budget_and_reasoning_file(tiny_model: Path, tmp_path: Path) -> None:
    from reasonry.cli import app

    runner = CliRunner()
    db = str(tmp_path / "cli.db")
    common = ["--model", f"hf:{tiny_model}", "--max-new-tokens", "10", "--db", db, "--json"]
    prefix = tmp_path / "prefix.txt"
    prefix.write_text(BOOKS.strip() + "\n", encoding="utf-8")  # an editor's trailing newline is not kept
    done = runner.invoke(app, ["steer", "ask", PEARS, *common, "--continue-from", f"@{prefix}", "--template", "phi2"])
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data["mode"] == "continue" and data["params"]["prefix"] == BOOKS.strip()
    budget = runner.invoke(app, ["steer", "ask", PEARS, *common, "--reasoning-budget", "4"])
    assert budget.exit_code == 0, budget.output
    assert json.loads(budget.stdout)["params"]["reasoning_tokens"] <= 4
    special = runner.invoke(app, ["steer", "ask", PEARS, *common, "--reasoning", f"@{prefix}"])
    assert json.loads(special.stdout)["reasoning"] == BOOKS.strip()
    both = runner.invoke(app, ["steer", "ask", PEARS, *common, "--reasoning", "x", "--continue-from", "y"])
    assert isinstance(both.exception, InputError)  # main() turns it into one line and exit 2
    table = runner.invoke(app, ["steer", "history", "--db", db], env={"COLUMNS": "80"})
    assert table.exit_code == 0
    first_cells = [line.split("│")[1].strip() for line in table.stdout.splitlines() if line.startswith("│")]
    assert [cell for cell in first_cells if cell] == ["1", "2", "3"]  # the id `steer accept` needs is shown


@pytest.fixture
def run_db(tiny_model: Path, tmp_path: Path) -> tuple[Path, str]:
    from reasonry.tasks.generate import GenerateConfig, generate

    questions = tmp_path / "q.jsonl"
    questions.write_text("\n".join(json.dumps({"seq": i, "question": q, "input": ""}, ensure_ascii=False) for i, q in
                                   enumerate([PEARS, "Tom has 2 oranges and 6 books. How many fruits?",
                                              "Mia has 1 banana. How many fruits?"], 1)), encoding="utf-8")
    db = tmp_path / "run.db"
    store = Store(db)
    summary = generate(questions, [f"hf:{tiny_model}"], store=store,
                       config=GenerateConfig(template="alpaca-reasoning", params=SamplingParams(max_new_tokens=12)))
    store.close()
    return db, summary["run_id"]


def test_batch_edit_regenerates_reports_and_becomes_training_data(engine, run_db) -> None:
    from reasonry.tasks.steer_batch import Edit, accept_batch, load_report, steer_batch

    db, run_id = run_db
    store = Store(db)
    report = steer_batch(store, run_id, engine, Edit("prefix", BOOKS), fmt=steer_format("alpaca"), params=PARAMS,
                         label="tiny")
    assert report.rows == 3 and report.edited == 3 and len(report.per_row) == 3
    assert report.headline().startswith(f"the edit changed {report.changed / 3:.0%} of responses")
    row = report.per_row[0]
    edited = store.conn.execute("SELECT * FROM steer_versions WHERE id=?", (row.edited_id,)).fetchone()
    assert edited["reasoning"].startswith(BOOKS.strip()) and edited["parent_id"] == row.original_id
    assert json.loads(edited["params"])["edit"] == {"kind": "prefix", "text": BOOKS}
    again = load_report(store, report.batch_id)
    assert [r.changed for r in again.per_row] == [r.changed for r in report.per_row]
    unchanged = steer_batch(store, run_id, engine, Edit("replace", "no such text", "x"), fmt=steer_format("alpaca"))
    assert unchanged.edited == 0 and unchanged.per_row == []
    accepted = accept_batch(store, report.batch_id, changed_only=False)
    assert [v.id for v in accepted] == [r.edited_id for r in report.per_row]
    pairs = preference_pairs(store)
    assert all(p["batch"] == report.batch_id and p["edit"]["kind"] == "prefix" for p in pairs)
    with pytest.raises(ConfigError):
        Edit("regex", "(unclosed", "")


def test_review_round_trip_through_excel(engine, run_db, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    from reasonry.tasks.review import export_review, import_review

    db, run_id = run_db
    store = Store(db)
    book_path = tmp_path / "review.xlsx"
    assert export_review(store, run_id, book_path)["rows"] == 3
    book = load_workbook(book_path)
    sheet = book.active
    header = [c.value for c in sheet[1]]
    assert sheet.protection.sheet
    verdict = header.index("verdict") + 1
    assert not sheet.cell(2, verdict).protection.locked and sheet.cell(2, header.index("reasoning") + 1).protection.locked
    assert any(dv.formula1 == '"accept,reject,edit"' for dv in sheet.data_validations.dataValidation)
    sheet.cell(2, verdict).value = "accept"
    sheet.cell(3, header.index("edited_reasoning") + 1).value = "本は果物ではない。\r\nジャックの梨は4個しかない。"
    sheet.cell(3, verdict).value = "edit"
    sheet.cell(4, verdict).value = "reject"
    sheet.move_range(f"A1:A{sheet.max_row}", cols=sheet.max_column)  # Excel users move columns around
    sheet.delete_cols(1)
    book.save(book_path)
    summary = import_review(store, book_path, engine=engine, sft=tmp_path / "sft.jsonl", dpo=tmp_path / "dpo.jsonl",
                            params=PARAMS)
    assert (summary["accept"], summary["edit"], summary["reject"], summary["regenerated"]) == (1, 1, 1, 1)
    sft = [json.loads(line) for line in (tmp_path / "sft.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(sft) == 2 and sft[1]["reasoning"] == "本は果物ではない。\nジャックの梨は4個しかない。"
    dpo = [json.loads(line) for line in (tmp_path / "dpo.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(dpo) == 1 and dpo[0]["chosen"].startswith("本は果物ではない。")
    versions = len(store.version_rows())
    again = import_review(store, book_path, engine=engine, params=PARAMS)  # the same workbook twice
    assert again["already imported"] == 3 and again.get("regenerated", 0) == 0
    assert len(store.version_rows()) == versions and sorted(again["versions"]) == sorted(summary["versions"])
    sheet.cell(4, header.index("verdict")).value = "maybe"
    book.save(book_path)
    with pytest.raises(InputError, match="row 4, column verdict"):
        import_review(store, book_path)


def test_review_imported_without_regenerate_then_with_it_gets_its_response(engine, run_db, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    from reasonry.tasks.review import export_review, import_review

    db, run_id = run_db
    store = Store(db)
    book_path = tmp_path / "review.xlsx"
    export_review(store, run_id, book_path)
    book = load_workbook(book_path)
    sheet = book.active
    header = [c.value for c in sheet[1]]
    sheet.cell(2, header.index("edited_reasoning") + 1).value = "Books are not fruit, so only the pears count."
    sheet.cell(2, header.index("verdict") + 1).value = "edit"
    book.save(book_path)
    plain = import_review(store, book_path)
    assert plain["edit"] == 1 and plain.get("regenerated", 0) == 0
    later = import_review(store, book_path, engine=engine, dpo=tmp_path / "dpo.jsonl", params=PARAMS)
    assert later["already imported"] == 1 and later["regenerated"] == 1
    [chosen] = [get_version(store, v) for v in later["versions"]]
    assert chosen.params["regenerated"] and chosen.reasoning.startswith("Books are not fruit")
    again = import_review(store, book_path, engine=engine, params=PARAMS)  # now nothing left to regenerate
    assert again.get("regenerated", 0) == 0 and again["versions"] == later["versions"]


def test_generate_budget_sweep_writes_one_column_per_budget(tiny_model: Path, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    from reasonry.tasks.budget_sweep import parse_budgets
    from reasonry.tasks.generate import GenerateConfig, generate

    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"seq": 1, "question": PEARS, "input": ""}), encoding="utf-8")
    store = Store(tmp_path / "sweep.db")
    config = GenerateConfig(template="alpaca-reasoning", params=SamplingParams(max_new_tokens=16),
                            reasoning_budgets=parse_budgets("8, 4"))
    summary = generate(questions, [f"hf:{tiny_model}"], store=store, config=config, out=tmp_path / "out.xlsx")
    records = {r["column"]: r for r in store.run_records(summary["run_id"], columns=None)}
    assert set(records) == {"", "budget 4", "budget 8"}
    assert records["budget 4"]["completion_tokens"] <= 4 + 16 and records["budget 4"]["reasoning"]
    header = [c.value for c in load_workbook(tmp_path / "out.xlsx").active[1]]
    assert header.index("budget 4") + 1 == header.index("budget 8")
    again = generate(questions, [f"hf:{tiny_model}"], store=store, config=config)  # a rerun: all from the cache
    cached = {r["column"]: r for r in store.run_records(again["run_id"], columns=None)}
    assert set(cached) == {"", "budget 4", "budget 8"}
    assert cached["budget 4"]["text"] == records["budget 4"]["text"]
    usage = next(iter(store.run_usage(again["run_id"]).values()))
    assert usage["requests"] == 0 and usage["cached"] == 3
    first_usage = next(iter(store.run_usage(summary["run_id"]).values()))
    assert first_usage["requests"] == 1 + 2 * 2  # the row, then two calls per budget
    with pytest.raises(ConfigError):
        parse_budgets("64,abc")


def test_budget_sweep_thought_that_fails_keeps_its_error_and_is_counted_once(tiny_model: Path,
                                                                             tmp_path: Path) -> None:
    from reasonry.tasks.budget_sweep import parse_budgets
    from reasonry.tasks.generate import GenerateConfig, generate

    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"seq": 1, "question": "word " * 200, "input": ""}), encoding="utf-8")
    store = Store(tmp_path / "sweep.db")
    config = GenerateConfig(template="alpaca-reasoning", params=SamplingParams(max_new_tokens=8),
                            reasoning_budgets=parse_budgets("4"), engine_options={"max_model_len": 64})
    summary = generate(questions, [f"hf:{tiny_model}"], store=store, config=config)
    record = next(r for r in store.run_records(summary["run_id"], columns=None) if r["column"] == "budget 4")
    assert "--max-model-len" in record["error"] and record["text"] == ""
    usage = next(iter(store.run_usage(summary["run_id"]).values()))
    assert usage["requests"] == 2 and usage["failures"] == 2  # the row's call, then the budget's thought (no answer)


def test_budget_sweep_answers_after_an_empty_thought(tiny_model: Path, tmp_path: Path) -> None:
    from reasonry.engines.registry import load_engine
    from reasonry.tasks.budget_sweep import parse_budgets
    from reasonry.tasks.generate import GenerateConfig, generate
    from reasonry.tasks.steer import make_request

    greedy = SamplingParams(max_new_tokens=1, temperature=0.0)
    engine = load_engine(parse_model_spec(f"hf:{tiny_model}"))
    fmt = steer_format("alpaca-reasoning")
    first = next(iter(engine.generate([make_request(engine, fmt.inside(PEARS), greedy)]))).text
    engine.close()
    assert first.strip()
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"seq": 1, "question": PEARS, "input": ""}), encoding="utf-8")
    store = Store(tmp_path / "sweep.db")
    config = GenerateConfig(template="alpaca-reasoning", params=greedy.with_(max_new_tokens=6, stop=(first,)),
                            reasoning_budgets=parse_budgets("4"))  # the thought stops at its first token: empty
    summary = generate(questions, [f"hf:{tiny_model}"], store=store, config=config)
    record = next(r for r in store.run_records(summary["run_id"], columns=None) if r["column"] == "budget 4")
    assert record["error"] is None and record["reasoning"] == ""
    assert store.run_usage(summary["run_id"])[record["model"]]["requests"] == 3
