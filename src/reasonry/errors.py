"""User-facing errors: the CLI prints their message on one line and exits 2, without a traceback."""

import os
import sqlite3
import warnings


class ReasonryError(Exception):
    """An error caused by the user's input or environment; its message says what to fix."""

    exit_code = 2


class InputError(ReasonryError):
    """A question file, column or value that cannot be used."""


class InputWarning(UserWarning):
    """A problem with the input that does not stop the run (a guessed encoding, a repeated id...)."""


def warn_input(message: str) -> None:
    """A problem with the input that does not stop the run: the CLI shows it on one line."""
    warnings.warn(message, InputWarning, stacklevel=3)


class ConfigError(ReasonryError):
    """A flag, model spec or template that cannot be used."""


class EngineError(ReasonryError):
    """A model that cannot be loaded or a backend that is not installed."""


def first_line(exc: BaseException, limit: int | None = 300) -> str:
    """The first line of an exception's message (its type name when empty), for one-line errors."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line[:limit] if limit else line


EXIT_USAGE = 2  # a usage mistake or bad input: one line on stderr
EXIT_FAILED_ROWS = 3  # the run finished, but some requests failed (their rows have an error; rerun to retry them)
EXIT_INTERRUPTED = 130  # Ctrl-C: everything finished is stored


def db_timeout() -> float:
    """Seconds a database write waits for another writer's transaction (REASONRY_DB_TIMEOUT, default 30)."""
    return float(os.environ.get("REASONRY_DB_TIMEOUT", "30"))


def is_locked(exc: BaseException) -> bool:
    """Another program held a write transaction on the database longer than db_timeout()."""
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)
