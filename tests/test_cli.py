"""The command line as a user meets it: help, exit codes, JSON, and messages instead of tracebacks."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest


def run(*args, env=None, db=None):
    full_env = {**os.environ, **(env or {})}
    if db is not None:
        full_env["CATALOG_DB"] = str(db)
    return subprocess.run([sys.executable, "-m", "catalog", *map(str, args)],
                          capture_output=True, text=True, env=full_env, timeout=120)


SUMMARY_KEYS = {"files_seen", "new", "changed", "unchanged", "moved", "missing", "errors",
                "photos", "duplicate_files", "bytes_hashed", "seconds"}


@pytest.mark.parametrize("command", ["", "scan", "duplicates", "similar", "stats", "show", "demo"])
def test_help(command):
    result = run(*([command] if command else []), "--help")
    assert result.returncode == 0
    assert "Usage: catalog" in result.stdout and len(result.stdout) > 200


def test_scan_json_exit_codes_and_reports(photos, tmp_path):
    db = tmp_path / "c.db"
    result = run("scan", "--json", photos / "real", db=db)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert SUMMARY_KEYS <= set(summary)
    assert summary["files_seen"] == 35 and summary["duplicate_files"] == 1 and summary["errors"] == 0
    result = run("scan", photos, db=db)  # edge/ holds broken files: exit 1, still no traceback
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "6 with errors" in result.stdout

    dups = json.loads(run("duplicates", "--json", db=db).stdout)
    assert len(dups) == 1 and sorted(os.path.basename(p) for p in dups[0]["paths"]) == [
        "el_torcal_rocks.jpeg", "el_torcal_rocks.jpg"]
    text = run("duplicates", db=db).stdout
    assert "2 copies" in text and "el_torcal_rocks.jpeg" in text

    stats = json.loads(run("stats", "--json", db=db).stdout)
    assert stats["photos"] == 40 and stats["by_format"]["JPEG"] >= 30
    assert stats["errors_by_kind"] == {"decompression_bomb": 2, "truncated": 2, "empty": 1, "not_an_image": 1}
    assert "truncated" in run("stats", db=db).stdout

    shown = json.loads(run("show", "--json", photos / "real/el_torcal_rocks.jpg", db=db).stdout)
    assert shown["photo"]["camera_make"] == "SONY"
    assert shown["copies"] == [str(photos / "real/dup/el_torcal_rocks.jpeg")]
    assert "camera_model" in run("show", photos / "real/DSCN0010.jpg", db=db).stdout


def test_messages_not_tracebacks(tmp_path, photos):
    db = tmp_path / "c.db"
    result = run("duplicates", db=db)
    assert result.returncode == 1 and "run `catalog scan` first" in result.stderr
    result = run("scan", tmp_path / "no such folder", db=db)
    assert result.returncode == 1 and "is missing" in result.stderr and "Traceback" not in result.stderr
    result = run("scan", db=db)
    assert result.returncode == 2 and "nothing to scan" in result.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[library]\nroots = 3\n")
    result = run("--config", bad, "scan", db=db)
    assert result.returncode == 2 and "library.roots must be a list" in result.stderr
    run("scan", photos / "real", db=db)
    result = run("show", tmp_path / "unknown.jpg", db=db)
    assert result.returncode == 1 and "not in the catalogue" in result.stderr
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    result = run("stats", db=garbage)
    assert result.returncode == 1 and "is damaged or not a catalogue" in result.stderr
    assert "Traceback" not in result.stderr
    result = run("scan", "--no-such-flag")
    assert result.returncode == 2


def test_config_roots_used_when_no_path(photos, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'database = "cat.db"\n[library]\nroots = ["{photos / "real"}"]\n')
    result = run("--config", cfg, "scan", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["files_seen"] == 35
    assert (tmp_path / "cat.db").exists()


def test_demo_library_scans_clean(tmp_path):
    db = tmp_path / "demo.db"
    assert run("demo", tmp_path / "demo").returncode == 0
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "demo").rglob("*") if p.is_file()}
    assert run("demo", tmp_path / "demo").returncode == 0  # rerun leaves files alone
    assert mtimes == {p: p.stat().st_mtime_ns for p in (tmp_path / "demo").rglob("*") if p.is_file()}
    result = run("scan", "--json", tmp_path / "demo", db=db)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["errors"] == 0 and summary["duplicate_files"] == 1 and summary["photos"] >= 10


GROUP_WITH = """
import sqlite3, sys
import click
from catalog.cli import cli

@cli.command()
def boom():
    raise ValueError("unexpected \\x1b]0;owned\\x07 state")

@cli.command()
@click.argument("path")
def locked(path):
    sqlite3.connect(path, timeout=0).execute("CREATE TABLE t (x)")

@cli.command()
def stop():
    raise KeyboardInterrupt

