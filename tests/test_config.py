"""Settings: lookup order, validation with messages a user can act on, env overrides."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from catalog.config import DEFAULT_EXCLUDE, load_config
from catalog.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.toml"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_any_file(tmp_path):
    config = load_config()
    assert config.source is None
    assert config.database == tmp_path / "xdg-data" / "catalog" / "catalog.db"
    assert config.library.follow_symlinks is False
    assert set(DEFAULT_EXCLUDE) >= {".*", "@eaDir", "#recycle", "#snapshot", "lost+found", ".Trash-*", "*.tmp"}


def test_lookup_order(tmp_path, monkeypatch):
    default = tmp_path / "xdg-config" / "catalog" / "config.toml"
    default.parent.mkdir(parents=True)
    write(default, '[library]\nroots = ["/default"]\n')
    assert load_config().library.roots == ("/default",)
    env_file = write(tmp_path / "env.toml", '[library]\nroots = ["/env"]\n')
    monkeypatch.setenv("CATALOG_CONFIG", str(env_file))
    assert load_config().library.roots == ("/env",)
    explicit = write(tmp_path / "explicit.toml", '[library]\nroots = ["/explicit"]\n')
    assert load_config(explicit).library.roots == ("/explicit",)


def test_database_relative_to_config_and_env_override(tmp_path, monkeypatch):
    cfg = write(tmp_path / "c.toml", 'database = "data/cat.db"\n')
    assert load_config(cfg).database == tmp_path / "data" / "cat.db"
    monkeypatch.setenv("CATALOG_DB", str(tmp_path / "other.db"))
    assert load_config(cfg).database == tmp_path / "other.db"


def test_extensions_case_insensitive(tmp_path):
    cfg = write(tmp_path / "c.toml", '[library]\ninclude_extensions = ["JPG", ".Png"]\n')
    assert load_config(cfg).library.include_extensions == (".jpg", ".png")


@pytest.mark.parametrize("text, message", [
    ('[library]\nroots = "/photos"\n', "library.roots must be a list of strings"),
    ('[library]\nfollow_symlink = true\n', "unknown setting library.follow_symlink"),
    ('[scan]\nhash_workers = 0\n', "scan.hash_workers must be a positive whole number"),
    ('nonsense = 1\n', "unknown setting nonsense"),
    ('[library\n', "is not valid TOML"),
])
def test_bad_config_gets_clear_message(tmp_path, text, message):
    cfg = write(tmp_path / "c.toml", text)
    with pytest.raises(ConfigError) as exc:
        load_config(cfg)
    assert message in str(exc.value)


def test_missing_explicit_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_example_config_is_valid_and_complete(tmp_path):
    """config.example.toml loads, and documents every setting the code knows."""
    import dataclasses

    from catalog.config import SECTIONS

    config = load_config(EXAMPLE)
    data = tomllib.loads(EXAMPLE.read_text())
    for name, cls in SECTIONS.items():
        assert set(data[name]) == {f.name for f in dataclasses.fields(cls)}, name
    assert config.library.exclude == DEFAULT_EXCLUDE
