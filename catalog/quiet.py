"""What reaches the terminal from a Prefect run: catalog's own one-line messages, never Prefect's logs or tracebacks.

Prefect logs a failed flow or task with its traceback, and its engine and runner
add their own errors; those stay in Prefect's UI and database. `catalog run` and
`catalog schedule` filter them off their own log handler; the processes Prefect
starts for served runs use `TerminalHandler` in place of Prefect's console handler
(Prefect reads the handler class from PREFECT_LOGGING_HANDLERS_CONSOLE_CLASS).
"""

from __future__ import annotations

import logging
import sys

FORMAT = "catalog: %(levelname)s: %(message)s"
HANDLER_SETTING = "PREFECT_LOGGING_HANDLERS_CONSOLE_CLASS"
HANDLER_CLASS = "catalog.quiet.TerminalHandler"
NOISY = ("prefect", "uvicorn", "fastapi", "httpx", "httpcore", "docket", "alembic", "aiosqlite")


class NotPrefect(logging.Filter):
    """Lets catalog's own log records through, not Prefect's or its server's."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(NOISY)


class TerminalHandler(logging.StreamHandler):
    """Prefect's console handler, replaced: catalog's records only, in the CLI's escaped format."""

    def __init__(self, stream=None, **_prefect_options):  # Prefect also passes its `styles`
        from catalog.terminal import EscapingFormatter

        super().__init__(stream or sys.stderr)
        super().setFormatter(EscapingFormatter(FORMAT))
        self.addFilter(NotPrefect())

    def setFormatter(self, fmt) -> None:  # Prefect's logging config sets its own; ours stays
        pass


def keep_prefect_off() -> None:
    """Filter Prefect's records off the root logger's handlers (the terminal), whoever installed them."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, NotPrefect) for f in handler.filters):
            handler.addFilter(NotPrefect())


def prefect_failure(exc: BaseException, doing: str):
    """The one-line CatalogError for a Prefect failure: a refused password is a configuration mistake."""
    import os

    from catalog.errors import CatalogError, ConfigError

    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        return ConfigError(f"the Prefect server at {os.environ.get('PREFECT_API_URL')} refused us ({status}): "
                           "set PREFECT_API_AUTH_STRING to its user:password (see the README)")
    return CatalogError(f"{doing}: {one_line(exc)}")


def one_line(exc: BaseException) -> str:
    """`Type: first line of the message`, for an error nobody foresaw (details stay in Prefect's logs)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
