"""Bounded fuzz of the web app's routes: arbitrary JSON bodies, query strings and path values never give a 5xx
or a traceback; every refusal is a one-line JSON error (or an HTML page for the browser routes)."""

from __future__ import annotations

import json
import string
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_web_api import WRITE, _FakeEngine

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
                    st.floats(allow_nan=False), st.text(max_size=30))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                    max_leaves=12)
FIELDS = ["question", "input", "model", "mode", "reasoning", "thread", "params", "parent", "reasoning_budget",
          "reasoning_min", "budget_close", "prompt", "messages", "max_tokens", "temperature", "top_p", "stop", "n",
          "stream", "seed", "edit", "run", "limit", "without_flags", "all", "a", "b", "template"]
BODIES = st.one_of(JSON, st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=6))
POSTS = ["/api/steer", "/api/steer/stream", "/api/diff", "/api/batch", "/api/batch/x/accept",
         "/api/versions/1/accept", "/v1/completions", "/v1/chat/completions"]
GETS = ["/", "/steer", "/steer/batch", "/runs", "/runs/{x}", "/debates", "/debates/{x}", "/api/threads",
        "/api/threads/{x}", "/api/versions/{x}", "/api/batch/runs", "/api/batch/{x}", "/api/models", "/v1/models"]
SEGMENTS = st.text(alphabet=string.ascii_letters + string.digits + "%_-.' <>\"", min_size=1, max_size=20)
QUERIES = st.dictionaries(st.sampled_from(["page", "model", "q", "kind", "flag", "thread"]), SCALARS, max_size=3)


def _no_crash(reply, where: str) -> None:  # type: ignore[no-untyped-def]
    assert reply.status_code < 500, (where, reply.status_code, reply.text[:300])
    assert "Traceback" not in reply.text, where
    if reply.status_code >= 400 and reply.headers.get("content-type", "").startswith("application/json"):
        message = reply.json()["error"]["message"]
        assert "\n" not in message, (where, message)


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    client, _ = _FakeEngine.app(Path(tmp_path_factory.mktemp("fuzz")))
    client.raise_server_exceptions = False
    return client


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(POSTS), body=BODIES)
def test_post_bodies_never_crash(app_client, path: str, body: object) -> None:  # type: ignore[no-untyped-def]
    reply = app_client.post(path, content=json.dumps(body), headers=WRITE)
    _no_crash(reply, f"POST {path} {json.dumps(body)[:200]}")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(GETS), segment=SEGMENTS, query=QUERIES)
def test_get_paths_and_queries_never_crash(app_client, path: str, segment: str, query: dict) -> None:  # type: ignore[no-untyped-def]
    url = path.replace("{x}", quote(segment, safe=""))
    reply = app_client.get(url, params={k: "" if v is None else str(v) for k, v in query.items()})
    _no_crash(reply, f"GET {url} {query}")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(POSTS), raw=st.binary(max_size=64))
def test_bodies_that_are_not_json_are_refused_cleanly(app_client, path: str, raw: bytes) -> None:  # type: ignore[no-untyped-def]
    reply = app_client.post(path, content=raw, headers=WRITE)
    _no_crash(reply, f"POST {path} {raw!r}")
