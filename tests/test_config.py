"""Settings: lookup order, validation with messages a user can act on, env overrides."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from catalog.settings import DEFAULT_EXCLUDE
from catalog.config import load_config
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


def test_missing_explicit_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_example_config_is_valid_and_complete(tmp_path):
    """config.example.toml loads, and documents every setting the code knows."""
    import dataclasses

    from catalog.settings import SECTIONS

    config = load_config(EXAMPLE)
    data = tomllib.loads(EXAMPLE.read_text())
    for name, cls in SECTIONS.items():
        assert set(data[name]) == {f.name for f in dataclasses.fields(cls)}, name
    assert config.library.exclude == DEFAULT_EXCLUDE


@pytest.mark.parametrize("text, message", [
    ('[library]\nroots = "/photos"\n', "library.roots must be a list of strings"),
    ('[library]\nfollow_symlink = true\n', "unknown setting library.follow_symlink"),
    ('[scan]\nhash_workers = 0\n', "scan.hash_workers must be a whole number from 1 to 256"),
    ('nonsense = 1\n', "unknown setting nonsense"),
    ('[library\n', "is not valid TOML"),
    ("[analysis]\ntimeout_seconds = nan\n", "analysis.timeout_seconds must be a number from 1 to 3,600 seconds, not nan"),
    ("[analysis]\ntimeout_seconds = inf\n", "not inf"),
    ("[analysis]\ntimeout_seconds = -inf\n", "not -inf"),
    ("[analysis]\ntimeout_seconds = 0.1\n", "from 1 to 3,600 seconds"),
    ("[analysis]\nconcurrency = 100000000000000000000\n", "analysis.concurrency must be a whole number from 1 to 64"),
    ("[analysis]\nconcurrency = 4.0\n", "analysis.concurrency must be a whole number"),
    ("[analysis]\nconcurrency = true\n", "analysis.concurrency must be a whole number"),
    ("[analysis]\nrequests_per_minute = 9223372036854775808\n", "analysis.requests_per_minute must be"),
    ("[analysis]\nmax_attempts = 4294967296\n", "analysis.max_attempts must be a whole number from 1 to 100"),
    ("[analysis]\nmax_retries = 1000\n", "analysis.max_retries must be a whole number from 0 to 20"),
    ("[analysis]\nmax_tokens = -1\n", "analysis.max_tokens must be a whole number from 0 to"),
    ("[scan]\nhash_workers = 100000\n", "scan.hash_workers must be a whole number from 1 to 256"),
    ('[scan]\ninspector = "dask"\n', 'scan.inspector must be "processes" or "threads", not \'dask\''),
    ("[schedule]\nbatch_size = 10000000\n", "schedule.batch_size must be a whole number from 1 to 10,000"),
    ("[analysis]\nconcurrency = " + "9" * 5000 + "\n", "is not valid TOML"),
    ("[analysis]\nmax_edge = 10\n", "analysis.max_edge = 10 is too small: no photo can be tagged that small; "
                                     "the smallest that works is 64 pixels (or 0, no limit)"),
    ("[analysis]\nmax_upload_bytes = 1000\n", "the smallest that works is 32,768 bytes"),
    ("[analysis]\nmax_upload_bytes = 20000000\n", "analysis.max_upload_bytes must be a whole number from 32,768 "
                                                   "to 10,485,760 bytes"),
    ("[scan]\nmax_image_pixels = 100\n", "refused as decompression bombs; the smallest that works is 1,000,000"),
    ('[schedule]\ncron = "0 2 * *"\n', "schedule.cron is not a cron expression"),
    ('[schedule]\ncron = "61 2 * * *"\n', "schedule.cron is not a cron expression"),
    ('[schedule]\ncron = "every night"\n', "schedule.cron is not a cron expression"),
    ('[schedule]\ncron = "H 2 * * *"\n', "schedule.cron is not a cron expression"),
    ('[schedule]\ncron = ""\n', "schedule.cron is not a cron expression"),
    ('[schedule]\ncron = "0 0 30 2 *"\n', "never comes round"),
    ('[schedule]\ntimezone = "Mars/Olympus_Mons"\n', "schedule.timezone must be an IANA time zone"),
    ('[schedule]\ntimezone = "+02:00"\n', "schedule.timezone must be an IANA time zone"),
    ('[imgtags]\nbase_url = "file:///etc/passwd"\n', "imgtags.base_url must be an http:// or https:// URL with a host"),
    ('[imgtags]\nbase_url = "ftp://example.com/api"\n', "must be an http:// or https:// URL"),
    ('[imgtags]\nbase_url = "http:///api"\n', "must be an http:// or https:// URL with a host"),
    ('[imgtags]\nbase_url = "https://user:pw@example.com/"\n', "must not hold a user name or password"),
    ('[imgtags]\nbase_url = "http://example.com:99999/"\n', "imgtags.base_url is not a valid URL"),
    ('[imgtags]\napi_key_env = "MY KEY"\n', "imgtags.api_key_env must be the name of an environment variable"),
    ('[writeback]\nhierarchy_parent = ""\n', "writeback.hierarchy_parent must name a keyword parent"),
    ('[writeback]\nhierarchy_parent = "  "\n', "writeback.hierarchy_parent must name a keyword parent"),
    ('[writeback]\nhierarchy_parent = "auto|"\n', "writeback.hierarchy_parent must name a keyword parent"),
    ('[writeback]\nhierarchy_parent = "a/b"\n', "must not contain /"),
    ('[library]\nroots = [""]\n', "library.roots has an empty entry"),
    ('[library]\ninclude_extensions = []\n', "library.include_extensions is empty"),
    ('[library]\ninclude_extensions = [".jpg", "."]\n', "library.include_extensions has an entry without"),
    ('[library]\nexclude = ["*"]\n', "library.exclude pattern '*' matches every name"),
    ('[library]\nroots = ["/photos\\u0000/x"]\n', "library.roots holds a control character ('\\x00')"),
    ('[library]\nroots = ["/a\\u001b]0;owned\\u0007"]\n', "holds a control character ('\\x1b')"),
    ('database = ""\n', "database must be a file path"),
])
def test_bad_config_gets_clear_message(tmp_path, text, message):
    """Bad settings, and values TOML accepts but the program cannot use, stop at load naming the key."""
    cfg = write(tmp_path / "c.toml", text)
    with pytest.raises(ConfigError) as exc:
        load_config(cfg)
    assert message in str(exc.value)
    assert exc.value.exit_code == 2 and "\n" not in str(exc.value) and len(str(exc.value)) < 300


def test_edge_values_that_work_are_accepted(tmp_path):
    cfg = write(tmp_path / "c.toml", "[analysis]\nmax_edge = 64\nmax_upload_bytes = 32768\nmax_retries = 0\n"
                "timeout_seconds = 1\nconcurrency = 64\n[schedule]\ncron = \"30 3 * * mon-fri\"\n"
                "timezone = \"Europe/Berlin\"\n[writeback]\nhierarchy_parent = \"machine|auto\"\n"
                "[imgtags]\nbase_url = \"http://127.0.0.1:8080/api/v1\"\n")
    config = load_config(cfg)
    assert (config.analysis.max_edge, config.analysis.max_upload_bytes, config.analysis.max_retries) == (64, 32768, 0)
    assert config.analysis.timeout_seconds == 1.0 and isinstance(config.analysis.timeout_seconds, float)
    assert config.schedule.timezone == "Europe/Berlin" and config.writeback.hierarchy_parent == "machine|auto"
    assert load_config(write(tmp_path / "d.toml", "[analysis]\nmax_edge = 0\n")).analysis.max_edge == 0


def test_a_new_number_setting_is_bounded_without_a_line_of_its_own():
    """Settings other sessions add (max_answer_bytes, breaker_failures...) get the generic bounds."""
    from catalog import config_checks as checks

    assert checks.number(5, 5, "analysis.breaker_failures") == 5
    assert checks.number(0, 0, "analysis.some_budget") == 0
    assert checks.number(900, 900.0, "analysis.max_rate_limit_wait_seconds") == 900.0
    for value, default in [(2**31, 5), (0, 5), (float("nan"), 900.0), (float("inf"), 900.0), (1e300, 900.0),
                           (-1, 0), ("5", 5), (True, 5)]:
        with pytest.raises(ConfigError, match="analysis.new_setting must be"):
            checks.number(value, default, "analysis.new_setting")


def test_cron_is_judged_by_prefects_own_parser():
    """What we accept, Prefect's CronSchedule accepts, and what it refuses we refuse."""
    from prefect.client.schemas.schedules import CronSchedule

    from catalog.config_checks import cron

    for expression in ["0 2 * * *", "*/15 * * * *", "0 2 * * mon-fri", "@daily", "0 0 1 jan *", "* * * * * *",
                       "0 2 * *", "61 * * * *", "0 2 * * 8", "H 2 * * *", "R 2 * * *", "0 2 * * * 2030 1",
                       "every night", "", "0 2 L * *", "0 2 * * 5#2"]:
        try:
            CronSchedule(cron=expression)
            prefect_accepts = True
        except ValueError:
            prefect_accepts = False
        try:
            cron(expression, "schedule.cron")
            we_accept = True
        except ConfigError:
            we_accept = False
        assert we_accept == prefect_accepts, expression


