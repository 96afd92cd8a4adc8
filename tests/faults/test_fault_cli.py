"""The command line against hostile settings, damaged or locked databases, unknown options and escape sequences."""

from __future__ import annotations

import json
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from audit import crashes, run_cli
from PIL import Image

# Any C0 control but newline and tab, DEL, any C1 control, bidi controls: none may reach a terminal.
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
TITLE, CLEAR, CLIPBOARD = "\x1b]0;owned\x07", "\x1b[2J\x1b[H", "\x1b]52;c;ZWNobyBvd25lZA==\x07"
RLO, C1_CSI = "\u202e", "\x9b31m"


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def one_line_error(result, code: int) -> str:
    """The note for a refused input: its exit status and how many lines it printed on stderr."""
    assert result.returncode == code, result.stderr
    assert len(lines(result.stderr)) == 1 and result.stderr.startswith("catalog: error: "), result.stderr
    assert not result.stdout
    n = len(lines(result.stderr))
    return f"exit {result.returncode}, {n} line"


def make_photo(path: Path, colour=(200, 120, 40), size=(96, 64)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, quality=85)
    return path


@pytest.fixture
def catalogue(tmp_path):
    """A scanned library of three photos and the environment that points the CLI at it."""
    root = tmp_path / "photos"
    for i, name in enumerate(("beach.jpg", "city.jpg", "dog.jpg")):
        make_photo(root / name, colour=(60 * i, 100, 200 - 50 * i))
    env = {"CATALOG_DB": str(tmp_path / "c.db")}
    result = run_cli("scan", root, env=env)
    assert result.returncode == 0, result.stderr
    return tmp_path / "c.db", root, env


CONFIG_CASES = {
    "nan": ("[analysis]\ntimeout_seconds = nan\n", "analysis.timeout_seconds"),
    "inf": ("[analysis]\ntimeout_seconds = inf\n", "analysis.timeout_seconds"),
    "huge-int": ("[analysis]\nconcurrency = 9223372036854775808\n", "analysis.concurrency"),
    "huge-batch": ("[schedule]\nbatch_size = 100000000000\n", "schedule.batch_size"),
    "5000-digit-int": ("[scan]\nhash_workers = " + "9" * 5000 + "\n", "not valid TOML"),
    "bad-cron": ('[schedule]\ncron = "0 2 * *"\n', "schedule.cron"),
    "never-cron": ('[schedule]\ncron = "0 0 30 2 *"\n', "schedule.cron"),
    "bad-zone": ('[schedule]\ntimezone = "Europe/Atlantis"\n', "schedule.timezone"),
    "file-url": ('[imgtags]\nbase_url = "file:///etc/passwd"\n', "imgtags.base_url"),
    "empty-parent": ('[writeback]\nhierarchy_parent = ""\n', "writeback.hierarchy_parent"),
    "max-edge-10": ("[analysis]\nmax_edge = 10\n", "smallest that works is 64"),
    "tiny-upload": ("[analysis]\nmax_upload_bytes = 1000\n", "smallest that works is 32,768"),
    "empty-roots": ('[library]\nroots = [""]\n', "library.roots"),
    "no-extensions": ("[library]\ninclude_extensions = []\n", "library.include_extensions"),
    "escape-in-root": ('[library]\nroots = ["/p\\u001b]0;owned\\u0007"]\n', "library.roots"),
}


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_hostile_setting_refused_at_load(tmp_path, case, figures):
    """A setting TOML accepts but the program cannot use: exit 2 with one line naming the key, before any work."""
    text, named = CONFIG_CASES[case]
    (tmp_path / "c.toml").write_text(text)
    result = run_cli("--config", tmp_path / "c.toml", "scan", tmp_path, env={"CATALOG_DB": str(tmp_path / "c.db")})
    figures.crashes = crashes(result)
    figures.note = one_line_error(result, 2)
    assert named in result.stderr and not RAW_CONTROL.search(result.stderr)
    assert not (tmp_path / "c.db").exists()  # refused before the database was even created


