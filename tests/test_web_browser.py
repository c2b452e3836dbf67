"""A real Chromium against `reasonry serve`: steer, edit, regenerate, diff, reload, accept; untrusted text stays text.

Also saves the screenshots in docs/screenshots/.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
PAYLOAD = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2; alert(1)">'
# English: this machine's Chromium has no CJK font, and the screenshots should be readable.
QUESTION = ("Henri has 3 apples, Jack has 4 pears and Jill has 5 books. If Jack's 5 pears are eaten, "
            "how many fruits are left?")
REASONING = "Books are not fruit. Jack has only 4 pears, so eating 5 is impossible."


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _prepare_db(db: Path, tiny_model: Path, tiny_adapter: Path, folder: Path) -> str:
    """A generate run (real, two models), a flag, a debate tree and a steering thread, all with payloads."""
    from reasonry.config import SamplingParams
    from reasonry.store import Store
    from reasonry.tasks.generate import GenerateConfig, generate
    from reasonry.tasks.steer import record_version

    questions = folder / "questions.json"
    questions.write_text(json.dumps([
        {"seq": 1, "question": QUESTION, "input": ""},
        {"seq": 2, "question": "Find the square root of 156. " + PAYLOAD, "input": PAYLOAD},
        {"seq": 3, "question": "Write a letter to invite a birthday party.", "input": ""},
    ], ensure_ascii=False), encoding="utf-8")
    store = Store(db)
    summary = generate(questions, [f"hf:{tiny_model}", f"hf:{tiny_model}+{tiny_adapter}"], store=store,
                       config=GenerateConfig(template="alpaca-reasoning", params=SamplingParams(max_new_tokens=24)))
    key = next(r["request_key"] for r in store.run_records(summary["run_id"]) if r["row_index"] == 1)
    with store.transaction() as conn:
        conn.execute("INSERT INTO flags (key, name, reason) VALUES (?,?,?)", (key, "leakage", "says " + PAYLOAD))
    run_id = store.create_run("debate", source="bonsai", config={})
    now = time.time()
    nodes = [
        (None, 0, "answer", "A", "The answer is 12 fruits. " + PAYLOAD, None),
        (1, 1, "question", "B", "Are books fruit?", "Look at the categories."),
        (1, 1, "rebuttal", "B", "Eating 5 pears when only 4 exist is impossible.", "Count the pears. " + PAYLOAD),
        (2, 1, "answer", "A", "No, books are not fruit; 7 fruits.", None),
    ]
    with store.transaction() as conn:
        for position, (parent, round_, kind, party, text, reasoning) in enumerate(nodes):
            conn.execute("INSERT INTO debate_nodes (run_id, parent_id, round, kind, party, model, position, text,"
                         " reasoning, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                         (run_id, parent, round_, kind, party, "tiny", position, text, reasoning, now))
    record_version(store, thread="xss", parent_id=None, model="tiny", mode="reasoning", question=PAYLOAD,
                   input_text=PAYLOAD, reasoning="reasoning " + PAYLOAD, response="response " + PAYLOAD,
                   raw_text=PAYLOAD, params={}, seconds=0.5, completion_tokens=3)
    store.close()
    return run_id


@pytest.fixture(scope="module")
def server(tiny_model: Path, tiny_adapter: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    folder = tmp_path_factory.mktemp("browser")
    db = folder / "web.db"
    debate_run = _prepare_db(db, tiny_model, tiny_adapter, folder)
    port = _free_port()
    log = folder / "serve.log"
    process = subprocess.Popen(
        [sys.executable, "-c", "from reasonry.cli import main; main()", "serve", "--port", str(port),
         "--model", f"hf:{tiny_model}", "--model", f"hf:{tiny_model}+{tiny_adapter}", "--db", str(db),
         "--max-new-tokens", "40"], stdout=subprocess.DEVNULL, stderr=log.open("w"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.get(url + "/static/app.css", timeout=1)
            break
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log.read_text()) from None
            time.sleep(0.2)
    yield {"url": url, "debate_run": debate_run}
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def browser_page(server: dict) -> Iterator:
    from playwright import sync_api as playwright_api
    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium at /usr/bin/chromium")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-background-networking", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.dialogs = []  # type: ignore[attr-defined]
        page.problems = []  # type: ignore[attr-defined]
        page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
        page.on("pageerror", lambda error: page.problems.append(str(error)))
        page.on("console", lambda msg: msg.type == "error" and page.problems.append(msg.text))
        page.set_default_timeout(60_000)
        expect.set_options(timeout=60_000)  # generation on a busy 2-core machine can take seconds
        yield page
        browser.close()


def _assert_inert(page) -> None:
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.locator("img").count() == 0
    assert page.dialogs == []
    assert not [p for p in page.problems if "Content Security Policy" in p or "xss" in p]


def test_steer_generate_edit_regenerate_diff_reload_accept(browser_page, server: dict) -> None:
    page = browser_page
    page.goto(server["url"] + "/steer")
    page.fill("#question", QUESTION + " " + PAYLOAD)
    page.fill("#input", PAYLOAD)
    page.check("#models input[value='tiny+tiny-lora']")
    page.click("#generate")
    expect(page.locator("#versions tbody tr")).to_have_count(2)
    assert page.locator(".column").count() == 2  # side by side
    first = page.locator(".column").first
    ids = [int(i) for i in page.locator("#versions tbody tr").evaluate_all("rows => rows.map(r => r.dataset.id)")]
    assert first.locator(".meta").inner_text().startswith(f"#{ids[0]} · reasoning")
    thread = page.evaluate("new URLSearchParams(location.search).get('thread')")
    assert thread

    first.locator("textarea.reasoning").fill(REASONING + " " + PAYLOAD)
    first.locator(".regen").click()
    expect(page.locator("#versions tbody tr")).to_have_count(3)
    expect(page.locator("#diff-reasoning ins").first).to_be_visible()
    new_id = ids[1] + 1
    assert first.locator(".meta").inner_text().startswith(f"#{new_id} · special")
    assert page.locator("#diff-reasoning ins").first.inner_text()
    new_side = page.locator("#diff-reasoning > span, #diff-reasoning > ins").evaluate_all(
        "nodes => nodes.map(n => n.textContent).join('')")
    assert new_side == REASONING + " " + PAYLOAD
    assert page.locator("#diff-response ins, #diff-response del").count() > 0
    _assert_inert(page)

    page.reload()
    expect(page.locator("#versions tbody tr")).to_have_count(3)
    expect(page.locator("#question")).to_have_value(QUESTION + " " + PAYLOAD)
    assert page.locator(".column").count() == 2
    expect(page.locator("#threads a.current")).to_have_count(1)
    page.locator(f"#versions tbody tr[data-id='{new_id}'] .accept-version").click()
    page.wait_for_selector(f"#versions tbody tr.accepted[data-id='{new_id}']")
    versions = httpx.get(f"{server['url']}/api/threads/{thread}").json()["versions"]
    assert [v["accepted"] for v in versions] == [False, False, True]
    assert versions[2]["reasoning"] == REASONING + " " + PAYLOAD and versions[2]["parent_id"] == ids[0]
    page.select_option("#diff-a", str(ids[1]))
    page.select_option("#diff-b", str(new_id))
    page.click("#diff-button")
    expect(page.locator("#diff-stats")).to_contain_text(f"#{ids[1]} → #{new_id}")
    page.select_option("#diff-a", str(ids[0]))
    page.click("#diff-button")
    expect(page.locator("#diff-stats")).to_contain_text(f"#{ids[0]} → #{new_id}")
    _assert_inert(page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "steer.png"), full_page=True)


def test_untrusted_text_is_shown_as_text(browser_page, server: dict) -> None:
    page = browser_page
    page.goto(server["url"] + "/steer?thread=xss")
    expect(page.locator("#versions tbody tr")).to_have_count(1)
    column = page.locator(".column").first
    assert column.locator(".response").inner_text() == "response " + PAYLOAD
    assert column.locator("textarea.reasoning").input_value() == "reasoning " + PAYLOAD
    assert page.input_value("#question") == PAYLOAD
    expect(page.locator("#threads")).to_contain_text(PAYLOAD[:60])  # titles are cut at 80 characters
    _assert_inert(page)


def test_runs_page(browser_page, server: dict) -> None:
    page = browser_page
    page.goto(server["url"] + "/runs")
    page.locator("table.list a").last.click()
    page.wait_for_selector("table.side-by-side")
    headers = page.locator("table.side-by-side th").all_inner_texts()
    assert headers[2:] == ["tiny", "tiny+tiny-lora"]
    assert page.locator("table.side-by-side tbody tr").count() == 3
    assert PAYLOAD in page.locator("table.side-by-side").inner_text()
    assert page.locator(".tag.flag").first.inner_text() == "leakage"
    _assert_inert(page)
    page.screenshot(path=str(SHOTS / "runs.png"), full_page=True)
    page.fill("input[name=q]", "square root")
    page.check("input[name=model][value='tiny']")
    page.click("form.filters button")
    page.wait_for_url("**q=square+root**")
    assert page.locator("table.side-by-side tbody tr").count() == 1
    assert page.locator("table.side-by-side th").all_inner_texts()[2:] == ["tiny"]
    _assert_inert(page)


def test_debates_page(browser_page, server: dict) -> None:
    page = browser_page
    page.goto(server["url"] + "/debates")
    page.click(f"a[href='/debates/{server['debate_run']}']")
    page.wait_for_selector("ul.tree")
    assert page.locator("li.node").count() == 4
    assert page.locator("li.node li.node li.node").count() == 1  # answer -> question -> answer
    assert PAYLOAD in page.locator("ul.tree").inner_text()
    page.locator("details").first.evaluate("d => d.open = true")
    _assert_inert(page)
    page.screenshot(path=str(SHOTS / "debates.png"), full_page=True)


def test_steer_reasoning_typed_first_and_continue_from_cursor(browser_page, server: dict) -> None:
    page = browser_page
    page.goto(server["url"] + "/steer")
    page.click("#new-thread")
    page.fill("#question", QUESTION)
    page.fill("#given-reasoning", "Books are not fruit. " + PAYLOAD)
    page.click("#continue-given")  # a reasoning typed before any generation: the model continues it
    expect(page.locator("#versions tbody tr")).to_have_count(1)
    column = page.locator(".column").first
    expect(column.locator(".meta")).to_contain_text("continue")
    first_id = int(page.locator("#versions tbody tr").first.get_attribute("data-id"))
    area = column.locator("textarea.reasoning")
    assert area.input_value().startswith("Books are not fruit. " + PAYLOAD)
    area.evaluate("a => { a.focus(); a.setSelectionRange(20, 20); }")  # cursor after "Books are not fruit."
    column.locator(".continue").click()
    expect(page.locator("#versions tbody tr")).to_have_count(2)
    thread = page.evaluate("new URLSearchParams(location.search).get('thread')")
    versions = httpx.get(f"{server['url']}/api/threads/{thread}").json()["versions"]
    assert versions[1]["mode"] == "continue" and versions[1]["params"]["prefix"] == "Books are not fruit."
    assert versions[1]["parent_id"] == first_id and versions[1]["reasoning"].startswith("Books are not fruit.")
    page.fill("#given-reasoning", "Only 4 pears exist.")
    page.click("#from-reasoning")
    expect(page.locator("#versions tbody tr")).to_have_count(3)
    expect(page.locator(".column").first.locator(".meta")).to_contain_text("special")
    expect(page.locator("#threads .thread-meta").first).to_contain_text(thread[-4:])
    _assert_inert(page)


def test_batch_steering_page(browser_page, server: dict) -> None:
    page = browser_page
    page.goto(server["url"] + "/steer/batch")
    expect(page.locator("#run option")).not_to_have_count(0)
    page.select_option("#run-model", "tiny")
    page.select_option("#kind", "prefix")
    page.fill("#edit-text", "Books are not fruit. " + PAYLOAD + " ")
    page.fill("#p-max_new_tokens", "8")
    page.click("#run-batch")
    expect(page.locator("#rows tbody tr")).to_have_count(3)
    assert page.locator("#headline").inner_text().startswith("the edit changed")
    assert PAYLOAD in page.locator("#rows tbody").inner_text()
    _assert_inert(page)
    page.screenshot(path=str(SHOTS / "batch.png"), full_page=True)
    page.click("#accept-changed")
    expect(page.locator("#status")).to_contain_text("Accepted")
    batch_id = page.locator("#batch-id").inner_text().split()[1]
    report = httpx.get(f"{server['url']}/api/batch/{batch_id}").json()
    assert report["edited"] == 3 and len(report["per_row"]) == 3
    accepted = [r["edited_id"] for r in report["per_row"] if r["changed"]]
    for version_id in accepted:
        assert httpx.get(f"{server['url']}/api/versions/{version_id}").json()["accepted"]
