"""Exceptions with messages a user can act on; the CLI turns them into exit codes."""


class CatalogError(Exception):
    """Something the user should read; printed without a traceback, exit status 1."""

    exit_code = 1


class ConfigError(CatalogError):
    """Bad settings or usage: exit status 2."""

    exit_code = 2


class RootUnavailable(CatalogError):
    """A library root is missing, not a folder, or suddenly empty (a dropped NAS mount?)."""


class AnalysisFailed(CatalogError):
    """One photo could not be analysed; `permanent` failures are never retried."""

    def __init__(self, message: str, *, permanent: bool = False, status: int | None = None):
        super().__init__(message)
        self.permanent = permanent
        self.status = status


class AuthenticationFailed(CatalogError):
    """The API refused our key (401/403): the whole run stops, nothing is marked failed.

    Exit status 2: like a configuration mistake, only the user can fix it.
    """

    exit_code = 2


class PreparationFailed(CatalogError):
    """A photo cannot become an upload (empty, truncated, not an image, a decompression bomb)."""
