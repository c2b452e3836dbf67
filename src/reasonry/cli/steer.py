"""`reasonry steer ask|history|accept` and `reasonry serve` (the local web app)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Annotated

import typer

from reasonry.cli import app
from reasonry.cli.common import console, stdout
from reasonry.cli.flags import EngineFlags, model_flags
from reasonry.cli.options import Db, JsonOut, Models
from reasonry.config import SamplingParams
from reasonry.errors import InputError
from reasonry.store import Store
from reasonry.tasks.steer import MODES, Steerer, Version, accept, history

steer_app = typer.Typer(no_args_is_help=True, help="Steer a response through its reasoning; every version is kept.")
app.add_typer(steer_app, name="steer")

Model = Annotated[str, typer.Option("--model", "-m", help="KIND:MODEL[+ADAPTER][@URL], e.g. hf:./phi-2+./checkpoint-2031")]
Chat = Annotated[bool, typer.Option("--chat", help="Use the tokenizer's chat template (special mode prefills <think>).")]


def _reasoning_text(value: str | None) -> str | None:
    if value is None or not value.startswith("@"):
        return value
    path = Path(value[1:])
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"--reasoning {value}: cannot read it ({exc.strerror})") from None


def _print_version(version: Version, as_json: bool) -> None:
    if as_json:
        stdout.print_json(json.dumps(version.to_dict(), ensure_ascii=False))
        return
    if version.reasoning is not None:
        stdout.print("[bold]reasoning[/]", highlight=False)
        stdout.print(version.reasoning, markup=False, highlight=False)
    stdout.print("[bold]response[/]", highlight=False)
    stdout.print(version.response or "", markup=False, highlight=False)
    stdout.print(f"[dim]version {version.id} · thread {version.thread} · {version.mode} · {version.model} · "
                 f"{version.seconds:.2f} s · {version.completion_tokens} tokens[/]", highlight=False)


@steer_app.command("ask")
@model_flags()
def ask_command(
    question: Annotated[str, typer.Argument(help="The question (optional with --parent: the parent's question).")] = "",
    model: Model = ..., input_text: Annotated[str, typer.Option("--input", help="Input / context.")] = "",
    mode: Annotated[str | None, typer.Option(help=f"{', '.join(MODES)} (default: special with --reasoning, "
                                                  "else reasoning).")] = None,
    reasoning: Annotated[str | None, typer.Option(help="The reasoning to steer with: TEXT or @file.txt.")] = None,
    thread: Annotated[str | None, typer.Option(help="Add the version to this thread.")] = None,
    parent: Annotated[int | None, typer.Option(help="The version this one is edited from.")] = None,
    chat: Chat = False, db: Db = "reasonry.db", as_json: JsonOut = False,
    *, params: SamplingParams, engine: EngineFlags,
) -> None:
    """Generate one steering version: a reasoning (and response), or a response from a given reasoning."""
    from reasonry.engines.registry import load_engine

    given = _reasoning_text(reasoning)
    mode = mode or ("special" if given else "reasoning")
    spec = engine.spec(model)
    options = engine.options([spec])
    store = Store(db)
    try:
        with load_engine(spec, **options) as loaded:
            steerer = Steerer(store, {spec.label: loaded}, chat=chat, params=params)
            live = not as_json and console.is_terminal
            version = None
            for piece in steerer.stream(spec.label, question, input_text, mode=mode, reasoning=given,
                                        thread=thread, parent=parent):
                if isinstance(piece, Version):
                    version = piece
                elif live:
                    console.print(piece, end="", markup=False, highlight=False)
            if live:
                console.print()
        assert version is not None
        _print_version(version, as_json)
    finally:
        store.close()


@steer_app.command("history")
def history_command(
    thread: Annotated[str | None, typer.Option(help="Only this thread.")] = None,
    limit: Annotated[int, typer.Option(help="Most versions to list (all of a thread).")] = 50,
    db: Db = "reasonry.db", as_json: JsonOut = False,
) -> None:
    """List steering versions (oldest first) with their timings."""
    from rich.table import Table

    store = Store(db)
    try:
        versions = history(store, thread, limit)
    finally:
        store.close()
    if as_json:
        stdout.print_json(json.dumps([v.to_dict() for v in versions], ensure_ascii=False))
        return
    table = Table(title=f"steering versions{f' of {thread}' if thread else ''}")
    for name in ("id", "thread", "from", "model", "mode", "edited", "accepted", "seconds", "tokens", "response"):
        table.add_column(name, no_wrap=name != "response", overflow="ellipsis", max_width=60)
    for v in versions:
        table.add_row(str(v.id), v.thread, str(v.parent_id or ""), v.model, v.mode, "yes" if v.edited else "",
                      "✓" if v.accepted else "", f"{v.seconds or 0:.2f}", str(v.completion_tokens or 0),
                      " ".join((v.response or "").split())[:60])
    stdout.print(table)


@steer_app.command("accept")
def accept_command(
    version_id: Annotated[int, typer.Argument(metavar="VERSION_ID")],
    undo: Annotated[bool, typer.Option("--undo", help="Unmark it.")] = False,
    db: Db = "reasonry.db", as_json: JsonOut = False,
) -> None:
    """Mark a version as a training example (with its thread's original it forms a preference pair)."""
    store = Store(db)
    try:
        version = accept(store, version_id, not undo)
    finally:
        store.close()
    if as_json:
        stdout.print_json(json.dumps(version.to_dict(), ensure_ascii=False))
    else:
        console.print(f"version {version.id} {'accepted' if version.accepted else 'no longer accepted'}")


@app.command("serve")
@model_flags()
def serve_command(
    model: Models,
    port: Annotated[int, typer.Option(help="TCP port.")] = 8765,
    host: Annotated[str, typer.Option(help="Address to bind; anything but 127.0.0.1/localhost/::1 needs a token.")] = "127.0.0.1",
    token: Annotated[str | None, typer.Option(help="Access token (generated and printed when --host is not loopback).",
                                              envvar="REASONRY_TOKEN")] = None,
    db: Db = "reasonry.db", chat: Chat = False,
    max_body: Annotated[int, typer.Option("--max-body", help="Largest request body in bytes.")] = 1 << 20,
    *, params: SamplingParams, engine: EngineFlags,
) -> None:
    """Serve the web app (Steer, Runs, Debates) and OpenAI-compatible /v1 endpoints for the models."""
    import uvicorn

    from reasonry.engines.registry import load_engine
    from reasonry.tasks.generate import unique_labels
    from reasonry.web import create_app
    from reasonry.web.security import is_loopback

    if not is_loopback(host) and not token:
        token = secrets.token_urlsafe(24)
    specs = [engine.spec(m) for m in model]
    options = engine.options(specs)
    store = Store(db)
    engines = {}
    try:
        for label, spec in zip(unique_labels(specs), specs, strict=True):
            console.print(f"loading {spec} as [bold]{label}[/]", highlight=False)
            engines[label] = load_engine(spec, **options)
    except BaseException:  # a later model failed to load: free the ones already loaded
        for engine in engines.values():
            engine.close()
        store.close()
        raise
    steerer = Steerer(store, engines, chat=chat, params=params)
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{port}/"
    console.print(f"serving {', '.join(engines)} on {url} (db {db})", highlight=False)
    if token:
        console.print(f"open {url}?token={token}  (API: 'Authorization: Bearer {token}')", highlight=False,
                      soft_wrap=True)
    try:
        uvicorn.run(create_app(steerer, token=token, max_body=max_body), host=host, port=port,
                    log_level="warning", access_log=False)
    finally:
        for engine in engines.values():
            engine.close()
        store.close()
