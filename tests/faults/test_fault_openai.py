"""A local vision server on a bad night, through the real `catalog analyze`: nothing lost, nothing leaked."""

from __future__ import annotations

import io
import sqlite3
import time
from pathlib import Path

import pytest
from audit import charged, crashes, key_places, paid_twice, run_cli
from openai_server import serve_openai
from PIL import Image

KEY = "sk-Live-7F3a9C1e-NOT-for-logs"
MODEL = "llava:7b-test"
N = 4


@pytest.fixture
def case(tmp_path):
    """A scanned library of N photos, `analyzer = "openai"` in a config file, a fresh server, the CLI's env."""
    folder = tmp_path / "lib" / "day one"
    folder.mkdir(parents=True)
    for i in range(N):
        Image.new("RGB", (1600 + i, 1200), (40 * i % 256, 90, 200 - 30 * i)).save(folder / f"p{i}.jpg")
    config = tmp_path / "config.toml"
    with serve_openai(key=KEY) as server:
        config.write_text(f'[analysis]\nanalyzer = "openai"\nmax_retries = 1\n'
                          f'[openai]\nmodel = "{MODEL}"\ntimeout_seconds = 5\nmax_edge = 640\n')
        env = {"CATALOG_DB": str(tmp_path / "c.db"), "CATALOG_CONFIG": str(config), "OPENAI_API_KEY": KEY,
               "OPENAI_BASE_URL": server.base_url, "CI": "true"}
        scanned = run_cli("scan", tmp_path / "lib", env=env)
        assert scanned.returncode == 0, scanned.stderr
        yield server, env, tmp_path / "c.db", config


