"""Never pay twice (issue 13): copies of an analysed photo take its answer, against the loopback ImgTags server."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from imgtags_server import serve_imgtags
from similar_pairs import COPIES, EDITS, variants

from catalog.analyze import analyze
from catalog.analyzers.imgtags import ImgTagsAnalyzer
from catalog.cli import cli
from catalog.config import AnalysisSettings, Config
from catalog.db import open_db
from catalog.scan import scan

KEY = "test-key-reuse"
FAST_HTTP = dict(requests_per_minute=6000, window_seconds=60.0, backoff_base=0.01, timeout=5.0, max_retries=2)
ORIGINALS = ("DSCN0010.jpg", "jolla.jpg", "el_torcal_rocks.jpg", "fujifilm-dx10.jpg")
COPY_KINDS = ("resize50", "jpeg60", "png", "webp")  # four copies of each original: resized, re-encoded, converted
EDIT_KINDS = ("crop3",)  # an edit is its own picture: always paid for


def settings(**analysis) -> Config:
    return Config(analysis=AnalysisSettings(**{"requests_per_minute": 6000, "enrichers": (), "concurrency": 4,
                                               **analysis}))


def make_library(base: Path, shared: Path) -> dict[str, list[Path]]:
    """Each original with its copies and an edit, one folder per picture: {original name: [files]}."""
    pictures = {}
    for name in ORIGINALS:
        folder = base / "library" / Path(name).stem
        folder.mkdir(parents=True)
        shutil.copy(shared / "real" / name, folder / name)
        made = variants(shared / "real" / name, folder, {k: COPIES[k] for k in COPY_KINDS})
        edits = variants(shared / "real" / name, folder / "edits", {k: EDITS[k] for k in EDIT_KINDS})
        pictures[name] = [folder / name, *made.values(), *edits.values()]
    return pictures


@pytest.fixture
def server():
    with serve_imgtags(key=KEY) as srv:
        yield srv


@pytest.fixture
def library(tmp_path, shared_photos):
    return make_library(tmp_path, shared_photos)


def imgtags(server) -> ImgTagsAnalyzer:
    return ImgTagsAnalyzer(api_key=KEY, base_url=server.base_url, **FAST_HTTP)


def photo_id(db, path: Path) -> str:
    return db["files"].get(str(path))["photo_id"]


def backend_rows(db) -> dict[str, dict]:
    return {r["photo_id"]: r for r in db.query("SELECT * FROM analyses WHERE kind = 'backend'")}


def test_copies_take_their_originals_answer_one_request_per_distinct_picture(library, tmp_path, server):
    db = open_db(tmp_path / "catalog.db")
    scan(db, Config(), [tmp_path / "library"], progress=False)
    photos = sum(len(files) for files in library.values())
    distinct = len(ORIGINALS) * (1 + len(EDIT_KINDS))
    summary = analyze(db, settings(), analyzer=imgtags(server), progress=False)
    assert len(server.requests) == summary.requests == distinct  # 8 requests for 24 photos
    assert (summary.pending, summary.analysed, summary.reused, summary.failed) == (
        photos, distinct, photos - distinct, 0)
    rows = backend_rows(db)
    assert len(rows) == photos  # every photo is analysed
    for files in library.values():
        ids = [photo_id(db, f) for f in files]
        copies, edits = ids[: 1 + len(COPY_KINDS)], ids[1 + len(COPY_KINDS):]
        paid = [i for i in copies if rows[i]["copied_from"] is None]
        assert len(paid) == 1 and rows[paid[0]]["tokens_used"] > 0  # one of the copies was paid for
        for other in set(copies) - set(paid):  # the others carry its answer, saying so
            row = rows[other]
            assert row["copied_from"] == paid[0] and row["tokens_used"] == 0
            assert (row["tags"], row["description"], row["raw"]) == (
                rows[paid[0]]["tags"], rows[paid[0]]["description"], rows[paid[0]]["raw"])
            photo = db["photos"].get(other)
            assert photo["analysis_status"] == "done" and photo["tags"] == rows[paid[0]]["tags"]
        for edit in edits:  # never for edits
            assert rows[edit]["copied_from"] is None and rows[edit]["tokens_used"] > 0
    counts = json.loads(db.execute("SELECT counts FROM runs ORDER BY id DESC LIMIT 1").fetchone()[0])
    assert counts["reused"] == photos - distinct and counts["requests"] == distinct
    assert analyze(db, settings(), analyzer=imgtags(server), progress=False).pending == 0
    assert len(server.requests) == distinct
    db.close()


def test_with_reuse_off_every_photo_is_requested(library, tmp_path, server):
    db = open_db(tmp_path / "catalog.db")
    scan(db, Config(), [tmp_path / "library"], progress=False)
    photos = sum(len(files) for files in library.values())
    summary = analyze(db, settings(reuse_for_copies=False), analyzer=imgtags(server), progress=False)
    assert len(server.requests) == summary.analysed == photos and summary.reused == 0
    assert db.execute("SELECT COUNT(*) FROM analyses WHERE copied_from IS NOT NULL").fetchone()[0] == 0
    db.close()


def test_a_copy_analysed_before_keeps_its_own_answer_and_reanalyze_pays_again(library, tmp_path, server):
    """The PNG copies are analysed first; the originals and other copies arrive later and take a
    PNG's answer, while each PNG keeps the answer paid for it; --reanalyze asks again for all."""
    db = open_db(tmp_path / "catalog.db")
    pngs = [f for files in library.values() for f in files if f.suffix == ".png"]
    early = tmp_path / "early"
    early.mkdir()
    for png in pngs:  # the copies come first, in a folder of their own
        shutil.move(png, early / png.name)
    scan(db, Config(), [early], progress=False)
    analyze(db, settings(), analyzer=imgtags(server), progress=False)
    assert len(server.requests) == len(ORIGINALS)
    own = {r["photo_id"]: r for r in backend_rows(db).values()}
    scan(db, Config(), [early, tmp_path / "library"], progress=False)
    summary = analyze(db, settings(), analyzer=imgtags(server), progress=False)
    assert summary.requests == len(ORIGINALS) * len(EDIT_KINDS)  # only the edits
    assert summary.reused == len(ORIGINALS) * len(COPY_KINDS)  # originals, resized, re-encoded, WebP
    rows = backend_rows(db)
    for png_id, row in own.items():
        assert rows[png_id] == row  # untouched: its own paid answer
    assert {r["copied_from"] for r in rows.values() if r["copied_from"]} == set(own)
    before = len(server.requests)
    again = analyze(db, settings(), analyzer=imgtags(server), progress=False, reanalyze=True)
    assert again.reused == 0 and len(server.requests) - before == len(rows)
    assert db.execute("SELECT COUNT(*) FROM analyses WHERE copied_from IS NOT NULL").fetchone()[0] == 0
    db.close()


