"""Hostile answers and bad nights in the analysis stage: every paid answer kept, nothing paid twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from audit import answers_lost, charged, crashes, key_places, paid_twice, run_cli
from imgtags_server import FAIL_422, FAIL_500, Canned, serve_imgtags
from PIL import Image

KEY = "sk-live-7f3a9c1e-not-for-logs"
N = 4


def make_library(root: Path, n: int = N) -> Path:
    """n distinct small JPEGs in a folder with a space in its name."""
    folder = root / "lib" / "day one"
    folder.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (64 + i, 48), (40 * i % 256, 90, 200 - 30 * i)).save(folder / f"p{i}.jpg", quality=90)
    return root / "lib"


@pytest.fixture
def case(tmp_path):
    """A scanned library, a config pointing at a fresh hostile server, and the env to run the CLI."""
    with serve_imgtags(key=KEY) as server:
        library = make_library(tmp_path)
        config = tmp_path / "config.toml"
        config.write_text("[analysis]\nrequests_per_minute = 6000\nmax_retries = 1\ntimeout_seconds = 5\n"
                          "concurrency = 2\n")
        env = {"CATALOG_DB": str(tmp_path / "c.db"), "CATALOG_CONFIG": str(config),
               "IMGTAGS_API_KEY": KEY, "IMGTAGS_BASE_URL": server.base_url, "CI": "true"}
        scanned = run_cli("scan", library, env=env)
        assert scanned.returncode == 0, scanned.stderr
        yield server, env, library, tmp_path / "c.db"


def answer(**data_and_meta) -> dict:
    """A contract-shaped, charged answer with the given fields in `data` (and `meta`)."""
    meta = data_and_meta.pop("meta", {"tokens_used": 1000, "processing_time_ms": 50})
    return {"success": True, "data": {"tags": ["beach"], "description": "x", **data_and_meta}, "meta": meta}


def rows(db_path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(sql).fetchall()


def check_run(server, env, db_path, figures, *, outputs=()) -> subprocess.CompletedProcess:
    """Analyse, then analyse again: the rerun must buy nothing that was already bought."""
    first = run_cli("analyze", env=env)
    again = run_cli("analyze", env=env)
    texts = [first.stdout, first.stderr, again.stdout, again.stderr, *outputs]
    figures.crashes = crashes(first) + crashes(again)
    figures.answers_lost = answers_lost(server, db_path)
    figures.paid_twice = paid_twice(server)
    figures.key_found = key_places(KEY, texts=texts, files=[db_path])
    assert figures.crashes == 0, first.stderr + again.stderr
    assert figures.answers_lost == 0 and figures.paid_twice == 0 and figures.key_found == 0
    return first


HOSTILE_BODIES = {
    "lone surrogates in every field": '{"success": true, "ignored": "\\udfff", "data": {"tags": ["\\ud800", "sun\\udc00set"],'
    ' "description": "a \\ud83d photo", "objects": ["\\ud800"], "colors": {"dominant": "\\ud800", "palette": ["\\udfff"]},'
    ' "scene": "\\ud800", "mood": "\\udbff", "model": "\\ud800"}, "meta": {"tokens_used": 900, "x": "\\ud800"}}',
    "NUL, ESC, OSC 52 and bidi controls": json.dumps(answer(
        tags=["a\x00b", "\x1b]0;owned\x07title", "\x1b]52;c;ZWNobyBwd25lZA==\x07"],
        description="clear\x1b[2J\x1b[3J screen \u202egnp.exe", objects=["\x9b31m"], scene="\x7f")),
    "huge and special numbers": '{"success": true, "data": {"tags": ["n"]}, "meta": {"tokens_used": 1e300,'
    ' "processing_time_ms": 1180591620717411303424, "other": -Infinity}, "x": NaN}',
    "Infinity and NaN as counts": '{"success": true, "data": {"tags": ["n"]}, "meta": {"tokens_used": Infinity,'
    ' "processing_time_ms": NaN}}',
    "negative and text counts": json.dumps(answer(meta={"tokens_used": -5, "processing_time_ms": "fast"})),
    "100k tags and a 1 MB description": json.dumps(answer(tags=[f"t{i}" for i in range(100_000)],
                                                          description="d" * 1_000_000, objects=["o" * 5000])),
    "900-level nesting in an ignored field": '{"success": true, "data": {"tags": ["deep"], "extra": '
    + "[" * 900 + "]" * 900 + '}, "meta": {"tokens_used": 10}}',
    "the key echoed back everywhere": json.dumps(answer(tags=[KEY, f"Bearer {KEY}"], description=f"key={KEY}",
                                                        objects=[KEY], extra={"auth": f"Bearer {KEY}"})),
    "the key echoed in other letter cases": json.dumps(answer(tags=[KEY.upper(), KEY.title()],
                                                              description=f"KEY={KEY.upper()}",
                                                              extra={KEY.upper(): KEY.swapcase()})),
    "markup and script in every field": json.dumps(answer(
        tags=["<script>alert(1)</script>", "javascript:alert(1)"], description="<img src=x onerror=alert(1)>",
        objects=["[x](javascript:alert(1))"], scene="<b>", mood="</td>")),
    "wrong types in every field": json.dumps({"success": True, "data": {
        "tags": "not a list", "description": ["x"], "objects": {"a": 1}, "colors": "red", "scene": 5,
        "mood": None, "safe_search": [1], "dimensions": "wide"}, "meta": "none"}),
}


@pytest.mark.parametrize("kind", list(HOSTILE_BODIES))
def test_hostile_answer_is_kept_and_never_bought_again(case, kind, figures):
    """A charged 200 with hostile content is stored, storable, and not bought again."""
    server, env, _library, db_path = case
    server.fail_next.extend([Canned(200, HOSTILE_BODIES[kind])] * N)
    first = check_run(server, env, db_path, figures)
    assert first.returncode == 0, first.stderr
    done = rows(db_path, "SELECT tags, description, raw_response, tokens_used, processing_time_ms FROM photos "
                         "WHERE analysis_status = 'done'")
    assert len(done) == N
    for tags, description, raw, tokens, ms in done:
        text = tags + description + (raw or "")
        assert not any(ord(c) < 32 and c not in "\t\n" or 0x7f <= ord(c) <= 0x9f or 0xd800 <= ord(c) <= 0xdfff
                       for c in text)
        assert 0 <= tokens < 2**63 and 0 <= ms < 2**63
        assert len(json.loads(tags)) <= 200 and len(description) <= 10_000
        json.loads(raw)  # still valid JSON (no NaN/Infinity)
    figures.note = f"{N} answers charged, {len(done)} kept; rerun sent {len(server.requests) - N}"


def test_nesting_too_deep_to_parse_is_a_recorded_failure(case, figures):
    """A 200 nested 100,000 levels deep is a failure with a message, not a RecursionError."""
    server, env, _library, db_path = case
    server.fail_next.append(Canned(200, '{"success": true, "data": ' + "[" * 100_000 + "]" * 100_000 + "}"))
    result = run_cli("analyze", env=env)
    figures.crashes = crashes(result)
    figures.answers_lost = answers_lost(server, db_path)
    assert figures.crashes == 0 and result.returncode == 1, result.stderr
    errors = rows(db_path, "SELECT analysis_error, attempts FROM photos WHERE analysis_status = 'failed'")
    assert len(errors) == 1 and "nested too deeply" in errors[0][0] and errors[0][1] == 1
    figures.note = f"1 failure recorded ({errors[0][0][:40]}…), {N - 1} analysed"


def test_a_photo_that_cannot_be_stored_fails_alone(case, figures):
    """SQLite refusing one photo's update fails that photo with a message; the run goes on."""
    server, env, _library, db_path = case
    victim = rows(db_path, "SELECT id FROM photos ORDER BY id LIMIT 1")[0][0]
    with sqlite3.connect(db_path) as conn:
        conn.execute(f"CREATE TRIGGER refuse BEFORE UPDATE OF tags ON photos WHEN NEW.id = '{victim}' "
                     "BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
    result = run_cli("analyze", env=env)
    figures.crashes = crashes(result)
    assert figures.crashes == 0 and result.returncode == 1, result.stderr
    failed = rows(db_path, "SELECT id, analysis_error, raw_response FROM photos WHERE analysis_status = 'failed'")
    assert [f[0] for f in failed] == [victim] and "could not be stored" in failed[0][1]
    assert json.loads(failed[0][2])["success"] is True  # the paid answer is kept with the failure
    assert rows(db_path, "SELECT COUNT(*) FROM photos WHERE analysis_status = 'done'")[0][0] == N - 1
    figures.answers_lost = answers_lost(server, db_path)
    assert figures.answers_lost == 0
    figures.note = f"1 photo failed, its answer kept raw; {N - 1} stored"


def test_moved_file_is_retried_after_the_rescan(case, figures):
    """A file moved between scan and analysis spends no attempt and is analysed after the rescan."""
    server, env, library, db_path = case
    src = library / "day one" / "p0.jpg"
    dest = library / "moved" / "p0.jpg"
    dest.parent.mkdir()
    src.rename(dest)
    first = run_cli("analyze", env=env)
    failed = rows(db_path, "SELECT analysis_error, attempts, analysis_permanent FROM photos "
                           "WHERE analysis_status = 'failed'")
    assert len(failed) == 1 and failed[0][1:] == (0, 0) and "later run" in failed[0][0], failed
    assert run_cli("scan", library, env=env).returncode == 0
    second = run_cli("analyze", env=env)
    figures.crashes = crashes(first) + crashes(second)
    figures.paid_twice = paid_twice(server)
    figures.answers_lost = answers_lost(server, db_path)
    assert rows(db_path, "SELECT COUNT(*) FROM photos WHERE analysis_status = 'done'")[0][0] == N
    assert figures.paid_twice == 0 and figures.answers_lost == 0
    figures.note = "failed without an attempt, analysed after the rescan"


def test_retry_failed_retries_only_failed_photos(case, figures):
    """--retry-failed gives 422-refused photos one more try and never re-buys done ones."""
    server, env, _library, db_path = case
    server.fail_next.extend([FAIL_422, FAIL_422])
    first = run_cli("analyze", env=env)
    assert first.returncode == 1
    assert rows(db_path, "SELECT COUNT(*) FROM photos WHERE analysis_permanent = 1")[0][0] == 2
    plain = run_cli("analyze", "--json", env=env)
    assert json.loads(plain.stdout)["pending"] == 0  # permanent: a plain rerun leaves them alone
    retried = run_cli("analyze", "--retry-failed", "--json", env=env)
    figures.crashes = crashes(first) + crashes(retried)
    figures.paid_twice = paid_twice(server)
    assert retried.returncode == 0 and json.loads(retried.stdout)["analysed"] == 2
    assert figures.paid_twice == 0 and len(charged(server)) == N
    figures.note = f"{len(server.requests)} requests for {N} photos, 2 of them retried"


def test_server_errors_spend_no_attempt(case, figures):
    """Night after night of HTTP 500 never uses up a photo's attempts."""
    server, env, _library, db_path = case
    for _ in range(4):  # more nights than max_attempts (3)
        server.fail_next.extend([FAIL_500] * 50)
        result = run_cli("analyze", env=env)
        figures.crashes += crashes(result)
        server.fail_next.clear()
    attempts = rows(db_path, "SELECT MAX(attempts), MIN(analysis_permanent) FROM photos")[0]
    final = run_cli("analyze", "--json", env=env)
    assert attempts == (0, 0) and json.loads(final.stdout)["analysed"] == N, final.stdout
    assert figures.crashes == 0
    figures.note = f"4 nights of 500s: max attempts spent {attempts[0]}; all {N} analysed on the 5th"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_analyze_within_seconds_keeping_answers(case, sig, figures):
    """SIGTERM/SIGINT during a slow analysis: out in seconds, answers kept, run marked interrupted."""
    server, env, _library, db_path = case
    Path(env["CATALOG_CONFIG"]).write_text("[analysis]\nrequests_per_minute = 6000\nconcurrency = 1\n")
    server.latency = 0.5
    proc = subprocess.Popen([sys.executable, "-m", "catalog", "analyze"], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while sum(1 for r in server.requests if r.paid) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.latency = 120  # the rest hang: a stop must not wait for them
    time.sleep(1.5)
    sent = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - sent
    figures.crashes = int("Traceback" in err or proc.returncode < 0)
    figures.answers_lost = answers_lost(server, db_path)
    figures.key_found = key_places(KEY, texts=[out, err], files=[db_path])
    # out long before the hung answers (120 s); the bound leaves room for a loaded 2-core CI
    assert proc.returncode == 130 and took < 15, (proc.returncode, took, err)
    assert figures.crashes == 0 and figures.answers_lost == 0 and figures.key_found == 0
    status = rows(db_path, "SELECT status FROM runs ORDER BY id DESC LIMIT 1")[0][0]
    assert status == "interrupted"
    server.latency = 0
    rerun = run_cli("analyze", env=env)
    assert rerun.returncode == 0 and paid_twice(server) == 0
    figures.note = f"exit 130 in {took:.1f} s; rerun paid for nothing twice"


@pytest.mark.slow
def test_catalog_run_buys_each_photo_once_whatever_the_answers(case, figures):
    """`catalog run` (Prefect) over hostile answers and a refusing database buys each photo once."""
    server, env, library, db_path = case
    server.fail_next.extend([Canned(200, HOSTILE_BODIES["lone surrogates in every field"])] * N)
    victim = rows(db_path, "SELECT id FROM photos ORDER BY id LIMIT 1")[0][0]
    with sqlite3.connect(db_path) as conn:
        conn.execute(f"CREATE TRIGGER refuse BEFORE UPDATE OF tags ON photos WHEN NEW.id = '{victim}' "
                     "BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
    result = run_cli("run", library, env=env)
    figures.crashes = crashes(result)
    figures.answers_lost = answers_lost(server, db_path)
    figures.paid_twice = paid_twice(server)
    figures.key_found = key_places(KEY, texts=[result.stdout, result.stderr], files=[db_path])
    assert result.returncode == 1 and figures.crashes == 0, result.stderr
    assert sum(charged(server).values()) == N and figures.paid_twice == 0 and figures.answers_lost == 0
    assert figures.key_found == 0
    figures.note = f"{N} photos, {sum(charged(server).values())} answers bought (was 10 for 4)"


@pytest.mark.slow
def test_sigterm_stops_catalog_run_within_seconds(case, figures):
    """SIGTERM during `catalog run`'s analysis: out in seconds, answers kept, run marked interrupted."""
    server, env, library, db_path = case
    Path(env["CATALOG_CONFIG"]).write_text("[analysis]\nrequests_per_minute = 6000\nconcurrency = 1\n")
    server.latency = 120  # every answer hangs: the run is waiting on the network when stopped
    proc = subprocess.Popen([sys.executable, "-m", "catalog", "run", str(library)], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not len(server.requests) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    took = time.monotonic() - sent
    figures.crashes = int("Traceback" in err or proc.returncode < 0)
    # out long before the hung answers (120 s); measured 3.6 s here, the bound leaves room for a loaded CI
    assert proc.returncode == 130 and took < 20, (proc.returncode, took, err[-2000:])
    status = rows(db_path, "SELECT status FROM runs WHERE command = 'run' ORDER BY id DESC LIMIT 1")[0][0]
    assert status == "interrupted" and figures.crashes == 0
    figures.note = f"exit 130 in {took:.1f} s, run recorded as interrupted"
