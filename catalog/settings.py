"""The settings' shape: frozen dataclasses and their defaults, read and checked by catalog/config.py."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from catalog import config_checks as checks
from catalog.analyzers import analyzer_names
from catalog import proxies
from catalog.errors import ConfigError

DEFAULT_EXTENSIONS = (
    ".jpg", ".jpeg", ".jpe", ".png", ".gif", ".webp",
    ".heic", ".heif", ".tif", ".tiff", ".bmp",
)
# NAS housekeeping folders (Synology @eaDir/#recycle/#snapshot), hidden files, trash, temp files.
DEFAULT_EXCLUDE = (".*", "@eaDir", "#recycle", "#snapshot", "lost+found", ".Trash-*", "*.tmp", "*~")


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / fallback


def default_config_path() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / "catalog" / "config.toml"


def default_database_path() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share") / "catalog" / "catalog.db"


@dataclass(frozen=True)
class LibrarySettings:
    """Which files make up the library."""

    roots: tuple[str, ...] = ()
    include_extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    follow_symlinks: bool = False

    def __post_init__(self):
        # Extensions compare case-insensitively: `.JPG` counts as `.jpg`.
        normalised = tuple(
            ("." + e.lower().lstrip(".")) for e in self.include_extensions if e.strip(".")
        )
        object.__setattr__(self, "include_extensions", normalised)


@dataclass(frozen=True)
class ScanSettings:
    """How hard the scanner works and what it refuses."""

    hash_workers: int = 4
    # Where new and changed files are read: "processes" (one core each) or "threads" (one core
    # in all, no start-up cost); catalog.inspectors.
    inspector: str = "processes"
    # Pillow's own refusal threshold; a header claiming more pixels is a decompression bomb.
    max_image_pixels: int = 178_956_970


@dataclass(frozen=True)
class AnalysisSettings:
    """Which analyzer runs, how fast, and how much a run may spend."""

    # "auto": the ImgTags API when an API key is configured, else the offline analyzer.
    analyzer: str = "auto"
    requests_per_minute: int = 60
    concurrency: int = 4
    max_attempts: int = 3  # failed photos are retried on later runs up to this many attempts
    max_requests: int = 0  # per-run budget; 0 = no limit
    max_tokens: int = 0  # per-run budget; 0 = no limit
    max_upload_bytes: int = 10_000_000
    max_edge: int = 0  # shrink uploads so the long edge is at most this; 0 = only when needed
    send_location: bool = False
    timeout_seconds: float = 120.0
    max_retries: int = 4  # for 5xx, timeouts and connection errors; 429 waits do not count
    max_answer_bytes: int = 2_000_000  # a longer answer is a recorded failure, the connection dropped
    max_rate_limit_wait_seconds: float = 900.0  # a 429 reset further away (a daily quota) stops the stage
    breaker_failures: int = 5  # server-side failures in a row that stop the stage for this run
    # Offline enrichers run after the back-end, each with its own provenance (catalog.enrichers).
    enrichers: tuple[str, ...] = ("places", "text", "safety", "faces")
    # Privacy routing: photos under these folders never go to a cloud back-end (catalog.routing).
    local_only: tuple[str, ...] = ()
    local_analyzer: str = "offline"  # what analyses them: offline, or openai on this machine
    upload_if_adult_below: str = ""  # e.g. "LIKELY": the safety model rates a photo first; "" = off
    reuse_for_copies: bool = True  # a copy of an analysed photo takes its answer: no request (catalog.reuse)


@dataclass(frozen=True)
class ScheduleSettings:
    """The nightly run (`catalog schedule`, `catalog run`)."""

    cron: str = "0 2 * * *"
    timezone: str = ""  # IANA name, e.g. Europe/Berlin; empty = this machine's time zone
    batch_size: int = 100  # photos per Prefect analysis task
    # "threads" (Prefect's ThreadPoolTaskRunner, this machine) or a Dask scheduler's address
    # ("tcp://10.0.0.5:8786"): analysis batches then run on its workers (docs/scaling.md)
    task_runner: str = "threads"

    def dask_address(self) -> str | None:
        """The Dask scheduler the flow sends its batches to; None for threads on this machine."""
        return None if self.task_runner == "threads" else self.task_runner


@dataclass(frozen=True)
class WritebackSettings:
    """Tags written back into the photos (`catalog writeback`)."""

    mode: str = "sidecar"  # sidecar (never touches the photo), embed, or both
    sidecar_name: str = "ext"  # "ext": IMG.JPG.xmp (darktable, digiKam); "base": IMG.xmp (Lightroom)
    sidecar_dir: str = ""  # a mirror tree for sidecars (read-only shares); empty = beside the photo
    hierarchy_parent: str = "auto"  # hierarchical keywords go under this parent: auto|sunset
    after_analysis: bool = False  # the nightly run writes back after analysing


@dataclass(frozen=True)
class ImgTagsSettings:
    base_url: str = "https://www.imgtags.com/api/v1"
    api_key_env: str = "IMGTAGS_API_KEY"  # the environment variable holding the key


@dataclass(frozen=True)
class OpenAISettings:
    """Any OpenAI-compatible vision server: Ollama, llama.cpp's server, vLLM, LM Studio, OpenAI."""

    base_url: str = "http://127.0.0.1:11434/v1"  # Ollama on this machine; $OPENAI_BASE_URL overrides
    model: str = ""  # required with analyzer = "openai"
    api_key_env: str = "OPENAI_API_KEY"  # "" = never send a key (most local servers need none)
    requests_per_minute: int = 0  # 0 = no limit
    concurrency: int = 2  # one answering, the next one prepared and waiting
    timeout_seconds: float = 300.0  # a cold model load plus a slow CPU answer
    max_edge: int = 1024
    prompt: str = ""  # "" = the built-in prompt asking for the ImgTags answer as JSON