def rows(db_path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(sql).fetchall()


def kept(db_path: Path) -> int:
    return rows(db_path, "SELECT COUNT(*) FROM photos WHERE analysis_status = 'done' AND provider = 'openai'")[0][0]


def test_happy_path_with_the_key_echoed_back(case, figures):
    """Every photo analysed once by a server that echoes the key; a rerun buys nothing."""
    server, env, db_path, _config = case
    server.default = "echo-key"
    first, again = run_cli("analyze", env=env), run_cli("analyze", env=env)
    outputs = [first.stdout, first.stderr, again.stdout, again.stderr]
    figures.crashes = crashes(first) + crashes(again)
    figures.answers_lost = max(0, len(charged(server)) - kept(db_path))
    figures.paid_twice = paid_twice(server)
    figures.key_found = key_places(KEY, texts=outputs, files=[db_path]) + key_places(
        KEY.lower(), texts=[t.lower() for t in outputs], files=[db_path])
    assert first.returncode == 0 and again.returncode == 0, first.stderr
    assert figures.crashes == figures.answers_lost == figures.paid_twice == figures.key_found == 0
    assert len(server.requests) == N and kept(db_path) == N
    assert all(max(Image.open(io.BytesIO(r.fields["image"]["data"])).size) == 640
               for r in server.requests)
    figures.note = f"{N} of {N} analysed in {len(server.requests)} requests; rerun sent 0; key echoed, found 0 times"


def test_a_refused_key_stops_the_run_with_exit_2(case, figures):
    """HTTP 401: exit 2 with one line, nothing marked failed, no attempt spent."""
    server, env, db_path, _config = case
    result = run_cli("analyze", env={**env, "OPENAI_API_KEY": "sk-wrong-key"})
    figures.crashes = crashes(result)
    figures.key_found = key_places("sk-wrong-key", texts=[result.stdout, result.stderr], files=[db_path])
    failed = rows(db_path, "SELECT COUNT(*), COALESCE(SUM(attempts), 0) FROM photos WHERE analysis_status = 'failed'")
    assert result.returncode == 2 and "refused the API key (HTTP 401" in result.stderr
    assert failed == [(0, 0)] and figures.crashes == 0 and figures.key_found == 0
    assert len(server.requests) == 1  # the photos queued behind it were not sent
    assert len(result.stderr.strip().splitlines()) <= 2
    figures.note = f"exit 2 after {len(server.requests)} request(s); 0 of {N} failed"


def test_an_answer_without_json_is_a_failure_retried_on_a_later_run(case, figures):
    """No JSON at all: recorded as a failure spending one attempt; the next run analyses it."""
    server, env, db_path, _config = case
    server.default = "nojson"
    first = run_cli("analyze", env=env)
    failed = rows(db_path, "SELECT analysis_error, attempts, analysis_permanent FROM photos "
                           "WHERE analysis_status = 'failed'")
    server.default = "prose"
    again = run_cli("analyze", env=env)
    figures.crashes = crashes(first) + crashes(again)
    figures.answers_lost = max(0, len(charged(server)) - kept(db_path))
    assert first.returncode == 1 and again.returncode == 0, again.stderr
    assert len(failed) == N and all(a == 1 and p == 0 and "without a JSON analysis" in e for e, a, p in failed)
    assert kept(db_path) == N and figures.crashes == 0 and figures.answers_lost == 0
    figures.note = f"{N} failures recorded (1 attempt each), all {N} analysed on the next run"


def test_structured_output_refused_costs_one_request_per_run(case, figures):
    """A server without response_format: one 400, then every photo without it."""
    server, env, db_path, _config = case
    server.refuse = ("response_format",)
    result = run_cli("analyze", env=env)
    figures.crashes = crashes(result)
    figures.answers_lost = max(0, len(charged(server)) - kept(db_path))
    statuses = [r.status for r in server.requests]
    assert result.returncode == 0 and statuses == [400] + [200] * N, result.stderr
    assert "does not take response_format" in result.stderr and kept(db_path) == N
    figures.note = f"{len(statuses)} requests for {N} photos (1 refusal)"


def test_a_missing_model_setting_is_exit_2_before_any_request(case, figures):
    """analyzer = "openai" without openai.model: one clear line, exit 2, nothing sent."""
    server, env, _db_path, config = case
    config.write_text('[analysis]\nanalyzer = "openai"\n')
    result = run_cli("analyze", env=env)
    figures.crashes = crashes(result)
    assert result.returncode == 2 and "needs a model: set openai.model" in result.stderr
    assert len(server.requests) == 0 and figures.crashes == 0
    figures.note = "exit 2, 0 requests sent"


def test_a_model_that_is_not_pulled_stops_the_run(case, figures):
    """HTTP 404 (Ollama: model not found): exit 2 naming openai.model; no photo failed."""
    server, env, db_path, _config = case
    server.default = "404"
    result = run_cli("analyze", env=env)
    figures.crashes = crashes(result)
    failed = rows(db_path, "SELECT COUNT(*) FROM photos WHERE analysis_status = 'failed'")[0][0]
    assert result.returncode == 2 and "check openai.model" in result.stderr and failed == 0
    assert len(server.requests) == 1
    figures.note = f"exit 2 after {len(server.requests)} request(s); 0 of {N} failed"


def test_an_answer_slower_than_the_timeout_spends_no_attempt(case, figures):
    """One photo's answers come slower than timeout_seconds: it fails without spending an attempt, the rest go on."""
    server, env, db_path, config = case
    server.slow_seconds = 10
    server.modes.extend(["slow", "slow"])  # the first photo, and its one retry
    config.write_text(config.read_text().replace("timeout_seconds = 5", "timeout_seconds = 1"))
    started = time.monotonic()
    result = run_cli("analyze", env=env)
    seconds = time.monotonic() - started
    figures.crashes = crashes(result)
    failed = rows(db_path, "SELECT COUNT(*), SUM(attempts), SUM(analysis_permanent) FROM photos "
                           "WHERE analysis_status = 'failed'")
    assert result.returncode == 1 and failed == [(1, 0, 0)] and figures.crashes == 0, result.stderr
    assert kept(db_path) == N - 1 and "did not answer within 1 s" in result.stderr and seconds < 10
    figures.note = f"1 timed out twice, 0 attempts spent, {N - 1} analysed; run ended in {seconds:.1f} s"
