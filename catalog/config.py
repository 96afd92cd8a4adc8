"""Settings: TOML file + environment -> frozen dataclasses. The only reader of settings.

Lookup order for the file: `--config FILE`, then `$CATALOG_CONFIG`, then
`$XDG_CONFIG_HOME/catalog/config.toml` (default `~/.config/catalog/config.toml`);
no file at all means the embedded defaults. `$CATALOG_DB` overrides the database
path, `$CATALOG_ENRICHERS` (names separated by commas, empty for none) the enrichers
for one run; the proxy variables (`$HTTPS_PROXY`, ...) are read here too (catalog/proxies.py).
Every key is documented in `config.example.toml`; an unknown key is an error, so a typo
never silently falls back to a default, and every value is checked
here at load (catalog/config_checks.py holds the rules): a bad one stops every
command at once with exit status 2 instead of failing hours into a run.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

    def api_key(self) -> str | None:
        """The ImgTags key, read from the environment only: it never lives in a file we write."""
        return os.environ.get(self.imgtags.api_key_env) or None

    def imgtags_base_url(self) -> str:
        return os.environ.get("IMGTAGS_BASE_URL") or self.imgtags.base_url

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
        where = "OPENAI_BASE_URL" if os.environ.get("OPENAI_BASE_URL") else "openai.base_url"
        url = os.environ.get("OPENAI_BASE_URL") or self.openai.base_url
        return checks.base_url(checks.text(url, where), where).rstrip("/")

    def openai_api_key(self) -> str | None:
        """The key for the OpenAI-compatible server, from the environment only; None when unset."""
        env = self.openai.api_key_env
        return (os.environ.get(env) or None) if env else None

    def openai_model(self) -> str:
        if not self.openai.model.strip():
            raise ConfigError('analyzer "openai" needs a model: set openai.model in the config file, '
                              'e.g. model = "qwen2.5vl:7b" (a vision model your server has)')
        return self.openai.model.strip()


SECTIONS = {"library": LibrarySettings, "scan": ScanSettings, "analysis": AnalysisSettings,
            "imgtags": ImgTagsSettings, "openai": OpenAISettings, "schedule": ScheduleSettings,
            "writeback": WritebackSettings}
WRITEBACK_MODES = ("sidecar", "embed", "both")


def _enrichers(names: tuple[str, ...], where: str) -> tuple[str, ...]:
    """Registered enricher names, each once ([] turns them all off)."""
    from catalog.enrichers import REGISTRY, unknown_names

    unknown = unknown_names(names)
    if unknown:
        raise ConfigError(f"{where}: unknown {', '.join(map(repr, unknown))} "
                          f"(known: {', '.join(REGISTRY)}; [] turns them all off)")
    if len(set(names)) != len(names):
        raise ConfigError(f"{where} lists an enricher twice")
    return names


ADULT_LEVELS = ("UNLIKELY", "POSSIBLE", "LIKELY", "VERY_LIKELY")


def _check_routing(config: Config) -> None:
    """[analysis] local_analyzer must keep photos here; upload_if_adult_below must be a level."""
    a = config.analysis
    if a.upload_if_adult_below and a.upload_if_adult_below not in ADULT_LEVELS:
        raise ConfigError(f"analysis.upload_if_adult_below must be one of {', '.join(ADULT_LEVELS)} "
                          f"(or \"\" for off), not {checks.shown(a.upload_if_adult_below)}")
    if a.local_only or a.upload_if_adult_below:
        if a.local_analyzer not in ("offline", "openai"):
            raise ConfigError('analysis.local_analyzer must be "offline" or "openai" (a server on this '
                              f"machine), not {checks.shown(a.local_analyzer)}")
        if config.sends_off_machine(a.local_analyzer):
            raise ConfigError(f'analysis.local_analyzer = "openai" needs openai.base_url on this machine '
                              f"(127.0.0.1, localhost), not {config.openai_base_url()}: photos under "
                              "local_only must not leave it")


# Checks for one key's value, beyond its type and bounds (see catalog/config_checks.py).
KEY_CHECKS = {
    "library.include_extensions": checks.extensions,
    "imgtags.base_url": checks.base_url,
    "imgtags.api_key_env": checks.env_name,
    "openai.base_url": checks.base_url,
    "openai.api_key_env": lambda name, where: checks.env_name(name, where) if name else name,  # "": no key
    "schedule.cron": checks.cron,
    "schedule.timezone": checks.timezone,
    "writeback.hierarchy_parent": checks.hierarchy_parent,
    "analysis.enrichers": _enrichers,
}


def _coerce(value: Any, default: Any, where: str) -> Any:
    """Check a TOML value against the type of the field's default; lists become tuples."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, not {checks.shown(value)}")
        return value
    if isinstance(default, (int, float)):
        return checks.number(value, default, where)
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be a list of strings, not {checks.shown(value)}")
        return tuple(checks.text(v, where) for v in value)
    if isinstance(default, str) or default is None:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, not {checks.shown(value)}")
        return checks.text(value, where)
    raise ConfigError(f"{where}: unsupported value {value!r}")  # pragma: no cover