def test_timezone_list_is_prefects(tmp_path):
    from prefect.client.schemas.schedules import CronSchedule

    for zone in ("Europe/Berlin", "UTC", "America/Argentina/Buenos_Aires"):
        CronSchedule(cron="0 2 * * *", timezone=zone)
        assert load_config(write(tmp_path / "c.toml", f'[schedule]\ntimezone = "{zone}"\n')).schedule.timezone == zone


def test_loading_settings_stays_light(tmp_path):
    """Validating a cron must not import Prefect: `catalog search` starts in a fraction of a second."""
    import subprocess
    import sys

    cfg = write(tmp_path / "c.toml", '[schedule]\ncron = "30 3 * * 1-5"\ntimezone = "Europe/Berlin"\n')
    code = (f"import sys; from catalog.config import load_config; load_config({str(cfg)!r}); "
            "print(sorted(m for m in ('prefect', 'httpx', 'PIL', 'sqlite_utils', 'pydantic') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_environment_overrides_are_checked_too(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGTAGS_BASE_URL", "file:///etc/passwd")
    with pytest.raises(ConfigError, match="IMGTAGS_BASE_URL must be an http"):
        load_config()
    monkeypatch.setenv("IMGTAGS_BASE_URL", "http://127.0.0.1:9/api")
    assert load_config().imgtags_base_url() == "http://127.0.0.1:9/api"
    monkeypatch.setenv("IMGTAGS_API_KEY", "sk-secret-123\r\n")
    with pytest.raises(ConfigError) as exc:
        load_config()
    assert "$IMGTAGS_API_KEY" in str(exc.value) and "sk-secret" not in str(exc.value)
    offline = write(tmp_path / "c.toml", '[analysis]\nanalyzer = "offline"\n')
    assert load_config(offline).analysis.analyzer == "offline"  # the key is not used: no reason to refuse
    monkeypatch.setenv("IMGTAGS_API_KEY", "sk-secret-123")
    assert load_config().api_key() == "sk-secret-123"
    monkeypatch.setenv("CATALOG_DB", str(tmp_path))
    with pytest.raises(ConfigError, match="CATALOG_DB names a folder"):
        load_config()
    assert load_config(database=tmp_path / "x.db").database == tmp_path / "x.db"  # --db wins


