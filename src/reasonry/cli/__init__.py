"""The `reasonry` command line. Thin: parse flags, call the library, print.

Exit codes (README "Exit codes"): 0 done; 2 a usage mistake, bad input or a locked database (one line on
stderr); 3 the run finished but some requests failed; 130 interrupted (everything finished is stored).
"""

from __future__ import annotations

import importlib
import sqlite3
import sys
import typing
import warnings
from typing import Any

import typer
from rich.markup import escape
from typer._click import exceptions as click_errors
from typer._click.core import Context
from typer.core import TyperArgument, TyperOption

from reasonry.cli.common import console
from reasonry.errors import EXIT_INTERRUPTED, EXIT_USAGE, InputWarning, ReasonryError, first_line, is_locked
from reasonry.extras import missing_extra

app = typer.Typer(
    name="reasonry", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Generate, compare, ensemble, check, steer and debate LLM reasoning, and turn it into fine-tuning data.",
)

# Each module registers its commands on `app` when imported.
COMMAND_MODULES = [
    "reasonry.cli.generate",
    "reasonry.cli.runs",
    "reasonry.cli.debate",
    "reasonry.cli.ensemble",
    "reasonry.cli.steer",
    "reasonry.cli.review",
    "reasonry.cli.data",
    "reasonry.cli.models",
    "reasonry.cli.hygiene",
]
for _module in COMMAND_MODULES:
    importlib.import_module(_module)

METAVARS = {str: "TEXT", int: "INTEGER", float: "NUMBER", bool: ""}

def _show_warning(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
    if issubclass(category, InputWarning):
        console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning


def _metavar(param: Any) -> str | None:
    """A plain type name for help (`INTEGER`, `PATH`; nothing for on/off flags) instead of typer's `<bool>`."""
    if getattr(param, "is_flag", False):
        return ""
    descriptor = getattr(param, "type_descriptor", None)
    annotation = getattr(descriptor, "annotation", None)
    if typing.get_origin(annotation) is list:
        annotation = typing.get_args(annotation)[0]
    if getattr(descriptor, "is_path", False):
        return "PATH"
    return METAVARS.get(annotation) if isinstance(annotation, type) else None


def _tidy_help(command: Any) -> None:
    """Plain type names, and help texts shown as written: `[+ADAPTER]` and `reasonry[ray]` are not rich markup."""
    command.no_args_is_help = False  # a bare `reasonry` is a usage mistake: one line, not a page of help
    help_option = command.get_help_option(Context(command, info_name=command.name))
    for param in [*command.params, *([help_option] if help_option else [])]:
        if isinstance(param, TyperOption) and param.metavar is None:
            param.metavar = _metavar(param)
        elif isinstance(param, TyperArgument):  # its metavar is its name: replace only the type column
            param.display_type_rich = lambda ctx, shown=_metavar(param) or "TEXT": shown
        if getattr(param, "help", None):
            param.help = escape(param.help)
    for sub in getattr(command, "commands", {}).values():
        _tidy_help(sub)


def command() -> Any:
    """The click command tree of `app`, with readable type names in help."""
    cli = typer.main.get_command(app)
    _tidy_help(cli)
    return cli


def _usage_error(exc: click_errors.UsageError) -> int:
    ctx = exc.ctx
    if ctx is not None:
        console.print(f"usage: {ctx.command_path} {' '.join(ctx.command.collect_usage_pieces(ctx))}".rstrip(),
                      markup=False, highlight=False, soft_wrap=True)
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    console.print(f"error: {first_line(exc.format_message(), None)}{hint}", markup=False, highlight=False,
                  soft_wrap=True)
    return EXIT_USAGE


def main(args: list[str] | None = None) -> None:
    code: Any = 0
    warnings.showwarning = _show_warning
    try:
        code = command().main(args=args, prog_name="reasonry", standalone_mode=False)
    except ReasonryError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except ModuleNotFoundError as exc:
        missing = missing_extra(exc)
        if missing is None:
            raise
        console.print(f"[red]error:[/] {escape(str(missing))}", highlight=False, soft_wrap=True)
        sys.exit(missing.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except click_errors.UsageError as exc:
        sys.exit(_usage_error(exc))
    except click_errors.ClickException as exc:
        console.print(f"[red]error:[/] {escape(first_line(exc.format_message(), None))}", highlight=False,
                      soft_wrap=True)
        sys.exit(EXIT_USAGE)
    except sqlite3.OperationalError as exc:
        if not is_locked(exc):
            raise
        console.print("[red]error:[/] the database (--db) is locked: another program holds a write transaction on "
                      "it (an open SQLite browser, another reasonry run). Close or commit that, then run the same "
                      "command again; everything finished is stored.", highlight=False, soft_wrap=True)
        sys.exit(EXIT_USAGE)
    except (typer.Abort, KeyboardInterrupt):
        code = EXIT_INTERRUPTED
    if code == EXIT_INTERRUPTED:
        console.print("[yellow]interrupted[/]: everything finished is stored; run the same command again to resume")
    if isinstance(code, int) and code:
        sys.exit(code)