# Settings a back-end's own section brings to the analysis stage when that back-end runs.
STAGE_SETTINGS = ("concurrency", "max_edge")


@dataclass(frozen=True)
class Config:
    database: Path = field(default_factory=default_database_path)
    library: LibrarySettings = field(default_factory=LibrarySettings)
    scan: ScanSettings = field(default_factory=ScanSettings)
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    imgtags: ImgTagsSettings = field(default_factory=ImgTagsSettings)
    openai: OpenAISettings = field(default_factory=OpenAISettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    writeback: WritebackSettings = field(default_factory=WritebackSettings)
    source: Path | None = None  # the file these settings came from, if any
    proxies: proxies.ProxyRoutes = field(default_factory=proxies.ProxyRoutes)  # from the environment
    # The variables below as this process saw them, for a Dask worker on another machine
    # (`for_workers`); never shown in a repr. None: read this process's environment.
    carried: tuple[tuple[str, str], ...] | None = field(default=None, repr=False, compare=False)

    def _env(self, name: str) -> str | None:
        if self.carried is not None:
            return dict(self.carried).get(name)
        return os.environ.get(name)

    def for_workers(self) -> Config:
        """These settings with the environment they read (API keys, URL overrides) carried along,
        for a worker whose own environment lacks them. The keys travel to the workers with it."""
        names = (self.imgtags.api_key_env, "IMGTAGS_BASE_URL", "OPENAI_BASE_URL", self.openai.api_key_env)
        return dataclasses.replace(self, carried=tuple((n, os.environ[n]) for n in names if n and n in os.environ))

    def api_key(self) -> str | None:
        """The ImgTags key, read from the environment only: it never lives in a file we write."""
        return self._env(self.imgtags.api_key_env) or None

    def imgtags_base_url(self) -> str:
        return self._env("IMGTAGS_BASE_URL") or self.imgtags.base_url

    def analyzer_name(self) -> str:
        if self.analysis.analyzer == "auto":
            return "imgtags" if self.api_key() else "offline"
        return self.analysis.analyzer

    def sends_off_machine(self, name: str) -> bool:
        """Whether back-end `name` sends photos off this machine (imgtags; openai unless on loopback)."""
        if name == "openai":
            return not checks.loopback(self.openai_base_url())
        return name not in ("offline",)

    def using(self, name: str) -> Config:
        """These settings with `name` as the analyzer. A back-end with a section of its own
        ([openai]) brings its concurrency and upload edge to the stage; [analysis] keeps the rest."""
        if name != "auto" and name not in analyzer_names():
            raise ConfigError(f"analysis.analyzer must be one of {', '.join(('auto', *analyzer_names()))}, "
                              f"not {name!r}")
        own = getattr(self, name, None) if name in SECTIONS else None
        moved = {k: getattr(own, k) for k in STAGE_SETTINGS if hasattr(own, k)}
        return dataclasses.replace(self, analysis=dataclasses.replace(self.analysis, analyzer=name, **moved))

    def openai_base_url(self) -> str:
        """$OPENAI_BASE_URL, else openai.base_url; checked like every URL the key may go to."""
        where = "OPENAI_BASE_URL" if self._env("OPENAI_BASE_URL") else "openai.base_url"
        url = self._env("OPENAI_BASE_URL") or self.openai.base_url
        return checks.base_url(checks.text(url, where), where).rstrip("/")

    def openai_api_key(self) -> str | None:
        """The key for the OpenAI-compatible server, from the environment only; None when unset."""
        env = self.openai.api_key_env
        return (self._env(env) or None) if env else None

    def openai_model(self) -> str:
        if not self.openai.model.strip():
            raise ConfigError('analyzer "openai" needs a model: set openai.model in the config file, '
                              'e.g. model = "qwen2.5vl:7b" (a vision model your server has)')
        return self.openai.model.strip()


SECTIONS = {"library": LibrarySettings, "scan": ScanSettings, "analysis": AnalysisSettings,
            "imgtags": ImgTagsSettings, "openai": OpenAISettings, "schedule": ScheduleSettings,
            "writeback": WritebackSettings}
