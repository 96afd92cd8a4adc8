"""Every exception of the catalogue, in one place: messages a user can act on, turned into exit codes by the CLI."""


class CatalogError(Exception):
    """Something the user should read; printed without a traceback, exit status 1."""

    exit_code = 1


class ConfigError(CatalogError):
    """Bad settings or usage: exit status 2."""

    exit_code = 2


class RootUnavailable(CatalogError):
    """A library root is missing, not a folder, or suddenly empty (a dropped NAS mount?)."""


class AnalysisFailed(CatalogError):
    """One photo could not be analysed.

    `permanent`: the file itself is at fault (the service refused this image, it cannot
    become an upload); never retried. `spends_attempt`: the failure is the photo's own and
    counts against `analysis.max_attempts`; a fault on the service's side (5xx, timeout,
    refused connection) or on the way to the file (moved, EIO on the NAS) spends none and
    is simply tried again on a later run.
    """

    def __init__(self, message: str, *, permanent: bool = False, status: int | None = None,
                 spends_attempt: bool = True):
        super().__init__(message)
        self.permanent = permanent
        self.status = status
        self.spends_attempt = spends_attempt or permanent


class AuthenticationFailed(CatalogError):
    """The API refused our key (401/403): the whole run stops, nothing is marked failed.

    Exit status 2: like a configuration mistake, only the user can fix it.
    """

    exit_code = 2


class StageStopped(CatalogError):
    """The service can take no more this run: the analysis stage stops with this one line.

    Nothing is marked failed and no attempt is spent; answers already received are kept
    and the next run resumes where this one stopped.
    """


class QuotaExhausted(StageStopped):
    """A 429 whose reset lies beyond the wait horizon (a daily or monthly quota)."""

    def __init__(self, message: str, *, reset_at: float | None = None):
        super().__init__(message)
        self.reset_at = reset_at  # wall-clock epoch seconds, when the server said


class ServiceDown(StageStopped):
    """The circuit breaker opened: too many consecutive server-side failures."""


class Interrupted(CatalogError):
    """SIGTERM or SIGINT: the run stops within seconds, keeping every answer received."""

    exit_code = 130


class PreparationFailed(CatalogError):
    """A photo cannot become an upload (empty, truncated, not an image, a decompression bomb)."""


class DatabaseUnusable(CatalogError):
    """The catalogue's database cannot be used right now: locked, damaged, unreachable or read-only."""

    about_the_file = True  # False: an error we do not recognise as the file's condition

    @classmethod
    def explain(cls, path, exc: Exception) -> "DatabaseUnusable":
        """One line a user can act on for an sqlite3 error on the database at `path`."""
        reason = str(exc) or type(exc).__name__
        text = reason.lower()
        where = f"the catalogue {path}" if path else "the catalogue database"
        if "locked" in text or "busy" in text:
            return cls(f"{where} is locked by another program (a long transaction, a copy or a backup?): "
                       "try again when it has finished")
        if any(w in text for w in ("not a database", "malformed", "corrupt", "vtable constructor failed")):
            return cls(f"{where} is damaged or not a catalogue ({reason}): restore it from a backup, or "
                       "move it aside and run `catalog scan` to build a new one")
        if "readonly" in text or "read-only" in text:
            return cls(f"{where} cannot be written here ({reason}): check the file, its folder and the mount")
        if "unable to open" in text or "disk i/o" in text or "disk is full" in text:
            return cls(f"cannot use {where} ({reason}): check that it is a file, that its folder can be "
                       "written, and that its disk is mounted, healthy and not full")
        error = cls(f"{where} failed: {reason}")
        error.about_the_file = False
        return error


class FileUnreadable(PreparationFailed):
    """The file could not be read just now (moved, renamed, EACCES, EIO on a NAS): not its fault."""


class CatalogueBusy(CatalogError):
    """Another run is writing this catalogue."""


class SearchError(CatalogError):
    """A query or filter we cannot run; the message says how to fix it."""

    exit_code = 2


class EnricherUnavailable(CatalogError):
    """An enricher's optional dependency is not installed (the `local` install group)."""


class WriteBackError(CatalogError):
    """This photo cannot be written losslessly; nothing was changed."""


class ChangedMeanwhile(WriteBackError):
    """Another program wrote the file between our read and our rename: nothing was written."""


class IptcError(CatalogError):
    """IPTC or Photoshop resource data we cannot rewrite without losing some of it."""


class NotRegularFile(OSError):
    """The path no longer names a regular file (swapped for a FIFO, device, socket, folder)."""


class FileChanged(OSError):
    """The file changed (truncated, grown, rewritten) while it was being read."""