cli(prog_name="catalog")
"""


def run_group(*args, env=None):
    """The real `catalog` group with three extra commands that fail in ways no command should."""
    return subprocess.run([sys.executable, "-c", GROUP_WITH, *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


def test_unexpected_exception_is_one_line_and_traceback_only_with_vv():
    result = run_group("boom")
    assert result.returncode == 70 and not result.stdout
    assert result.stderr == ("catalog: internal error: ValueError: unexpected \\x1b]0;owned\\x07 state; "
                             "run with -vv to see where\n")
    verbose = run_group("-vv", "boom")
    assert verbose.returncode == 70 and "Traceback (most recent call last)" in verbose.stderr
    assert ", in boom" in verbose.stderr and "\x1b" not in verbose.stderr
    assert verbose.stderr.splitlines()[-1].startswith("catalog: internal error: ValueError")


def test_interrupt_keeps_its_message_and_status():
    result = run_group("stop")
    assert result.returncode == 130 and result.stderr.startswith("catalog: interrupted; a rerun continues")
    assert "Traceback" not in result.stderr


def test_a_locked_database_anywhere_in_a_command_is_one_line(tmp_path):
    """An sqlite3 error that escapes a command (here a real lock) becomes the database's one line."""
    import sqlite3

    db = tmp_path / "c.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("CREATE TABLE x (y)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = run_group("locked", db)
    finally:
        holder.rollback()
        holder.close()
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "is locked by another program" in result.stderr and "Traceback" not in result.stderr


def test_a_closed_pipe_is_not_an_error(photos, tmp_path):
    """`catalog duplicates | head -1`: the reader went away; no traceback, no internal error."""
    db = tmp_path / "c.db"
    run("scan", photos / "real", db=db)
    result = subprocess.run(f"{sys.executable} -m catalog --db {db} stats --json | head -c 10", shell=True,
                            capture_output=True, text=True, timeout=60)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr


def test_os_errors_are_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    result = run("scan", tmp_path, db=tmp_path / "file" / "c.db")
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr


def test_duplicates_lists_the_biggest_sets_and_says_how_many_more(photos, tmp_path):
    """At 1M photos there are tens of thousands of duplicate sets: a page, biggest waste first,
    then one line with the rest (`--limit`, 0 for all)."""
    import shutil

    db = tmp_path / "c.db"
    real = photos / "real"
    for name in ("landscape_1.jpg", "jolla.jpg", "hopper.gif"):
        shutil.copy(real / name, real / f"copy_of_{name}")
    assert run("scan", real, db=db).returncode == 0
    every = json.loads(run("duplicates", "--json", "--limit", "0", db=db).stdout)
    assert len(every) == 4
    waste = [(g["copies"] - 1) * g["size"] for g in every]
    assert waste == sorted(waste, reverse=True)
    text = run("duplicates", "--limit", "2", db=db).stdout
    assert text.count(" copies, ") == 2 and every[0]["paths"][0] in text and every[2]["paths"][0] not in text
    assert text.splitlines()[-1].startswith("... and 2 more duplicate sets: 4 photos held at 8 paths waste ")
    assert "more" not in run("duplicates", db=db).stdout  # 4 sets: the default 20 shows them all
    assert len(json.loads(run("duplicates", "--json", "--limit", "1", db=db).stdout)) == 1
    assert run("duplicates", "--limit", "-1", db=db).returncode == 2


def test_stats_and_duplicates_start_light_and_upgrade_an_older_catalogue(photos, tmp_path):
    """stats and duplicates read over plain sqlite3 (no sqlite-utils, numpy, Pillow or Prefect to
    import, nor the other commands' modules); a catalogue made before m014's counters is brought up
    to date first, then counted right."""
    import sqlite_utils

    from catalog.schema import migrations

    db = tmp_path / "c.db"
    assert run("scan", photos / "real", db=db).returncode == 0
    expected = json.loads(run("stats", "--json", db=db).stdout)
    old = tmp_path / "old.db"  # the same library as m012 left it: no counters, no duplicate_sets
    migrations.apply(sqlite_utils.Database(old), stop_before="m014_library_counts")
    with sqlite3.connect(old) as conn:
        conn.execute("ATTACH ? AS new", [str(db)])
        for table in ("photos", "files"):
            columns = ", ".join(r[1] for r in conn.execute(f"PRAGMA main.table_info({table})"))
            conn.execute(f"INSERT INTO main.{table} ({columns}) SELECT {columns} FROM new.{table}")
    assert json.loads(run("stats", "--json", db=old).stdout) == expected
    assert json.loads(run("duplicates", "--json", db=old).stdout) == json.loads(
        run("duplicates", "--json", db=db).stdout)
    for command in ("stats", "duplicates"):
        code = ("import sys; from catalog.cli import main; sys.argv = ['catalog', %r]\n"
                "try:\n    main()\nexcept SystemExit:\n    pass\n"
                "print('HEAVY', [m for m in ('sqlite_utils', 'numpy', 'PIL.Image', 'prefect', 'httpx', "
                "'catalog.commands.run', 'catalog.commands.analyze') if m in sys.modules])" % command)
        out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "CATALOG_DB": str(db)},
                             capture_output=True, text=True, timeout=60)
        assert "HEAVY []" in out.stdout, out.stdout + out.stderr
