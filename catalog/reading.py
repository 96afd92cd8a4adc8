"""Reading the catalogue fast: a read-only sqlite3 connection without sqlite-utils (and numpy) or migrations."""

from __future__ import annotations

import os
import sqlite3

from catalog.errors import CatalogError, DatabaseUnusable


def connect(path) -> sqlite3.Connection:
    """The catalogue at `path`, read-only. Missing: a CatalogError saying to scan first; locked,
    damaged or not a database: DatabaseUnusable. A table it lacks shows up as the query runs."""
    if not os.path.exists(path):
        raise CatalogError(f"no catalogue at {path} yet: run `catalog scan` first")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1")
    except sqlite3.DatabaseError as exc:
        raise DatabaseUnusable.explain(path, exc) from None
    return conn


def ask(path, question):
    """`question(conn)` asked over a read-only connection; a catalogue from before a table the
    question reads (an older version's) is brought up to date by `catalog.db.open_db` first."""
    conn = connect(path)
    try:
        return question(conn)
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
    finally:
        conn.close()
    from catalog.db import open_db

    open_db(path, create=False).close()
    conn = connect(path)
    try:
        return question(conn)
    finally:
        conn.close()
