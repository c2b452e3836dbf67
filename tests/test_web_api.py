"""`reasonry serve` as a real subprocess: the official openai client, the steering API, and the guard."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

SEED_QUESTION = "ジャックの梨を5個食べたら、果物は全部で何個になったでしょう？"
REASONING = "Books are not fruit. Jack has only 4 pears, so he cannot eat 5."


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, args: list[str], host: str, log: Path) -> None:
        self.host, self.port = host, free_port(host)
        self.log = log
        command = [sys.executable, "-c", "from reasonry.cli import main; main()", "serve", "--host", host,
                   "--port", str(self.port), *args]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log.open("w"))
        self.url = f"http://{host}:{self.port}"

    def wait(self, headers: dict[str, str] | None = None) -> Server:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                httpx.get(self.url + "/static/app.css", headers=headers or {}, timeout=1)
                return self
            except httpx.TransportError:
                time.sleep(0.2)
        raise TimeoutError(self.log.read_text())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="module")
def server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("serve")
    running = Server(["--model", f"hf:{tiny_model}", "--db", str(folder / "web.db"), "--max-new-tokens", "24",
                      "--seed", "5"], "127.0.0.1", folder / "serve.log").wait()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_models_and_completions(client: openai.OpenAI) -> None:
    models = [m.id for m in client.models.list()]
    assert models == ["tiny"]
    done = client.completions.create(model="tiny", prompt="Find the square root of 156.", max_tokens=12, seed=1)
    assert done.choices[0].text and done.usage.completion_tokens <= 12
    again = client.completions.create(model="tiny", prompt="Find the square root of 156.", max_tokens=12, seed=1)
    assert again.choices[0].text == done.choices[0].text
    pieces = [c.choices[0].text for c in client.completions.create(
        model="tiny", prompt="Find the square root of 156.", max_tokens=12, seed=1, stream=True)]
    assert len(pieces) > 2 and "".join(pieces) == done.choices[0].text


def test_chat_streaming_and_not(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": SEED_QUESTION}]
    reply = client.chat.completions.create(model="tiny", messages=messages, max_tokens=16, seed=2)
    assert reply.choices[0].message.role == "assistant" and reply.choices[0].finish_reason in ("stop", "length")
    chunks = list(client.chat.completions.create(model="tiny", messages=messages, max_tokens=16, seed=2, stream=True))
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == reply.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == reply.choices[0].finish_reason
    parts = [{"role": "user", "content": [{"type": "text", "text": SEED_QUESTION[:10]}, {"type": "text",
                                                                                       "text": SEED_QUESTION[10:]}]}]
    same = client.chat.completions.create(model="tiny", messages=parts, max_tokens=16, seed=2, frequency_penalty=0)
    assert same.choices[0].message.content == reply.choices[0].message.content  # text parts are the same message


@pytest.mark.parametrize("stream", [False, True])
def test_a_prompt_the_model_cannot_take_is_a_400_before_any_stream(server: Server, stream: bool) -> None:
    for path, body in (("/v1/completions", {"prompt": ""}),
                       ("/v1/completions", {"prompt": "word " * 5000}),
                       ("/v1/chat/completions", {"messages": [{"role": "user", "content": "word " * 5000}]})):
        reply = httpx.post(server.url + path, headers={"Authorization": "Bearer x"}, timeout=60,
                           json={"model": "tiny", "max_tokens": 4, "stream": stream, **body})
        assert reply.status_code == 400, (path, reply.text)
        message = reply.json()["error"]["message"]
        assert message.startswith("model tiny: prompt ") and "\n" not in message


def test_reasonry_generates_through_its_own_server_without_a_key(server: Server, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import reasonry

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    run = reasonry.generate([{"question": "Why do apples fall?"}], f"openai:tiny@{server.url}/v1", template="phi2",
                            db=tmp_path / "o.db", max_new_tokens=8)
    assert run["generated"] == 1 and run["failed"] == 0


def test_steering_through_extra_body(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": SEED_QUESTION}]
    plain = client.chat.completions.create(model="tiny", messages=messages, max_tokens=16, seed=4)
    steered = client.chat.completions.create(model="tiny", messages=messages, max_tokens=16, seed=4,
                                             extra_body={"reasoning": REASONING})
    assert steered.choices[0].message.content != plain.choices[0].message.content
    assert steered.model_extra is not None
    assert steered.choices[0].message.model_extra["reasoning_content"] == REASONING
    alpaca = client.chat.completions.create(model="tiny", messages=messages, max_tokens=16, seed=4,
                                            extra_body={"reasoning": REASONING, "template": "alpaca"})
    completion = client.completions.create(model="tiny", prompt=SEED_QUESTION, max_tokens=16, seed=4,
                                           extra_body={"reasoning": REASONING})
    assert completion.choices[0].model_extra["response"] == alpaca.choices[0].message.content
    streamed = client.chat.completions.create(model="tiny", messages=messages, max_tokens=16, seed=4, stream=True,
                                              extra_body={"reasoning": REASONING})
    deltas = [c.choices[0].delta for c in streamed if c.choices]
    assert "".join(d.content or "" for d in deltas) == steered.choices[0].message.content
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="nope", messages=messages)


def _post(server: Server, path: str, body: object, **headers: str) -> httpx.Response:
    return httpx.post(server.url + path, content=json.dumps(body), timeout=60,
                      headers={"Content-Type": "application/json", **headers})


def test_steer_api_history_diff_accept(server: Server) -> None:
    first = _post(server, "/api/steer", {"question": SEED_QUESTION, "params": {"max_new_tokens": 12}},
                  **{"X-Reasonry": "1"})
    assert first.status_code == 200, first.text
    version = first.json()
    lines = httpx.post(server.url + "/api/steer/stream", timeout=60, headers={"X-Reasonry": "1"},
                       json={"mode": "special", "reasoning": REASONING, "parent": version["id"]}).text.splitlines()
    events = [json.loads(line) for line in lines]
    assert events[-1]["type"] == "version" and all(e["type"] == "text" for e in events[:-1])
    steered = events[-1]["version"]
    assert "".join(e["text"] for e in events[:-1]).strip().startswith(steered["response"])
    assert steered["thread"] == version["thread"] and steered["edited"]
    history = httpx.get(f"{server.url}/api/threads/{version['thread']}").json()["versions"]
    assert [v["id"] for v in history] == [version["id"], steered["id"]]
    diff = httpx.get(f"{server.url}/api/diff", params={"a": version["id"], "b": steered["id"]}).json()
    assert "".join(text for op, text in diff["reasoning"] if op != "delete") == REASONING
    assert "".join(text for op, text in diff["response"] if op != "insert") == (version["response"] or "")
    accepted = _post(server, f"/api/versions/{steered['id']}/accept", {"accepted": True}, **{"X-Reasonry": "1"})
    assert accepted.json()["accepted"] is True
    bad = _post(server, "/api/steer", {"question": "q", "params": {"max_new_tokens": -1}}, **{"X-Reasonry": "1"})
    assert bad.status_code == 400
    for page in ("/steer", "/runs", "/debates"):
        response = httpx.get(server.url + page)
        assert response.status_code == 200
        assert "script-src 'self'" in response.headers["content-security-policy"]


def test_guard_refuses_cross_site_and_big_bodies(server: Server) -> None:
    body = {"question": "q"}
    form = httpx.post(server.url + "/api/steer", data={"question": "q"}, headers={"Origin": "https://evil.example"})
    assert form.status_code == 403
    no_header = _post(server, "/api/steer", body)
    assert no_header.status_code == 403 and "X-Reasonry" in no_header.text
    other_origin = _post(server, "/api/steer", body, **{"X-Reasonry": "1", "Origin": "https://evil.example"})
    assert other_origin.status_code == 403
    cross = _post(server, "/api/versions/1/accept", {}, **{"X-Reasonry": "1", "Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    plain_text = httpx.post(server.url + "/api/steer", content=b'{"question":"q"}',
                            headers={"X-Reasonry": "1", "Content-Type": "text/plain"})
    assert plain_text.status_code == 415
    rebinding = httpx.get(server.url + "/api/threads", headers={"Host": "attacker.example"})
    assert rebinding.status_code == 403
    big = _post(server, "/v1/completions", {"model": "tiny", "prompt": "x" * (1 << 20)},
                Authorization="Bearer unused")
    assert big.status_code == 413
    with pytest.raises(openai.APIStatusError) as error:
        openai.OpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0).completions.create(
            model="tiny", prompt="y" * (1 << 20))
    assert error.value.status_code == 413


def test_token_required_off_loopback(tiny_model: Path, tmp_path: Path) -> None:
    running = Server(["--model", f"hf:{tiny_model}", "--db", str(tmp_path / "t.db"), "--max-new-tokens", "8"],
                     "127.0.0.2", tmp_path / "serve.log")
    try:
        running.wait()
        match = re.search(r"\?token=([\w-]+)", running.log.read_text())
        assert match, running.log.read_text()
        token = match.group(1)
        assert httpx.get(running.url + "/v1/models").status_code == 401
        assert httpx.get(running.url + "/steer").status_code == 401
        assert httpx.get(running.url + "/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=running.url + "/v1", api_key="wrong", max_retries=0).models.list()
        client = openai.OpenAI(base_url=running.url + "/v1", api_key=token, max_retries=0)
        assert [m.id for m in client.models.list()] == ["tiny"]
        assert client.completions.create(model="tiny", prompt="Hi", max_tokens=4).choices[0].text is not None
        assert httpx.get(running.url + "/api/threads", headers={"X-Reasonry-Token": token}).status_code == 200
        login = httpx.get(running.url + f"/steer?token={token}")
        assert login.status_code == 303 and login.headers["location"] == "/steer"
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        with httpx.Client(base_url=running.url, cookies={"reasonry_token": token}) as browser:
            assert browser.get("/steer").status_code == 200
            assert browser.post("/api/versions/1/accept", json={}).status_code == 403  # cookie alone cannot write
            missing = browser.post("/api/versions/1/accept", json={}, headers={"X-Reasonry": "1"})
            assert missing.status_code == 400 and "not found" in missing.text
    finally:
        running.stop()


def test_a_taken_port_is_one_line_before_any_model_loads(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "reasonry", "serve", "--model", "hf:./no-such-model",
                               "--port", str(port), "--db", str(tmp_path / "p.db")],
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "serving" not in done.stdout
    assert done.stderr.strip() == (f"error: --port {port}: cannot listen on 127.0.0.1:{port}, in use by another "
                                   "program; choose another --port")


# -- in-process checks of bad input (a fake engine, no model, no subprocess) -------------------------------------


class _FakeEngine:
    """Builds lazily so the imports stay in the tests that use it."""

    @staticmethod
    def app(tmp_path: Path, *, fail: BaseException | None = None):  # type: ignore[no-untyped-def]
        from starlette.testclient import TestClient

        from reasonry.config import parse_model_spec
        from reasonry.engines.base import Engine, Result
        from reasonry.store import Store
        from reasonry.tasks.steer import Steerer
        from reasonry.web import create_app

        class Fake(Engine):
            def __init__(self) -> None:
                self.spec = parse_model_spec("openai:fake@http://x")
                self.seen: list = []

            def generate(self, requests):  # type: ignore[no-untyped-def]
                for request in requests:
                    self.seen.append(request)
                    if fail is not None:
                        raise fail
                    yield Result(key=request.key, text="### Reasoning:\nthink\n### Response:\nhello", raw_text="")

        engine = Fake()
        app = create_app(Steerer(Store(tmp_path / "a.db"), {"fake": engine}))
        client = TestClient(app, base_url="http://127.0.0.1:8765", raise_server_exceptions=True)
        return client, engine


WRITE = {"X-Reasonry": "1", "Content-Type": "application/json"}
CHAT = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/api/steer", {"question": "q?", "parent": "abc"}, "parent must be a whole number"),
        ("/api/steer", {"question": "q?", "parent": 10 ** 20}, "parent must be between"),
        ("/api/steer", {"question": "q?", "model": ["x"]}, "model must be a string"),
        ("/api/steer", {"question": "q?", "thread": ["x"]}, "thread must be a string"),
        ("/api/steer", {"question": "q?", "mode": "special", "reasoning": 5}, "reasoning must be a string"),
        ("/api/steer", {"question": "q?", "mode": "special"}, "mode special needs a reasoning"),
        ("/api/steer", {"question": "q?", "mode": "continue"}, "mode continue needs a reasoning"),
        ("/api/steer", {"question": "q?", "reasoning_budget": 0}, "reasoning_budget must be between 1"),
        ("/api/steer", {"question": "q?", "reasoning_budget": 4, "reasoning_min": 9}, "--reasoning-min must be"),
        ("/api/batch", {"edit": {"kind": "nope", "text": "x"}}, "edit kind 'nope'"),
        ("/api/batch", {"edit": "x"}, "edit must be an object"),
        ("/api/steer", {"question": "q?", "params": {"seed": 1e30}}, "out of range"),
        ("/api/steer/stream", {"question": "q?", "mode": "special", "reasoning": 5}, "reasoning must be a string"),
        ("/api/steer/stream", {"question": "q?", "parent": 7}, "steering version 7 not found"),
        ("/v1/completions", {"model": "fake", "prompt": "x", "n": "abc"}, "n must be a whole number"),
        ("/v1/completions", {"model": "fake", "prompt": "x", "n": 2}, "n > 1 is not supported"),
        ("/v1/completions", {"model": "fake", "prompt": "x", "stop": 5}, "stop must be a string or a list"),
        ("/v1/completions", {"model": "fake", "prompt": "x", "max_tokens": 10 ** 9}, "max_tokens must be <= 8192"),
        ("/v1/completions", {"model": "fake", "prompt": "x", "max_completion_tokens": 9000}, "must be <= 8192"),
        ("/v1/completions", {"model": "fake", "prompt": "x", "temperature": "hot"}, "is not a number"),
        ("/v1/completions", {"model": "fake", "prompt": "x", "mode": "special"}, "mode special needs a reasoning"),
        ("/v1/chat/completions", {"model": "fake", "messages": CHAT, "mode": "special"},
         "mode special needs a reasoning"),
        ("/v1/chat/completions", {"model": "fake", "messages": CHAT, "template": "alpaca", "mode": "special"},
         "mode special needs a reasoning"),
        ("/v1/chat/completions", {"model": "fake", "messages": CHAT, "reasoning": ["a"]}, "reasoning must be a string"),
        ("/v1/chat/completions", {"messages": CHAT}, 'the body needs "model": one of fake'),
        ("/v1/chat/completions", {"model": "fake", "messages": [{"role": "bogus", "content": "hi"}]},
         "role 'bogus': use one of system, user, assistant"),
        ("/v1/chat/completions", {"model": "fake", "messages": CHAT, "stream": "yes"}, "stream"),
        ("/v1/chat/completions", {"model": "fake", "messages": CHAT, "frequency_penalty": 0.5},
         "frequency_penalty is not supported by this server"),
        ("/v1/completions", {"model": "fake", "prompt": "x", "logprobs": 5}, "logprobs is not supported"),
        ("/v1/completions", {"model": "fake", "prompt": "x", "echo": True}, "echo is not supported"),
        ("/v1/chat/completions", {"model": "fake", "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "only text content"),
        ("/api/versions/1/accept", {"accepted": "false"}, "accepted"),
        ("/api/batch/x/accept", {"all": "yes"}, "all"),
    ],
)
def test_bad_input_is_a_one_line_400(tmp_path: Path, path: str, body: dict, message: str) -> None:
    client, engine = _FakeEngine.app(tmp_path)
    reply = client.post(path, content=json.dumps(body), headers=WRITE)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]["message"]
    assert message in error and "\n" not in error and str(tmp_path) not in error
    assert engine.seen == []


def test_continue_and_budget_through_the_steer_api(tmp_path: Path) -> None:
    client, engine = _FakeEngine.app(tmp_path)
    reply = client.post("/api/steer", headers=WRITE, content=json.dumps(
        {"question": "q?", "mode": "continue", "reasoning": "Books are"}))
    assert reply.status_code == 200, reply.text
    assert engine.seen[-1].prompt.endswith("### Reasoning:\nBooks are")
    assert reply.json()["mode"] == "continue" and reply.json()["params"]["prefix"] == "Books are"
    reply = client.post("/api/steer", headers=WRITE, content=json.dumps({"question": "q?", "reasoning_budget": 5}))
    assert reply.status_code == 200, reply.text
    first, second = engine.seen[-2:]
    assert first.params.max_new_tokens == 5 and second.prompt.endswith("### Response:\n")
    assert reply.json()["params"]["reasoning_budget"] == 5


def test_blank_or_null_optional_numbers_mean_absent(tmp_path: Path) -> None:
    client, _ = _FakeEngine.app(tmp_path)
    body = {"question": "q?", "parent": "", "reasoning_budget": None, "reasoning_min": ""}
    reply = client.post("/api/steer", headers=WRITE, content=json.dumps(body))
    assert reply.status_code == 200, reply.text
    from reasonry.web.bodies import BatchBody
    assert BatchBody.model_validate({"edit": {}, "limit": ""}).limit is None


def test_max_tokens_maps_to_max_new_tokens(tmp_path: Path) -> None:
    client, engine = _FakeEngine.app(tmp_path)
    reply = client.post("/v1/completions", headers=WRITE,
                        content=json.dumps({"model": "fake", "prompt": "x", "max_tokens": 77, "stop": ["END"]}))
    assert reply.status_code == 200, reply.text
    assert engine.seen[0].params.max_new_tokens == 77 and engine.seen[0].params.stop == ("END",)
    for field, value in (("max_tokens", -3), ("temperature", -1), ("top_p", 0)):
        refused = client.post("/v1/completions", headers=WRITE,
                              content=json.dumps({"model": "fake", "prompt": "x", field: value}))
        message = refused.json()["error"]["message"]
        assert refused.status_code == 400 and message.startswith(f"{field} must be") and "--" not in message


@pytest.mark.parametrize("path", ["/api/versions/99999999999999999999", "/api/diff?a=1&b=99999999999999999999",
                                  "/api/versions/42"])
def test_huge_or_missing_version_ids_are_400_without_the_db_path(tmp_path: Path, path: str) -> None:
    client, _ = _FakeEngine.app(tmp_path)
    reply = client.get(path)
    assert reply.status_code == 400 and "not found" in reply.json()["error"]["message"]
    assert str(tmp_path) not in reply.text and "a.db" not in reply.text


def test_huge_page_number_and_unknown_run_pages(tmp_path: Path) -> None:
    client, _ = _FakeEngine.app(tmp_path)
    assert client.get("/runs?page=99999999999999999999").status_code == 200
    missing = client.get("/runs/zz")
    assert missing.status_code == 404 and str(tmp_path) not in missing.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/steer/stream", {"question": "q?"}),
        ("/v1/completions", {"model": "fake", "prompt": "x", "stream": True}),
        ("/v1/chat/completions", {"model": "fake", "messages": CHAT, "stream": True}),
    ],
)
def test_an_error_inside_a_stream_ends_it_with_an_error_line(tmp_path: Path, path: str, body: dict) -> None:
    client, _ = _FakeEngine.app(tmp_path, fail=RuntimeError(f"boom in {tmp_path / 'a.db'}"))
    reply = client.post(path, content=json.dumps(body), headers=WRITE)
    assert reply.status_code == 200
    text = reply.text
    assert "boom" in text and str(tmp_path) not in text
    if path.startswith("/api"):
        assert json.loads(text.strip().splitlines()[-1])["type"] == "error"
    else:
        assert '"error"' in text and text.rstrip().endswith("data: [DONE]")


def test_unexpected_engine_error_without_stream_is_a_one_line_500(tmp_path: Path) -> None:
    client, _ = _FakeEngine.app(tmp_path, fail=RuntimeError("boom"))
    reply = client.post("/v1/completions", content=json.dumps({"model": "fake", "prompt": "x"}), headers=WRITE)
    assert reply.status_code == 500 and "boom" in reply.json()["error"]["message"]
