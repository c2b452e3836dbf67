"""`reasonry steer ask|history|accept` and `reasonry serve` (the local web app)."""

from __future__ import annotations

import errno
import json
import secrets
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from reasonry.cli import app
from reasonry.cli.common import console, stdout
from reasonry.cli.flags import EngineFlags, model_flags
from reasonry.cli.options import Db, JsonOut, Models
from reasonry.config import SamplingParams
from reasonry.errors import InputError
from reasonry.prompts.roles import ROLES
from reasonry.store import Store
from reasonry.tasks.steer import MODES, Budget, Steerer, Version, accept, history

if TYPE_CHECKING:
    from reasonry.tasks.steer_batch import BatchReport, Edit

steer_app = typer.Typer(no_args_is_help=True, help="Steer a response through its reasoning; every version is kept.")
app.add_typer(steer_app, name="steer")

Model = Annotated[str, typer.Option("--model", "-m", help="KIND:MODEL[+ADAPTER][@URL], e.g. hf:./phi-2+./checkpoint-2031")]
Chat = Annotated[bool, typer.Option("--chat", help="Use the tokenizer's chat template (special mode prefills <think>).")]


Template = Annotated[str, typer.Option(help="Prompt format of raw models: alpaca (seed 003), phi2 (seed 000 tags), "
                                            "or a .j2 file with a {{ reasoning }} slot or ending at a reasoning tag.")]
Role = Annotated[str | None, typer.Option(help=f"phi2 system role: {', '.join(ROLES)}.")]
System = Annotated[str | None, typer.Option(help="System text instead of a role.")]


def _reasoning_text(value: str | None, flag: str = "--reasoning") -> str | None:
    """TEXT, or @file.txt read as UTF-8 without the line break editors add at its end."""
    if value is None or not value.startswith("@"):
        return value
    path = Path(value[1:])
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{flag} {value}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise InputError(f"{flag} {value}: not UTF-8 text; save it as UTF-8") from None
    return text[:-1] if text.endswith("\n") else text


def budget_of(tokens: int | None, minimum: int, close: str) -> Budget | None:
    if tokens is None:
        if minimum:
            raise InputError("--reasoning-min needs --reasoning-budget")
        return None
    return Budget(tokens, minimum, close)


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
    continue_from: Annotated[str | None, typer.Option(
        "--continue-from", help="A reasoning prefix (TEXT or @file.txt) the model continues, then responds.")] = None,
    reasoning_budget: Annotated[int | None, typer.Option(
        "--reasoning-budget", help="End the reasoning after N new tokens and make the model respond.")] = None,
    reasoning_min: Annotated[int, typer.Option(
        "--reasoning-min", help="With --reasoning-budget: a reasoning ending before N tokens goes on after 'Wait,'.")] = 0,
    budget_close: Annotated[str, typer.Option(
        "--budget-close", help="Phrase appended to a reasoning cut by the budget, before the response.")] = "",
    chat: Chat = False, template: Template = "alpaca", role: Role = None, system: System = None,
    db: Db = "reasonry.db", as_json: JsonOut = False,
    *, params: SamplingParams, engine: EngineFlags,
) -> None:
    """Generate one steering version: a reasoning (and response), a response from a given reasoning, or the rest
    of a reasoning from a prefix (--continue-from)."""
    from reasonry.engines.registry import load_engine

    given = _reasoning_text(reasoning)
    prefix = _reasoning_text(continue_from, "--continue-from")
    if prefix is not None and given is not None:
        raise InputError("give either --reasoning (a finished reasoning) or --continue-from (a prefix), not both")
    if prefix is not None:
        mode, given = mode or "continue", prefix
    mode = mode or ("special" if given else "reasoning")
    budget = budget_of(reasoning_budget, reasoning_min, budget_close)
    spec = engine.spec(model)
    options = engine.options([spec])
    store = Store(db)
    try:
        with load_engine(spec, **options) as loaded:
            steerer = Steerer(store, {spec.label: loaded}, chat=chat, params=params, template=template, role=role,
                              system=system)
            live = not as_json and console.is_terminal
            version = None
            for piece in steerer.stream(spec.label, question, input_text, mode=mode, reasoning=given,
                                        thread=thread, parent=parent, budget=budget):
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

    store = Store.existing(db)
    try:
        versions = history(store, thread, limit)
    finally:
        store.close()
    if as_json:
        stdout.print_json(json.dumps([v.to_dict() for v in versions], ensure_ascii=False))
        return
    table = Table(title=f"steering versions{f' of {thread}' if thread else ''}", expand=True)
    names = ("id", "from", "mode", "edit", "ok", "s", "tok", "model", "thread", "response")
    for name in names:  # the id (what `steer accept` takes) first and never shrunk; text columns share the rest
        short = name not in ("model", "thread", "response")
        table.add_column(name, no_wrap=short, min_width=len(name) if short else 6, overflow="fold",
                         ratio=None if short else {"model": 1, "thread": 2, "response": 3}[name])
    for v in versions:
        table.add_row(str(v.id), str(v.parent_id or ""), v.mode, "yes" if v.edited else "",
                      "✓" if v.accepted else "", f"{v.seconds or 0:.1f}", str(v.completion_tokens or 0), v.model,
                      v.thread, " ".join((v.response or "").split())[:120])
    stdout.print(table)


