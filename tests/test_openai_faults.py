"""The openai engine against a local server that fails on purpose: retries, timeouts, limits, keys, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_server import FaultServer, answer_for
from typer.testing import CliRunner

from reasonry.cli import app
from reasonry.config import SamplingParams, parse_model_spec
from reasonry.engines.base import Request, Result
from reasonry.engines.openai import OpenAIEngine, parse_retry_after
from reasonry.tasks.generate import GenerateConfig, generate

SECRET = "sk-reasonry-FAKE-4f9c2e71b8d0a6"
FAULTS = {  # question marker -> attempts the server must see (max_retries=2: at most 3)
    "FAULT:r429:2": 3, "FAULT:r429date:1": 2, "FAULT:r500:2": 3, "FAULT:hang:1": 2, "FAULT:drop:1": 2,
    "FAULT:badjson:1": 2, "FAULT:badjson:99": 3, "FAULT:r400:99": 1, "FAULT:echo401:99": 1,
}
FAILING = {"FAULT:badjson:99", "FAULT:r400:99", "FAULT:echo401:99"}


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as running:
        yield running


def write_rows(path: Path, questions: list[str]) -> Path:
    path.write_text("\n".join(json.dumps({"seq": i + 1, "question": q}) for i, q in enumerate(questions)),
                    encoding="utf-8")
    return path


def secret_free(*paths: Path) -> None:
    for path in paths:
        if path.exists():
            assert SECRET.encode() not in path.read_bytes(), f"API key found in {path}"


def db_files(db: Path) -> list[Path]:
    return [db, Path(f"{db}-wal"), Path(f"{db}-shm")]


def test_faults_end_with_every_row_generated_or_failed(server: FaultServer, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    questions = [f"plain question {i}" for i in range(30)] + list(FAULTS)
    source = write_rows(tmp_path / "q.jsonl", questions)
    db, out = tmp_path / "r.db", tmp_path / "out.jsonl"
    config = GenerateConfig(template="alpaca-reasoning", engine_options={"timeout": 1.0, "max_retries": 2,
                                                                        "concurrency": 8})
    summary = generate(source, [f"openai:fake@{server.url}"], out=out, db=db, config=config)

    assert summary["requests"] == len(questions)
    assert summary["generated"] == len(questions) - len(FAILING)
    assert summary["failed"] == len(FAILING)
    for marker, expected in FAULTS.items():
        assert server.attempts_with(marker) == expected, marker
    plain = {t: n for t, n in server.attempts.items() if "FAULT" not in t}
    assert len(plain) == 30 and set(plain.values()) == {1}

    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert sorted(int(r["seq"]) for r in lines) == list(range(1, len(questions) + 1))
    by_question = {r["question"]: r for r in lines}
    for marker in FAILING:
        assert by_question[marker]["error"] and by_question[marker]["reasoning"] is None
    assert "gave up after 3 attempts" in by_question["FAULT:badjson:99"]["error"]
    assert "***" in by_question["FAULT:echo401:99"]["error"]
    assert by_question["plain question 3"]["reasoning"].startswith("reasoning ")
    assert by_question["FAULT:hang:1"]["error"] is None

    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT COUNT(*), COUNT(DISTINCT row_index) FROM run_requests").fetchone()
    assert rows == (len(questions), len(questions))
    assert conn.execute("SELECT COUNT(*) FROM results").fetchone()[0] == len(questions)
    conn.close()
    assert set(server.auth) == {f"Bearer {SECRET}"}
    secret_free(out, *db_files(db))

    # Resuming retries only the failed rows; nothing done is asked again.
    server.reset()
    again = generate(source, [f"openai:fake@{server.url}"], out=out, db=db, config=config)
    assert again["cached"] == len(questions) - len(FAILING)
    assert sum(server.attempts.values()) == 3 + 1 + 1
    assert len(out.read_text(encoding="utf-8").splitlines()) == len(questions)


def test_cli_chat_with_key_from_named_env(server: FaultServer, tmp_path: Path) -> None:
    source = write_rows(tmp_path / "q.jsonl", ["What is 2+2?", "Name a colour."])
    db, out = tmp_path / "r.db", tmp_path / "out.xlsx"
    result = CliRunner().invoke(app, [
        "generate", str(source), "--model", "openai:chatty", "--base-url", server.url, "--chat", "--db", str(db),
        "--out", str(out), "--api-key-env", "MY_TEAM_KEY", "--temperature", "0", "--stop", "###",
    ], env={"MY_TEAM_KEY": SECRET, "OPENAI_API_KEY": ""})
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    assert set(server.auth) == {f"Bearer {SECRET}"}
    body = server.bodies[0]
    assert body["messages"][-1] == {"role": "user", "content": body["messages"][-1]["content"]}
    assert body["temperature"] == 0 and body["stop"] == ["###"] and body["top_k"] == 50
    assert body["repetition_penalty"] == 1.1 and body["max_tokens"] == 256
    conn = sqlite3.connect(db)
    stored = conn.execute("SELECT r.reasoning, r.response, q.messages, q.prompt FROM results r "
                          "JOIN requests q ON q.key=r.key").fetchall()
    conn.close()
    assert len(stored) == 2
    for reasoning, response, messages, prompt in stored:
        assert reasoning.startswith("reasoning ") and response.startswith("final answer reasoning ")
        assert prompt is None and json.loads(messages)[0]["role"] == "user"
    secret_free(out, *db_files(db))


def test_missing_named_key_is_one_clear_error(tmp_path: Path) -> None:
    source = write_rows(tmp_path / "q.jsonl", ["x"])
    env = {**os.environ, "OPENAI_API_KEY": ""}
    env.pop("NOT_SET_KEY", None)
    done = subprocess.run([sys.executable, "-m", "reasonry", "generate", str(source), "--model",
                           "openai:m@http://127.0.0.1:9/v1", "--api-key-env", "NOT_SET_KEY", "--db",
                           str(tmp_path / "r.db")], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2
    assert "NOT_SET_KEY" in done.stderr and "Traceback" not in done.stderr


def test_prefill_goes_as_final_assistant_message(server: FaultServer) -> None:
    engine = OpenAIEngine(parse_model_spec(f"openai:m@{server.url}"))
    request = Request(key="k", params=SamplingParams(), messages=[{"role": "user", "content": "q"}],
                      prefill="<think>\ngiven\n</think>\n\n")
    [result] = list(engine.generate([request]))
    assert result.error is None and result.text.startswith("continued answer")
    body = server.bodies[0]
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert body["messages"][-1] == {"role": "assistant", "content": "<think>\ngiven\n</think>\n\n"}


def test_concurrency_bound_and_lazy_pull(tmp_path: Path) -> None:
    pulled = 0
    consumed = 0
    ahead: list[int] = []

    def requests() -> Iterator[Request]:
        nonlocal pulled
        for i in range(300):
            pulled += 1
            ahead.append(pulled - consumed)
            yield Request(key=f"k{i}", params=SamplingParams(), prompt=f"row {i}")

    with FaultServer(delay_s=0.01) as server:
        engine = OpenAIEngine(parse_model_spec(f"openai:m@{server.url}"), concurrency=4)
        keys = []
        for result in engine.generate(requests()):
            consumed += 1
            keys.append(result.key)
            assert result.error is None
        assert server.max_in_flight == 4
    assert sorted(keys) == sorted(f"k{i}" for i in range(300))
    assert max(ahead) <= 2 * 4


def test_rpm_limit_spaces_requests(server: FaultServer) -> None:
    engine = OpenAIEngine(parse_model_spec(f"openai:m@{server.url}"), rpm=300, concurrency=16)
    started = time.perf_counter()
    results = list(engine.generate(Request(key=str(i), params=SamplingParams(), prompt=f"r{i}") for i in range(15)))
    elapsed = time.perf_counter() - started
    assert all(r.ok for r in results)
    assert elapsed >= 1.8  # 5 at once (one second's burst), then 5 a second


def test_tpm_limit_counts_max_tokens(server: FaultServer) -> None:
    params = SamplingParams(max_new_tokens=100)
    engine = OpenAIEngine(parse_model_spec(f"openai:m@{server.url}"), tpm=6000 * 6, concurrency=16)
    started = time.perf_counter()
    list(engine.generate(Request(key=str(i), params=params, prompt="abcd" * 10) for i in range(12)))
    assert time.perf_counter() - started >= 0.8  # ~110 tokens each, 600 a second


def test_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert 1.0 < parse_retry_after(time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 3))) <= 3.0
    assert parse_retry_after("soon") is None


def test_stream_yields_pieces_then_result(server: FaultServer) -> None:
    engine = OpenAIEngine(parse_model_spec(f"openai:m@{server.url}"))
    request = Request(key="s", params=SamplingParams(), messages=[{"role": "user", "content": "hello"}])
    items = list(engine.stream(request))
    pieces, result = items[:-1], items[-1]
    assert isinstance(result, Result) and result.error is None
    assert all(isinstance(p, str) for p in pieces) and len(pieces) > 3
    assert "".join(pieces) == result.raw_text
    assert result.reasoning.strip() == answer_for("m", "hello") and result.text == "final ok"


def test_ctrl_c_keeps_finished_rows_and_resumes(tmp_path: Path) -> None:
    source = write_rows(tmp_path / "q.jsonl", [f"slow question {i}" for i in range(60)])
    db = tmp_path / "r.db"
    with FaultServer(delay_s=0.2) as server:
        command = [sys.executable, "-m", "reasonry", "generate", str(source), "--model", f"openai:m@{server.url}",
                   "--db", str(db), "--concurrency", "4", "--json"]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while sum(server.attempts.values()) < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 130, err
        assert "Traceback" not in err
        assert "run the same command again to resume" in err
        conn = sqlite3.connect(db)
        stored = conn.execute("SELECT COUNT(*) FROM results WHERE error IS NULL").fetchone()[0]
        conn.close()
        assert 0 < stored < 60

        server.delay_s = 0
        again = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0, again.stderr
        summary = json.loads(again.stdout)
        assert summary["cached"] == stored and summary["generated"] == 60 - stored
        asked_twice = sum(n - 1 for n in server.attempts.values())
        assert asked_twice <= 4  # only the requests in flight at Ctrl-C
        assert len(server.attempts) == 60


def _stream(engine: OpenAIEngine, text: str) -> tuple[list[str], Result]:
    request = Request(key="s", params=SamplingParams(), messages=[{"role": "user", "content": text}])
    items = list(engine.stream(request))
    assert isinstance(items[-1], Result)
    return items[:-1], items[-1]


def test_stream_answered_with_plain_json_is_read(server: FaultServer) -> None:
    engine = OpenAIEngine(parse_model_spec(f"openai:m@{server.url}"))
    pieces, result = _stream(engine, "FAULT:jsonbody:99 q")
    assert result.error is None and result.text.startswith("final answer reasoning ")
    assert result.reasoning == answer_for("m", "FAULT:jsonbody:99 q") and "".join(pieces) == result.raw_text


@pytest.mark.parametrize(("text", "message"), [("FAULT:emptystream:99", "without any text"),
                                               ("FAULT:htmlstream:99", "'text/html'"),
                                               ("FAULT:dropmid:99", "failed midway")])
def test_broken_streams_are_errors_never_empty_successes(server: FaultServer, text: str, message: str) -> None:
    engine = OpenAIEngine(parse_model_spec(f"openai:m@{server.url}"), max_retries=1, backoff_base=0.01)
    pieces, result = _stream(engine, text)
    assert result.error and message in result.error and not result.ok
    # Retried while nothing went out; a stream that already sent pieces is not sent again.
    assert server.attempts_with(text) == (1 if pieces else 2)
    assert server.url not in result.error and str(server.port) not in result.error


def test_stream_retries_until_its_first_piece_and_times_out_on_silence(server: FaultServer) -> None:
    engine = OpenAIEngine(parse_model_spec(f"openai:m@{server.url}"), timeout=1.0, backoff_base=0.01)
    for text in ("FAULT:hang:1 a", "FAULT:htmlstream:1 b", "FAULT:emptystream:1 c", "FAULT:r429:1 d"):
        _, result = _stream(engine, text)
        assert result.error is None and result.text == "final ok", text
        assert server.attempts_with(text) == 2


def test_errors_do_not_show_the_server_address(server: FaultServer) -> None:
    engine = OpenAIEngine(parse_model_spec(f"openai:m@{server.url}"), max_retries=0)
    results = list(engine.generate([Request(key="a", params=SamplingParams(), prompt="FAULT:r500:9"),
                                    Request(key="b", params=SamplingParams(), prompt="FAULT:drop:9")]))
    closed = OpenAIEngine(parse_model_spec("openai:m@http://127.0.0.1:9/v1"), max_retries=0)
    results += list(closed.generate([Request(key="c", params=SamplingParams(), prompt="x")]))
    for result in results:
        assert result.error and "openai:m" in result.error
        assert "127.0.0.1" not in result.error and str(server.port) not in result.error, result.error


def test_serve_retries_a_dropped_stream_for_a_client_that_does_not_stream(server: FaultServer,
                                                                          tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from reasonry.store import Store
    from reasonry.tasks.steer import Steerer
    from reasonry.web import create_app

    engine = OpenAIEngine(parse_model_spec(f"openai:m@{server.url}"), backoff_base=0.01)
    client = TestClient(create_app(Steerer(Store(tmp_path / "a.db"), {"m": engine})),
                        base_url="http://127.0.0.1:8765")
    reply = client.post("/v1/chat/completions", headers={"X-Reasonry": "1"},
                        json={"model": "m", "messages": [{"role": "user", "content": "FAULT:dropmid:1"}]})
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"].startswith("final answer")
    assert server.attempts_with("FAULT:dropmid:1") == 2


def test_serve_does_not_queue_requests_to_one_openai_model_behind_a_hung_one(tmp_path):
    """issue 13.9: a request whose upstream hangs must not hold the next request to the same model."""
    import threading
    import time

    from reasonry.config import parse_model_spec
    from reasonry.engines.openai import OpenAIEngine
    from reasonry.store import Store
    from reasonry.tasks.steer import Steerer
    from tests.fault_server import HANG_S, FaultServer

    with FaultServer() as server:
        engine = OpenAIEngine(parse_model_spec(f"openai:m@{server.url}"), timeout=30, max_retries=0)
        steerer = Steerer(Store(tmp_path / "s.db"), {"m": engine})
        finished: dict[str, float] = {}

        def ask(name: str, question: str) -> None:
            try:
                steerer.run("m", question)
            except Exception:  # the hung one ends as a 500 after HANG_S: only its timing matters here
                pass
            finished[name] = time.monotonic()

        started = time.monotonic()
        hung = threading.Thread(target=ask, args=("hung", "FAULT:hang:1 why?"))
        hung.start()
        time.sleep(0.3)
        ask("quick", "What is 2 + 2?")
        hung.join()
    assert finished["quick"] - started < HANG_S - 0.5  # answered while the other request still hung
    assert finished["hung"] - started >= HANG_S - 0.1
