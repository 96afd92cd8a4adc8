"""The schema's migrations: frozen history that calls no application code, and old catalogues come out as today's."""

from __future__ import annotations

import ast
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlite_utils

import catalog.schema
from catalog import db as catalog_db
from catalog.colors import named_matches
from catalog.settings import Config
from catalog.db import open_db
from catalog.scan import scan
from catalog.schema import migrations

BEFORE_COLORS = "ee46eedb9539981d6deb4d632c941eb22c8d17e3"  # main before m006 and m007 (last: m005)
FILES = ("path", "path_bytes", "root", "folder", "name", "photo_id", "status")


def test_migrations_import_no_application_code():
    """A migration is history: schema.py may not reach code that changes later (only stdlib, sqlite-utils)."""
    tree = ast.parse(Path(catalog.schema.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name.split(".")[0] == "catalog"}, imported


def library_of_odd_names(photos: Path, root: Path) -> Path:
    """Three real photos: a plain name, a literal backslash (`a\\xff.jpg`) and a byte that is not UTF-8."""
    root.mkdir()
    for source, name in (("DSCN0010.jpg", b"DSCN0010.jpg"), ("landscape_1.jpg", b"a\\xff.jpg"),
                         ("jolla.jpg", b"b\xff.jpg")):
        shutil.copy(photos / "real" / source, os.path.join(os.fsencode(root), name))
    return root


def rows(conn: sqlite3.Connection, sql: str) -> set[tuple]:
    return set(conn.execute(sql).fetchall())


def test_a_catalogue_from_before_m006_and_m007_comes_out_as_todays(photos, tmp_path, old_code):
    """Colours derived by today's rule, paths as today's scan writes them, nothing to scan again."""
    library = library_of_odd_names(photos, tmp_path / "lib")
    old_db = tmp_path / "old.db"
    env = {**os.environ, "PYTHONPATH": str(old_code(BEFORE_COLORS)), "CATALOG_DB": str(old_db)}
    for args in (["scan", library], ["analyze"]):  # the old code, offline analyses with palettes
        done = subprocess.run([sys.executable, "-m", "catalog", *map(str, args)], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    with sqlite3.connect(old_db) as conn:
        assert "photo_colors" not in {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}

    migrated = open_db(old_db)
    analysed = migrated.execute("SELECT id, dominant_color, palette FROM photos WHERE palette IS NOT NULL").fetchall()
    assert len(analysed) == 3
    expected = {(name, photo_id, distance) for photo_id, dominant, palette in analysed
                for name, distance in named_matches([dominant, *json.loads(palette)])}
    assert expected and rows(migrated.conn, "SELECT name, photo_id, distance FROM photo_colors") == expected
    again = scan(migrated, Config(), [library], progress=False)
    assert (again.new, again.changed, again.moved, again.missing) == (0, 0, 0, 0)
    migrated.close()

    today = open_db(tmp_path / "today.db")
    scan(today, Config(), [library], progress=False)
    select = f"SELECT {', '.join(FILES)} FROM files"
    with sqlite3.connect(old_db) as conn:
        assert rows(conn, select) == rows(today.conn, select)
        assert len(rows(conn, select)) == 3
        names = {r[0] for r in conn.execute("SELECT name FROM files")}
    assert names == {"DSCN0010.jpg", "a\\\\xff.jpg", "b\\xff.jpg"}  # one text per path (db_text)
    today.close()


def test_colours_are_derived_with_m006_or_not_at_all(tmp_path, monkeypatch):
    """A failure while deriving photo_colors leaves m006 pending, nothing half-made; the next open completes it."""
    path = tmp_path / "c.db"
    old = sqlite_utils.Database(path)
    migrations.apply(old, stop_before="m006_photo_colors")  # a catalogue as m005 left it
    old["photos"].insert({"id": "p1", "first_seen": "2026-01-01", "analysis_status": "done",
                          "dominant_color": "#d32f2f", "palette": '["#d32f2f", "#1976d2"]'})
    old.close()

    def interrupted(db):
        raise KeyboardInterrupt

    monkeypatch.setitem(catalog_db.DERIVED, "m006_photo_colors", interrupted)
    with pytest.raises(KeyboardInterrupt):
        open_db(path)
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        applied = {r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations")}
    assert "photo_colors" not in tables and "m006_photo_colors" not in applied and "analyses" not in tables
    monkeypatch.undo()
    db = open_db(path)
    found = set(db.execute("SELECT name, distance FROM photo_colors").fetchall())
    assert found == set(named_matches(["#d32f2f", "#d32f2f", "#1976d2"])) and {"red", "blue"} <= dict(found).keys()
    db.close()


def test_files_carry_no_index_no_query_needs(db):
    """m015: no index leads with root (a root is a path range), none with photo_id (lookups name a status)."""
    from catalog.ledger import catalogued_count

    indexes = {name: [c[2] for c in db.execute(f"PRAGMA index_info('{name}')").fetchall()]
               for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'files'")}
    assert "files_root_status" not in indexes and not [n for n, cols in indexes.items() if cols[:1] == ["root"]]
    low, high = catalog_db.prefix_range("/lib")
    plan = " ".join(r[-1] for r in db.execute(
        "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM files WHERE path >= ? AND path < ? AND status IN ('ok', 'error')",
        [low, high]).fetchall())
    assert plan.startswith("SEARCH files USING") and "root" not in plan, plan  # never a full table scan
    assert catalogued_count(db, low, high) == 0
    assert "files_photo" not in indexes  # a photo's files are looked up with their status:
    for sql in ("SELECT path FROM files WHERE photo_id = ? AND status = 'ok' ORDER BY path LIMIT 1",
                "SELECT n.path, o.path FROM files n JOIN files o ON o.photo_id = n.photo_id "
                "AND o.status = 'missing' WHERE n.first_seen = ? AND n.status = 'ok'"):
        plan = [r[-1] for r in db.execute(f"EXPLAIN QUERY PLAN {sql}", ["x"]).fetchall()]
        assert any("files_status_photo_size (status=? AND photo_id=?)" in step for step in plan), plan


def test_m015_drops_both_indexes_from_an_existing_catalogue(tmp_path):
    """A catalogue made before m015 loses files_root_status and files_photo when opened, and keeps its rows."""
    path = tmp_path / "old.db"
    old = sqlite_utils.Database(path)
    catalog.schema.migrations.apply(old, stop_before="m015_lean_ledger")
    old.execute("INSERT INTO files (path, root, folder, name, size, mtime_ns, status, first_seen, last_seen) "
                "VALUES ('/lib/a.jpg', '/lib', '/lib', 'a.jpg', 1, 1, 'ok', 'x', 'x')")
    old.conn.commit()
    assert old.execute("SELECT 1 FROM sqlite_master WHERE name = 'files_root_status'").fetchone()
    old.close()
    db = catalog_db.open_db(path)
    assert not db.execute("SELECT 1 FROM sqlite_master WHERE name IN ('files_root_status', 'files_photo')").fetchone()
    assert db.execute("SELECT path FROM files").fetchall() == [("/lib/a.jpg",)]
    db.close()
