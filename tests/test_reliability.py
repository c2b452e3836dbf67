"""Issue 13: a failed retry never destroys a result, oversized rows and template bombs fail alone in one line,
streamed chat content matches the non-streamed answer, run ids are not SQL patterns, max_tokens is a whole number."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import run_cli
from fault_server import FaultServer

from reasonry.config import parse_model_spec
from reasonry.engines.base import Engine, Request, Result
from reasonry.errors import InputError
from reasonry.requests import MAX_PROMPT_CHARS
from reasonry.store import Store
from reasonry.tasks.generate import GenerateConfig, generate

OPTIONS = {"timeout": 1.0, "max_retries": 0, "concurrency": 4}


def write_rows(path: Path, questions: list[str]) -> Path:
    path.write_text("\n".join(json.dumps({"question": q}) for q in questions), encoding="utf-8")
    return path


def test_refresh_against_a_down_server_keeps_every_stored_result(tmp_path: Path) -> None:
    source = write_rows(tmp_path / "q.jsonl", [f"question {i}" for i in range(4)])
    db, out = tmp_path / "r.db", tmp_path / "out.jsonl"
    config = GenerateConfig(template="alpaca-reasoning", engine_options=OPTIONS)
    with FaultServer() as server:
        url = server.url
        first = generate(source, [f"openai:fake@{url}"], out=out, db=db, config=config)
    assert first["generated"] == 4
    before = {r["question"]: r["reasoning"] for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}

    config.refresh = True  # the server is gone now: every attempt fails
    again = generate(source, [f"openai:fake@{url}"], out=out, db=db, config=config)
    assert again["failed"] == 4 and again["generated"] == 0
    after = {r["question"]: r["reasoning"] for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert after == before and all(v.startswith("reasoning ") for v in after.values())

    store = Store.existing(db)
    key = next(r["request_key"] for r in store.run_records(store.resolve_run("last")))
    assert store.get_result(key).error is None  # type: ignore[union-attr]
    attempts = store.attempts(key)
    assert [a["error"] is None for a in attempts] == [True, False]
    store.close()


def test_oversized_row_fails_alone_in_one_line(tmp_path: Path) -> None:
    source = write_rows(tmp_path / "q.jsonl", ["x" * (MAX_PROMPT_CHARS + 10), "a small question"])
    out = tmp_path / "out.jsonl"
    with FaultServer() as server:
        summary = generate(source, [f"openai:fake@{server.url}"], out=out, db=tmp_path / "r.db",
                           config=GenerateConfig(template="alpaca-reasoning", engine_options=OPTIONS))
        assert sum(server.attempts.values()) == 1  # the big row never reached the server
    assert summary["generated"] == 1 and summary["failed"] == 1
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert "row 1" in rows[0]["error"] and "limit" in rows[0]["error"] and "\n" not in rows[0]["error"]
    assert rows[1]["error"] is None and rows[1]["reasoning"].startswith("reasoning ")


@pytest.mark.parametrize(("template", "per_row"), [
    ("{% for i in range(100000000) %}x{% endfor %}{{ question }}", False),
    ("{{ question * 100000000 }}", True),
    ("{% for i in range(90000) %}{% for j in range(90000) %}{{ question }}{% endfor %}{% endfor %}", True),
])
def test_template_bombs_end_in_one_line(tmp_path: Path, template: str, per_row: bool,
                                       capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = tmp_path / "bomb.j2"
    bomb.write_text(template, encoding="utf-8")
    source = write_rows(tmp_path / "q.jsonl", ["why?"])
    out = tmp_path / "out.jsonl"
    result = run_cli(["generate", str(source), "--model", "openai:m@http://127.0.0.1:9/v1", "--template", str(bomb),
                      "--db", str(tmp_path / "r.db"), "--out", str(out)], capsys, monkeypatch)
    text = result.out + result.err
    assert "Traceback" not in text
    if per_row:  # the row fails, with the reason stored on it; nothing reaches the model
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert "row 1" in rows[0]["error"] and "limit" in rows[0]["error"] and "\n" not in rows[0]["error"]
    else:  # the template fails for every row: the run stops with one line
        assert result.code == 2 and not out.exists()
        errors = [line for line in text.splitlines() if "error" in line]
        assert len(errors) == 1 and "template bomb" in errors[0] and "range" in errors[0].lower()


def test_run_ids_are_matched_as_text_not_patterns(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.db")
    run_id = store.create_run("generate", source=None, config={})
    for ref in (run_id[:4] + "%", "%", "_" * len(run_id), run_id[:4] + "%" + run_id[-1]):
        with pytest.raises(InputError, match="not found"):
            store.resolve_run(ref)
    assert store.resolve_run(run_id[:6]) == run_id == store.resolve_run(run_id)
    store.close()

    from test_web_api import _FakeEngine

    client, _ = _FakeEngine.app(tmp_path)  # its database: tmp_path/a.db
    writer = Store(tmp_path / "a.db")
    run_id = writer.create_run("generate", source=None, config={})
    writer.close()
    assert client.get(f"/runs/{run_id[:6]}").status_code == 200
    assert client.get(f"/runs/{run_id[:4]}%25{run_id[-1]}").status_code == 404
    assert client.get("/runs/%25").status_code == 404


def test_max_tokens_must_be_a_whole_number(tmp_path: Path) -> None:
    from test_web_api import WRITE, _FakeEngine

    client, engine = _FakeEngine.app(tmp_path)
    for body in ({"model": "fake", "prompt": "x", "max_tokens": 2.5},
                 {"model": "fake", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2.5}):
        path = "/v1/completions" if "prompt" in body else "/v1/chat/completions"
        reply = client.post(path, content=json.dumps(body), headers=WRITE)
        assert reply.status_code == 400 and "whole number" in reply.json()["error"]["message"]
    assert engine.seen == []
    ok = client.post("/v1/completions", content=json.dumps({"model": "fake", "prompt": "x", "max_tokens": 3.0}),
                     headers=WRITE)
    assert ok.status_code == 200 and engine.seen[0].params.max_new_tokens == 3


ANSWER = ("### Reasoning:\nFirst I compare the two numbers carefully, digit by digit.\n"
          "### Response:\nThe answer is 42, as computed above.")


class Trickle(Engine):
    """Streams its fixed answer five characters at a time."""

    def __init__(self, answer: str) -> None:
        self.spec = parse_model_spec("openai:trickle@http://x")
        self.answer = answer

    def generate(self, requests: Iterator[Request]) -> Iterator[Result]:  # type: ignore[override]
        for request in requests:
            yield Result(key=request.key, text=self.answer, raw_text=self.answer)

    def stream(self, request: Request) -> Iterator[str | Result]:
        for start in range(0, len(self.answer), 5):
            yield self.answer[start:start + 5]
        yield Result(key=request.key, text=self.answer, raw_text=self.answer)


@pytest.mark.parametrize("marker", ["### Response:", "<|response|>"])
def test_streamed_chat_content_matches_the_plain_answer(tmp_path: Path, marker: str) -> None:
    from starlette.testclient import TestClient
    from test_web_api import WRITE

    from reasonry.tasks.steer import Steerer
    from reasonry.web import create_app

    engine = Trickle(ANSWER.replace("### Response:", marker))
    client = TestClient(create_app(Steerer(Store(tmp_path / "a.db"), {"t": engine})),
                        base_url="http://127.0.0.1:8765")
    body = {"model": "t", "messages": [{"role": "user", "content": "6*7?"}], "template": "chat"}
    plain = client.post("/v1/chat/completions", content=json.dumps(body), headers=WRITE).json()
    message = plain["choices"][0]["message"]
    assert message["content"] == "The answer is 42, as computed above."

    streamed = client.post("/v1/chat/completions", content=json.dumps({**body, "stream": True}), headers=WRITE)
    content = reasoning = ""
    for line in streamed.text.splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:]).get("choices", []):
                content += choice["delta"].get("content") or ""
                reasoning += choice["delta"].get("reasoning_content") or ""
    assert content == message["content"]
    assert reasoning == message["reasoning_content"]


class Echo(Engine):
    def __init__(self, spec: object, **_: object) -> None:
        self.spec = spec

    def generate(self, requests: Iterator[Request]) -> Iterator[Result]:  # type: ignore[override]
        for request in requests:
            text = "It follows.\n### Response:\nPARAGRAPH: Is that so?\nPARAGRAPH: Why?"
            yield Result(key=request.key, text=text, raw_text=text)


def test_oversized_debate_topic_fails_its_node_not_the_debate(tmp_path: Path) -> None:
    from reasonry.config import SamplingParams
    from reasonry.debate import DebateConfig, load_tree, run_debate
    from reasonry.io.readers import Row

    topics = [Row(index=0, id="1", question="q" * (MAX_PROMPT_CHARS + 1), input="", reasoning=None, reference=None),
              Row(index=1, id="2", question="Why did sales drop?", input="", reasoning=None, reference=None)]
    config = DebateConfig(model_a=parse_model_spec("hf:echo"), breadth=2, params=SamplingParams(max_new_tokens=8))
    store = Store(tmp_path / "d.db")
    summary = run_debate(topics, config, store=store, loader=lambda spec, **_: Echo(spec))
    big, small = load_tree(store, summary["run_id"])
    assert "limit" in (big.children[0].error or "")
    assert small.children[0].error is None and small.children[0].text
    assert store.get_run(summary["run_id"])["status"] == "done"
    store.close()