@steer_app.command("accept")
def accept_command(
    version_id: Annotated[int, typer.Argument(metavar="VERSION_ID")],
    undo: Annotated[bool, typer.Option("--undo", help="Unmark it.")] = False,
    db: Db = "reasonry.db", as_json: JsonOut = False,
) -> None:
    """Mark a version as a training example (with its thread's original it forms a preference pair)."""
    store = Store.existing(db)
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
    port: Annotated[int, typer.Option(help="TCP port (0: any free one).", min=0, max=65535)] = 8765,
    host: Annotated[str, typer.Option(help="Address to bind; anything but 127.0.0.1/localhost/::1 needs a token.")] = "127.0.0.1",
    token: Annotated[str | None, typer.Option(help="Access token (generated and printed when --host is not loopback).",
                                              envvar="REASONRY_TOKEN")] = None,
    db: Db = "reasonry.db", chat: Chat = False, template: Template = "alpaca", role: Role = None,
    system: System = None,
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
    listener = _listen(host, port)  # before the models load: a taken port is known at once
    port = listener.getsockname()[1]
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
        listener.close()
        raise
    steerer = Steerer(store, engines, chat=chat, params=params, template=template, role=role, system=system)
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{port}/"
    console.print(f"serving {', '.join(engines)} on {url} (db {db})", highlight=False)
    if token:
        console.print(f"open {url}?token={token}  (API: 'Authorization: Bearer {token}')", highlight=False,
                      soft_wrap=True)
    try:
        config = uvicorn.Config(create_app(steerer, token=token, max_body=max_body), host=host, port=port,
                                log_level="warning", access_log=False)
        uvicorn.Server(config).run(sockets=[listener])
    finally:
        listener.close()
        for engine in engines.values():
            engine.close()
        store.close()


def _listen(host: str, port: int) -> socket.socket:
    address = host.strip("[]")
    try:
        family = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0][0]
        listener = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise InputError(f"--host {host}: not an address of this machine ({exc.strerror or exc})") from None
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((address, port))
        listener.listen(2048)
    except OSError as exc:
        listener.close()
        reason = "in use by another program" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        raise InputError(f"--port {port}: cannot listen on {host}:{port}, {reason}; choose another --port") from None
    return listener


def _edit_of(prefix: str | None, template_edit: str | None, find: str | None, replace: str | None,
             regex: bool) -> Edit:
    from reasonry.tasks.steer_batch import Edit

    given = [name for name, value in (("--prefix", prefix), ("--template-edit", template_edit), ("--find", find))
             if value is not None]
    if len(given) != 1:
        raise InputError("give exactly one edit: --prefix TEXT, --template-edit TEXT|@file.j2, or --find TEXT "
                         "--replace TEXT")
    if find is not None:
        if replace is None:
            raise InputError("--find needs --replace (the text that takes its place; may be empty)")
        return Edit("regex" if regex else "replace", find, replace)
    if prefix is not None:
        return Edit("prefix", _reasoning_text(prefix, "--prefix") or "")
    return Edit("template", _reasoning_text(template_edit, "--template-edit") or "")


