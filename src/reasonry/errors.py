"""User-facing errors: the CLI prints their message on one line and exits 2, without a traceback."""


class ReasonryError(Exception):
    """An error caused by the user's input or environment; its message says what to fix."""

    exit_code = 2


class InputError(ReasonryError):
    """A question file, column or value that cannot be used."""


class ConfigError(ReasonryError):
    """A flag, model spec or template that cannot be used."""


class EngineError(ReasonryError):
    """A model that cannot be loaded or a backend that is not installed."""