def test_paths_are_relative_to_the_config_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "conf").mkdir()
    cfg = write(tmp_path / "conf" / "c.toml",
                '[library]\nroots = ["photos", "~/pictures", "/abs"]\n[writeback]\nsidecar_dir = "~/sidecars"\n')
    config = load_config(cfg)
    assert config.library.roots == (str(tmp_path / "conf" / "photos"), str(tmp_path / "home" / "pictures"), "/abs")
    assert config.writeback.sidecar_dir == str(tmp_path / "home" / "sidecars")


@pytest.mark.parametrize("value", ["dask", "tcp://", "http://10.0.0.5:8786", "tcp://10.0.0.5", "tcp://a b:1",
                                   "tcp://user:pw@10.0.0.5:8786", "tcp://10.0.0.5:99999"])
def test_a_bad_task_runner_is_one_line(tmp_path, value):
    with pytest.raises(ConfigError, match="task_runner") as caught:
        load_config(write(tmp_path / "c.toml", f'[schedule]\ntask_runner = "{value}"\n'))
    assert "\n" not in str(caught.value)


def test_task_runner_threads_or_a_scheduler_address(tmp_path):
    assert load_config(write(tmp_path / "a.toml", "")).schedule.dask_address() is None
    config = load_config(write(tmp_path / "b.toml", '[schedule]\ntask_runner = "10.0.0.5:8786"\n'))
    assert config.schedule.dask_address() == "tcp://10.0.0.5:8786"


def test_settings_for_workers_carry_the_key_but_never_show_it(tmp_path, monkeypatch):
    import pickle

    monkeypatch.setenv("IMGTAGS_API_KEY", "Carried-Key-123")
    monkeypatch.setenv("IMGTAGS_BASE_URL", "http://127.0.0.1:9/api/v1")
    carried = load_config(write(tmp_path / "c.toml", "")).for_workers()
    monkeypatch.delenv("IMGTAGS_API_KEY")
    monkeypatch.delenv("IMGTAGS_BASE_URL")
    on_worker = pickle.loads(pickle.dumps(carried))
    assert on_worker.api_key() == "Carried-Key-123" and on_worker.imgtags_base_url() == "http://127.0.0.1:9/api/v1"
    assert "Carried-Key" not in repr(on_worker)