def test_hostile_base_url_in_the_environment(tmp_path, figures):
    """IMGTAGS_BASE_URL=file:///etc/passwd is refused like the setting it overrides."""
    result = run_cli("analyze", env={"CATALOG_DB": str(tmp_path / "c.db"), "IMGTAGS_BASE_URL": "file:///etc/passwd",
                                     "IMGTAGS_API_KEY": "k"})
    figures.crashes = crashes(result)
    figures.note = one_line_error(result, 2)
    assert "IMGTAGS_BASE_URL" in result.stderr


def test_database_locked_by_another_program(catalogue, figures):
    """Another connection holds BEGIN EXCLUSIVE on a rollback-journal catalogue: one line after the wait."""
    db, _, env = catalogue
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode=DELETE")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
         "c.execute('BEGIN EXCLUSIVE'); c.execute('UPDATE runs SET message = 1'); print('held', flush=True); "
         "sys.stdin.read()", str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        result = run_cli("search", "beach", env=env, timeout=60)
        seconds = time.monotonic() - started
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    figures.crashes = crashes(result)
    figures.note = one_line_error(result, 1) + f", after {seconds:.1f} s"
    assert "is locked by another program" in result.stderr


def test_wal_catalogue_stays_readable_while_locked(catalogue, figures):
    """In WAL mode (the default) a foreign BEGIN EXCLUSIVE does not stop stats, search or duplicates."""
    db, _, env = catalogue
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    conn.execute("UPDATE runs SET message = 'held'")
    try:
        started = time.monotonic()
        results = [run_cli(*cmd, env=env, timeout=60) for cmd in (("stats",), ("search", "beach"), ("duplicates",))]
        seconds = time.monotonic() - started
    finally:
        conn.rollback()
        conn.close()
    figures.crashes = sum(crashes(r) for r in results)
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]
    figures.note = f"3 readers answered in {seconds:.1f} s"


