"""Write one bench's section into docs/benchmarks.md (replaced in place when there, appended otherwise)."""

from __future__ import annotations

import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs" / "benchmarks.md"


def short_commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=HERE).stdout.strip()


def replace_section(section: str, body: str) -> None:
    """`body` starts with the `section` heading line."""
    text = DOCS.read_text(encoding="utf-8")
    if section in text:
        start = text.index(section)
        end = text.find("\n## ", start + len(section))
        text = text[:start] + body + (text[end:] if end != -1 else "")
    else:
        text = text.rstrip() + "\n\n" + body
    DOCS.write_text(text, encoding="utf-8")