def _section(cls: type, table: Any, name: str):
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}] must be a table of settings")
    defaults = cls()
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(
            f"unknown setting {', '.join(f'{name}.{k}' for k in unknown)} "
            f"(known: {', '.join(sorted(known))})"
        )
    values = {}
    for key, value in table.items():
        where = f"{name}.{key}"
        values[key] = _coerce(value, getattr(defaults, key), where)
        if where in KEY_CHECKS:
            values[key] = KEY_CHECKS[where](values[key], where)
    return cls(**values)


def _beside(value: str, base: Path | None) -> str:
    """A path setting: ~ expanded, a relative path taken relative to the config file."""
    path = Path(value).expanduser()
    return str(path if path.is_absolute() or base is None else base / path)


def _database(value: Any, where: str, base: Path | None) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where} must be a file path")
    path = Path(checks.text(value, where)).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path  # relative to the config file, not the cwd
    if path.is_dir():
        raise ConfigError(f"{where} names a folder ({path}): name the database file inside it")
    return path


def locate_config(explicit: str | os.PathLike | None) -> Path | None:
    """The config file to read, or None for the embedded defaults."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path
    env = os.environ.get("CATALOG_CONFIG")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ConfigError(f"CATALOG_CONFIG points to a missing file: {path}")
        return path
    path = default_config_path()
    return path if path.is_file() else None


def load_config(explicit: str | os.PathLike | None = None, *,
                database: str | os.PathLike | None = None) -> Config:
    """Read settings; raise ConfigError with a message a user can act on.

    `database` (the --db option) overrides $CATALOG_DB and the file's `database`.
    """
    path = locate_config(explicit)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:  # TOMLDecodeError, or an integer of over 4,300 digits
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
    top_known = {"database", *SECTIONS}
    unknown = sorted(set(data) - top_known)
    if unknown:
        raise ConfigError(f"unknown setting {', '.join(unknown)} in {path}")
    for name, default_env in (("imgtags", "IMGTAGS_API_KEY"), ("openai", "OPENAI_API_KEY")):
        if isinstance(data.get(name), dict) and "api_key" in data[name]:
            raise ConfigError("keep the API key out of the config file: set it in the environment "
                              f"variable named by {name}.api_key_env (default {default_env})")
    kwargs: dict[str, Any] = {"source": path}
    for name, cls in SECTIONS.items():
        kwargs[name] = _section(cls, data.get(name, {}), name)
    if kwargs["writeback"].mode not in WRITEBACK_MODES:
        raise ConfigError(f"writeback.mode must be one of {', '.join(WRITEBACK_MODES)}")
    if kwargs["writeback"].sidecar_name not in ("ext", "base"):
        raise ConfigError("writeback.sidecar_name must be \"ext\" (IMG.JPG.xmp) or \"base\" (IMG.xmp)")
    checks.library(kwargs["library"])
    base = path.parent if path is not None else None
    kwargs["library"] = dataclasses.replace(
        kwargs["library"], roots=tuple(_beside(r, base) for r in kwargs["library"].roots))
    if kwargs["writeback"].sidecar_dir:
        kwargs["writeback"] = dataclasses.replace(
            kwargs["writeback"], sidecar_dir=_beside(kwargs["writeback"].sidecar_dir, base))
    if os.environ.get("IMGTAGS_BASE_URL"):
        checks.base_url(checks.text(os.environ["IMGTAGS_BASE_URL"], "IMGTAGS_BASE_URL"), "IMGTAGS_BASE_URL")
    if kwargs["analysis"].analyzer not in ("offline", "openai"):
        variable = kwargs["imgtags"].api_key_env
        checks.api_key(os.environ.get(variable) or None, variable)
    if "CATALOG_ENRICHERS" in os.environ:  # for one run: "places,text"; empty turns them all off
        names = tuple(n.strip() for n in os.environ["CATALOG_ENRICHERS"].split(",") if n.strip())
        kwargs["analysis"] = dataclasses.replace(kwargs["analysis"],
                                                 enrichers=_enrichers(names, "CATALOG_ENRICHERS"))
    if database is not None:
        kwargs["database"] = _database(str(database), "--db", None)
    elif os.environ.get("CATALOG_DB"):
        kwargs["database"] = _database(os.environ["CATALOG_DB"], "CATALOG_DB", None)
    elif "database" in data:
        kwargs["database"] = _database(data["database"], "database", base)
    config = Config(proxies=proxies.from_environment(os.environ), **kwargs)
    _check_routing(config)
    if config.analysis.analyzer == "openai":  # missing or malformed: say so now, exit 2
        config.openai_model(), config.openai_base_url()
        checks.api_key(config.openai_api_key(), config.openai.api_key_env)
        config.proxies.proxy_for(config.openai_base_url())  # a proxy the requests would need must be usable
    if config.analyzer_name() == "imgtags":
        config.proxies.proxy_for(config.imgtags_base_url())  # a proxy the key would need must be usable
    return config.using(config.analysis.analyzer)
