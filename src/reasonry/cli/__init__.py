"""The `reasonry` command line. Thin: parse flags, call the library, print."""

from __future__ import annotations

import importlib
import sys
import warnings

import click
import typer
from rich.markup import escape

from reasonry.cli.common import console
from reasonry.errors import InputWarning, ReasonryError
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


def _show_warning(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
    if issubclass(category, InputWarning):
        console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning


def main() -> None:
    warnings.showwarning = _show_warning
    try:
        code = app(standalone_mode=False)
    except ReasonryError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except ModuleNotFoundError as exc:
        missing = missing_extra(exc)
        if missing is None:
            raise
        console.print(f"[red]error:[/] {escape(str(missing))}", highlight=False, soft_wrap=True)
        sys.exit(missing.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        code = 130
    if code == 130:
        console.print("[yellow]interrupted[/]: everything finished is stored; run the same command again to resume")
    if isinstance(code, int) and code:
        sys.exit(code)
