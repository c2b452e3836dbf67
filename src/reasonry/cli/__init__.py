"""The `reasonry` command line. Thin: parse flags, call the library, print."""

from __future__ import annotations

import importlib
import sys

import click
import typer

from reasonry.cli.common import console
from reasonry.errors import ReasonryError

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
    "reasonry.cli.data",
    "reasonry.cli.hygiene",
]
for _module in COMMAND_MODULES:
    importlib.import_module(_module)


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except ReasonryError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
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
