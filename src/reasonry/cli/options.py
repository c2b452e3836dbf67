"""Options shared by several commands that are not generated from config dataclasses (see cli/flags.py)."""

from __future__ import annotations

from typing import Annotated

import typer

Models = Annotated[list[str], typer.Option("--model", "-m", help="KIND:MODEL[+ADAPTER][@URL], repeatable: "
                                           "hf:./phi-2+./checkpoint-2031, openai:llama3@http://localhost:8000/v1")]
Db = Annotated[str, typer.Option("--db", help="SQLite file holding every request and result.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print a machine-readable summary instead of tables.")]
