"""Settings: TOML file + environment -> frozen dataclasses (catalog/settings.py). The only reader of settings.

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
from pathlib import Path
from typing import Any

from catalog import config_checks as checks
from catalog import proxies
from catalog.errors import ConfigError
from catalog.settings import SECTIONS, Config, default_config_path

WRITEBACK_MODES = ("sidecar", "embed", "both")
INSPECTORS = ("processes", "threads")  # scan.inspector: catalog.inspectors


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
    "schedule.task_runner": checks.task_runner,
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
    if kwargs["scan"].inspector not in INSPECTORS:
        raise ConfigError('scan.inspector must be "processes" or "threads", '
                          f"not {checks.shown(kwargs['scan'].inspector)}")
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