def test_dry_run_shows_the_requests_saved_and_the_summary_counts_them(library, tmp_path, server, monkeypatch):
    monkeypatch.setenv("IMGTAGS_API_KEY", KEY)
    monkeypatch.setenv("IMGTAGS_BASE_URL", server.base_url)
    config = tmp_path / "config.toml"
    config.write_text("[analysis]\nrequests_per_minute = 6000\nenrichers = []\n")
    base = ["--config", str(config), "--db", str(tmp_path / "catalog.db")]
    runner = CliRunner()
    assert runner.invoke(cli, [*base, "scan", str(tmp_path / "library")]).exit_code == 0
    photos = sum(len(files) for files in library.values())
    distinct = len(ORIGINALS) * (1 + len(EDIT_KINDS))
    dry = runner.invoke(cli, [*base, "analyze", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    data = json.loads(dry.output)
    assert (data["would_send"], data["reused"]) == (distinct, photos - distinct)
    text = runner.invoke(cli, [*base, "analyze", "--dry-run"]).output
    assert f"Would send {distinct} photos" in text and f"{photos - distinct} requests saved" in text
    assert len(server.requests) == 0
    done = runner.invoke(cli, [*base, "analyze"])
    assert done.exit_code == 0, done.output
    assert f"{photos - distinct} copies took their original's answer (no request)" in done.output
    assert f"; {distinct} requests" in done.output and len(server.requests) == distinct
    db = open_db(tmp_path / "catalog.db")
    copy, original = db.execute("SELECT f.path, a.copied_from FROM analyses a JOIN files f ON f.photo_id = a.photo_id "
                                "WHERE a.copied_from IS NOT NULL LIMIT 1").fetchone()
    shown = runner.invoke(cli, [*base, "show", copy]).output
    assert f"copied from photo {original[:12]} (no request)" in shown
    off = tmp_path / "off.toml"
    off.write_text("[analysis]\nreuse_for_copies = false\n")
    db.execute("UPDATE photos SET analysis_status = NULL")
    db.close()
    dry = json.loads(runner.invoke(cli, ["--config", str(off), "--db", str(tmp_path / "catalog.db"),
                                         "analyze", "--dry-run", "--json"]).output)
    assert (dry["would_send"], dry["reused"]) == (photos, 0)


def test_reuse_setting_is_checked(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[analysis]\nreuse_for_copies = "yes"\n')
    result = CliRunner().invoke(cli, ["--config", str(config), "--db", str(tmp_path / "c.db"), "analyze",
                                      "--dry-run"])
    assert result.exit_code == 2
    assert "analysis.reuse_for_copies must be true or false" in result.output
    assert "Traceback" not in result.output