@pytest.mark.parametrize("damage", ["garbage", "truncated", "damaged-page"])
def test_corrupt_database(catalogue, damage, figures):
    """A database of garbage bytes, cut short, or with a page overwritten: each command says so in one line."""
    db, root, env = catalogue
    data = db.read_bytes()
    rng = random.Random(9)
    if damage == "garbage":
        db.write_bytes(rng.randbytes(len(data)))
    elif damage == "truncated":
        db.write_bytes(data[: len(data) // 3])
    else:
        middle = len(data) // 2 // 4096 * 4096
        db.write_bytes(data[:middle] + rng.randbytes(4096) + data[middle + 4096:])
    commands = [("stats",), ("duplicates",), ("runs",), ("search", "beach"), ("show", root / "beach.jpg"),
                ("scan", root)]
    results = [run_cli(*cmd, env=env, timeout=60) for cmd in commands]
    figures.crashes = sum(crashes(r) for r in results)
    refused = [r for r in results if r.returncode != 0]
    for r in refused:
        assert r.returncode == 1 and len(lines(r.stderr)) == 1, r.stderr
        assert "damaged or not a catalogue" in r.stderr, r.stderr
    if damage != "damaged-page":  # a damaged page may lie where a command never reads
        assert len(refused) == len(commands)
    figures.note = f"{len(refused)} of {len(commands)} commands refused, each exit 1 with 1 line"


def test_database_that_is_a_folder(tmp_path, figures):
    """CATALOG_DB names a folder: exit 2 at load, one line; --db names one: click's own refusal."""
    result = run_cli("stats", env={"CATALOG_DB": str(tmp_path)})
    figures.crashes = crashes(result)
    note = one_line_error(result, 2)
    assert "names a folder" in result.stderr
    flagged = run_cli("--db", tmp_path, "stats", env={})
    figures.crashes += crashes(flagged)
    assert flagged.returncode == 2 and "is a directory" in flagged.stderr
    figures.note = note


def test_database_that_cannot_be_opened(tmp_path, figures):
    """The database's folder is a file, or it lies in a folder nobody may write (chattr +i stops even root)."""
    (tmp_path / "plain-file").write_text("x")
    make_photo(tmp_path / "photos" / "a.jpg")
    results = [run_cli("scan", tmp_path / "photos", env={"CATALOG_DB": str(tmp_path / "plain-file" / "c.db")})]
    locked_dir = tmp_path / "immutable"
    locked_dir.mkdir()
    chattr = shutil.which("chattr")
    frozen = chattr and subprocess.run([chattr, "+i", locked_dir], capture_output=True).returncode == 0
    try:
        if frozen:
            results.append(run_cli("scan", tmp_path / "photos", env={"CATALOG_DB": str(locked_dir / "c.db")}))
    finally:
        if frozen:
            subprocess.run([chattr, "-i", locked_dir], check=True)
    figures.crashes = sum(crashes(r) for r in results)
    notes = [one_line_error(r, 1) for r in results]
    assert "cannot open the catalogue" in results[0].stderr
    if frozen:
        assert "cannot use the catalogue" in results[1].stderr and "can be written" in results[1].stderr
    figures.note = f"{len(results)} cases, each {notes[0]}" + ("" if frozen else " (chattr unavailable)")


def test_unknown_search_option(catalogue, figures):
    """`catalog search sunset --colr navy` is a usage error with click's suggestion; `beach -people` still excludes."""
    _, _, env = catalogue
    typo = run_cli("search", "sunset", "--colr", "navy", env=env)
    exclusion = run_cli("search", "beach", "-people", env=env)
    after_dashes = run_cli("search", "--", "beach", "--colr", env=env)
    other = run_cli("scan", "--jsn", env=env)
    figures.crashes = sum(crashes(r) for r in (typo, exclusion, after_dashes, other))
    assert typo.returncode == 2 and "No such option '--colr'" in typo.stderr and "'--color'" in typo.stderr
    assert "No photos found" not in typo.stderr
    assert exclusion.returncode == 0 and "No such option" not in exclusion.stderr
    assert after_dashes.returncode == 0 and other.returncode == 2
    figures.note = f"--colr: exit {typo.returncode}, 'Did you mean --color'; -people: exit {exclusion.returncode}"


HOSTILE_NAMES = [f"{TITLE}title.jpg", f"{CLEAR}clear.jpg", f"evil{RLO}gpj.exe.jpg", f"osc52{CLIPBOARD}.jpg"]


@pytest.fixture
def hostile_catalogue(tmp_path):
    """File and folder names, tags, descriptions and a run message full of escape sequences."""
    from catalog.analysis_db import store_analysis
    from catalog.analyzers import Analysis
    from catalog.db import finish_run, open_db, refresh_search_text, start_run

    root = tmp_path / f"lib{TITLE}"
    for i, name in enumerate(HOSTILE_NAMES):
        make_photo(root / name, colour=(50 * i, 90, 40))
    shutil.copy(root / HOSTILE_NAMES[0], root / f"copy{RLO}.jpg")  # a duplicate group
    (root / f"broken{CLIPBOARD}.jpg").write_bytes(b"")  # a file error in stats
    env = {"CATALOG_DB": str(tmp_path / "c.db")}
    scanned = run_cli("-v", "scan", root, env=env, text=False)
    db = open_db(tmp_path / "c.db")
    tags = ("beach", f"sun{TITLE}set", f"x{C1_CSI}", f"r{RLO}l", "forged\ncatalog: ok")
    for row in db.query("SELECT DISTINCT photo_id FROM files WHERE status = 'ok'"):
        store_analysis(db, row["photo_id"], Analysis(provider="imgtags", tags=("beach",), raw={}))
        # Storing cleans answers (analyzers/storable.py); a catalogue written by anything else
        # may still hold raw controls, and printing must be safe on its own.
        db.execute("UPDATE photos SET tags = ?, description = ?, objects = ?, scene = ?, mood = ?, "
                   "raw_response = ? WHERE id = ?",
                   [json.dumps(tags), f"A beach {CLEAR}{CLIPBOARD}", json.dumps([f"obj{TITLE}"]),
                    f"out{C1_CSI}door", f"calm{RLO}", json.dumps({"note": TITLE}), row["photo_id"]])
        refresh_search_text(db, [row["photo_id"]])
    finish_run(db, start_run(db, "analyze"), "partial", {"failed": 1}, f"server said {CLEAR}{CLIPBOARD}")
    db.close()
    return root, env, scanned


def test_escape_sequences_never_reach_the_terminal(hostile_catalogue, figures):
    """Tags, descriptions, file names and messages holding ESC, OSC 52, C1 and bidi controls print escaped."""
    root, env, scanned = hostile_catalogue
    photo = root / HOSTILE_NAMES[0]
    commands = [("search", "beach"), ("search", "beach", "--json"), ("show", photo), ("show", photo, "--json"),
                ("duplicates",), ("duplicates", "--json"), ("stats",), ("stats", "--json"), ("runs",),
                ("runs", "--json"), ("writeback", "--dry-run"), ("-v", "scan", root),
                ("show", root / f"missing{TITLE}.jpg"), ("search", f"--x{TITLE}")]
    results = [run_cli(*cmd, env=env, text=False) for cmd in commands] + [scanned]
    figures.crashes = sum(crashes(r) for r in results)
    dirty = []
    for cmd, r in zip([*commands, ("-v", "scan (first)")], results):
        for stream in (r.stdout, r.stderr):
            text = stream.decode("utf-8")  # valid UTF-8 too: no stray bytes
            if RAW_CONTROL.search(text) or b"\x1b" in stream:
                dirty.append(cmd)
    shown = b"".join(r.stdout + r.stderr for r in results)
    assert not dirty, dirty
    assert b"\\x1b]0;owned\\x07" in shown and b"\\u202e" in shown and b"\\x9b31m" in shown
    assert b"forged\\ncatalog: ok" in shown  # a tag cannot forge a line of output
    import json

    for cmd, r in zip(commands, results):
        if "--json" in cmd:
            assert json.loads(r.stdout), cmd  # still valid JSON
    figures.note = (f"{len(results)} outputs, {sum(len(r.stdout) + len(r.stderr) for r in results):,} bytes, "
                    f"{len(dirty)} with a raw control character")


def test_busy_catalogue(catalogue, figures):
    """Another run holds the catalogue's writer lock: scan, analyze and writeback each refuse in one line."""
    from catalog.lock import exclusive

    db, root, env = catalogue
    with exclusive(db, "run"):
        results = [run_cli(*cmd, env=env, timeout=60) for cmd in (("scan", root), ("analyze",), ("writeback",))]
    figures.crashes = sum(crashes(r) for r in results)
    notes = {one_line_error(r, 1) for r in results}
    assert all("another run is already working on" in r.stderr for r in results)
    figures.note = f"3 commands, each {notes.pop()}"


def test_refused_key(catalogue, figures):
    """The service answers 401 to our key: one line, exit 2, and the key is not in it."""
    from imgtags_server import serve_imgtags

    _, _, env = catalogue
    with serve_imgtags(key="the-right-key") as server:
        result = run_cli("analyze", env={**env, "IMGTAGS_API_KEY": "sk-wrong-key-123",
                                         "IMGTAGS_BASE_URL": server.base_url}, timeout=120)
    figures.crashes = crashes(result)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(lines(result.stderr)) == 1 and "sk-wrong-key-123" not in result.stdout + result.stderr
    figures.key_found = int("sk-wrong-key-123" in result.stdout + result.stderr)
    figures.note = f"exit {result.returncode}, {len(lines(result.stderr))} line, {len(server.requests)} request(s)"