def _print_report(report: BatchReport, as_json: bool, rows: int = 20) -> None:
    from rich.table import Table

    if as_json:
        stdout.print_json(json.dumps(report.to_dict(), ensure_ascii=False))
        return
    table = Table(title=f"batch {report.batch_id} on run {report.run_id} ({report.model})")
    for name in ("row", "changed", "diff", "flags before", "flags after", "versions"):
        table.add_column(name, no_wrap=not name.startswith("flags"), overflow="ellipsis" if name == "row" else "fold",
                         max_width=24 if name == "row" else None)
    table.add_column("new response", min_width=16, max_width=60)
    for row in report.per_row[:rows]:
        table.add_row(row.row_id, "yes" if row.changed else "", f"-{row.response_diff['delete']} "
                      f"+{row.response_diff['insert']}", ",".join(row.flags_before), ",".join(row.flags_after),
                      f"{row.original_id}→{row.edited_id}", " ".join((row.response or "").split())[:60])
    stdout.print(table)
    if len(report.per_row) > rows:
        stdout.print(f"... {len(report.per_row) - rows} more rows (--json lists all)", highlight=False)
    stdout.print(report.headline(), highlight=False)


@steer_app.command("batch")
@model_flags()
def batch_command(
    run: Annotated[str, typer.Argument(help="The run whose reasonings are edited (id, prefix or 'last').")],
    model: Model = ...,
    prefix: Annotated[str | None, typer.Option(help="Put this text (or @file.txt) before every reasoning.")] = None,
    template_edit: Annotated[str | None, typer.Option(
        "--template-edit", help="Jinja text or @file.j2 over question, input, reasoning, response, row_id, model: "
        "the new reasoning.")] = None,
    find: Annotated[str | None, typer.Option(help="Text to replace in every reasoning.")] = None,
    replace: Annotated[str | None, typer.Option(help="What --find becomes.")] = None,
    regex: Annotated[bool, typer.Option("--regex", help="--find is a regular expression (--replace may use \\1).")] = False,
    run_model: Annotated[str | None, typer.Option("--run-model", help="Which of the run's models' rows to edit "
                                                                      "(default: all).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N rows.")] = None,
    note: Annotated[str | None, typer.Option(help="A note kept with the batch.")] = None,
    chat: Chat = False, template: Template = "alpaca", role: Role = None, system: System = None,
    db: Db = "reasonry.db", as_json: JsonOut = False,
    *, params: SamplingParams, engine: EngineFlags,
) -> None:
    """Apply one reasoning edit to many rows of a run, regenerate their responses, and report what changed."""
    from reasonry.engines.registry import load_engine
    from reasonry.tasks.steer_batch import steer_batch
    from reasonry.tasks.steer_formats import steer_format

    edit = _edit_of(prefix, template_edit, find, replace, regex)
    fmt = steer_format(template, chat=chat, role=role, system=system)
    spec = engine.spec(model)
    options = engine.options([spec])
    store = Store.existing(db)
    try:
        with load_engine(spec, **options) as loaded:
            report = steer_batch(store, run, loaded, edit, fmt=fmt, model=run_model, params=params, limit=limit,
                                 label=spec.label, note=note)
    finally:
        store.close()
    _print_report(report, as_json)


@steer_app.command("batch-show")
def batch_show_command(
    batch: Annotated[str, typer.Argument(help="The batch (id, prefix or 'last').")] = "last",
    rows: Annotated[int, typer.Option(help="Rows to list.")] = 50, db: Db = "reasonry.db", as_json: JsonOut = False,
) -> None:
    """Show a batch's per-row report and summary again."""
    from reasonry.tasks.steer_batch import load_report

    store = Store.existing(db)
    try:
        report = load_report(store, batch)
    finally:
        store.close()
    _print_report(report, as_json, rows)


@steer_app.command("batch-accept")
def batch_accept_command(
    batch: Annotated[str, typer.Argument(help="The batch (id, prefix or 'last').")] = "last",
    all_rows: Annotated[bool, typer.Option("--all", help="Also rows whose response did not change.")] = False,
    row: Annotated[list[str] | None, typer.Option("--row", help="Only this row id (repeatable).")] = None,
    without_flag: Annotated[list[str] | None, typer.Option(
        "--without-flag", help="Skip rows whose new version still has this flag (repeatable), e.g. leakage.")] = None,
    db: Db = "reasonry.db", as_json: JsonOut = False,
) -> None:
    """Accept a batch's edited versions: SFT rows and DPO pairs (`reasonry export --steering`)."""
    from reasonry.tasks.steer_batch import accept_batch

    store = Store.existing(db)
    try:
        accepted = accept_batch(store, batch, changed_only=not all_rows, rows=row, without_flags=without_flag or ())
    finally:
        store.close()
    if as_json:
        stdout.print_json(json.dumps([v.id for v in accepted]))
    else:
        console.print(f"accepted {len(accepted)} versions: {', '.join(str(v.id) for v in accepted) or '-'}",
                      highlight=False)
