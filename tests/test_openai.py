"""The OpenAI-compatible back-end against a real loopback /v1/chat/completions server, and the analyzer seam."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import piexif
import pytest
from imgtags_server import analysis_for
from openai_server import serve_openai
from PIL import Image

from catalog.analyze import analyze, make_analyzer
from catalog.analyzers import REGISTRY, UploadImage, analyzer_names, register
from catalog.analyzers.openai import RESPONSE_FORMAT, OpenAIAnalyzer
from catalog.analyzers.storable import storable
from catalog.analyzers.untidy import MAX_TAGS, find_json
from catalog.settings import AnalysisSettings, Config
from catalog.config import load_config
from catalog.db import open_db
from catalog.errors import AnalysisFailed, AuthenticationFailed, ConfigError, QuotaExhausted
from catalog.scan import scan

KEY = "sk-Live-7F3a9C1e-NOT-for-logs"  # mixed case: a lower-cased echo must be caught too
MODEL = "llava:7b-test"
FAST = dict(requests_per_minute=6000, backoff_base=0.01, timeout=5.0, max_retries=1)


@pytest.fixture(autouse=True)
def _no_openai_env(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def jpeg(width: int = 80, height: int = 40, colour=(200, 120, 40)) -> UploadImage:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, "JPEG")
    return UploadImage(buf.getvalue(), "image/jpeg", "a.jpg")


def analyzer(server, key: str | None = None, **http) -> OpenAIAnalyzer:
    return OpenAIAnalyzer(MODEL, base_url=server.base_url, api_key=key, **{**FAST, **http})


def expected_tags(image: UploadImage) -> tuple[str, ...]:
    return tuple(analysis_for(image.data, 40)["data"]["tags"])


# --- the request and the answer shapes --------------------------------------------------------

@pytest.mark.parametrize("mode", ["good", "fenced", "prose"])
def test_json_plain_fenced_or_inside_prose_becomes_the_analysis(mode):
    image = jpeg()
    with serve_openai(default=mode) as server, analyzer(server) as it:
        result = it.analyze(image)
    want = analysis_for(image.data, 40)["data"]
    assert result.tags == expected_tags(image) and result.description == want["description"]
    assert result.objects == tuple(want["objects"]) and result.scene == want["scene"]
    assert (result.provider, result.model, result.orientation) == ("openai", MODEL, "landscape")
    assert result.tokens_used == 600 + len(result.raw["choices"][0]["message"]["content"]) // 4
    assert result.raw["usage"]["total_tokens"] == result.tokens_used


def test_the_request_is_one_image_url_part_at_temperature_zero_with_a_json_schema():
    image = jpeg()
    with serve_openai() as server, analyzer(server) as it:
        it.analyze(image)
    sent = server.requests[0]
    assert sent.path == "/v1/chat/completions" and "authorization" not in sent.headers  # no key, none sent
    assert sent.json["model"] == MODEL and sent.json["temperature"] == 0 and sent.json["stream"] is False
    assert sent.json["response_format"] == RESPONSE_FORMAT
    schema = sent.json["response_format"]["json_schema"]
    assert schema["strict"] is True and set(schema["schema"]["required"]) == {
        "tags", "description", "objects", "colors", "scene", "mood", "safe_search", "dimensions"}
    assert "JSON" in sent.json["messages"][0]["content"][0]["text"]
    assert sent.fields["image"]["content_type"] == "image/jpeg" and sent.fields["image"]["data"] == image.data


def test_untidy_answers_are_tidied():
    image = jpeg()
    with serve_openai(default="untidy") as server, analyzer(server) as it:
        result = it.analyze(image)
    assert result.tags == ("sunset", "beach", *expected_tags(image))  # trimmed, lower-cased, one of each
    assert (result.safe_adult, result.safe_violence) == ("VERY_UNLIKELY", "POSSIBLE")
    assert result.dominant_color == "#FF6B35" and result.palette == ("#004E89",)  # "navy blue" is no hex


def test_find_json_takes_what_small_models_write():
    obj = {"tags": ["a"], "description": "d"}
    assert find_json(json.dumps(obj)) == obj
    assert find_json(f"```\n{json.dumps(obj)}\n```") == obj
    assert find_json(f"Note {{this}}: {{not json}} then {json.dumps(obj)} and {{\"x\": 1}}") == obj
    assert find_json(json.dumps({"success": True, "data": obj})) == obj  # the whole ImgTags answer
    truncated = '{"tags": ["a"], "colors": {"dominant": "#FFFFFF"}, "descr'
    assert find_json(truncated) is None  # the inner colours object is not an analysis
    assert find_json("No JSON here.") is None and find_json('{"error": "cannot see"}') is None
    assert find_json("{" * 5000) is None  # bounded, no RecursionError
    draft = '<think>Maybe {"tags": ["draft"]}? Let me look again.</think>\n'
    assert find_json(draft + json.dumps(obj)) == obj  # a reasoning model's drafts are not its answer


def test_tags_are_capped():
    from catalog.analyzers.untidy import to_analysis

    result = to_analysis({"tags": [f"Tag {i}" for i in range(500)] + ["x" * 80]}, image=b"", model="m",
                         tokens=0, elapsed_ms=0, raw={})
    assert len(result.tags) == MAX_TAGS and result.tags[0] == "tag 0"
    assert result.orientation == "unknown" and result.safe_adult == "UNKNOWN"  # missing fields: defaults


def test_no_json_is_a_failure_that_spends_an_attempt_and_is_retried_later():
    with serve_openai(default="nojson") as server, analyzer(server) as it:
        with pytest.raises(AnalysisFailed) as caught:
            it.analyze(jpeg())
    failure = caught.value
    assert not failure.permanent and failure.spends_attempt and failure.status == 200
    assert "without a JSON analysis" in str(failure) and "can't make out" in str(failure)
    assert len(server.requests) == 1  # an answer is not retried within the run


# --- structured output refused: fall back once per run -----------------------------------------

@pytest.mark.parametrize("refused", [("response_format",), ("response_format", "temperature")])
def test_a_refused_field_is_dropped_once_per_run_not_per_photo(refused):
    images = [jpeg(40 + i, 30) for i in range(12)]
    with serve_openai(refuse=refused) as server, analyzer(server) as it:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(it.analyze, images))
    assert [r.tags for r in results] == [expected_tags(i) for i in images]
    assert len(server.requests) == len(images) + len(refused)  # one refusal per field, whatever the threads
    assert [r.status for r in server.requests[:len(refused) + 1]] == [400] * len(refused) + [200]
    assert not any(name in r.json for r in server.requests[len(refused):] for name in refused)


def test_a_plain_400_is_permanent_for_that_image_and_keeps_structured_output():
    with serve_openai() as server, analyzer(server) as it:
        server.modes.append("400")
        with pytest.raises(AnalysisFailed) as caught:
            it.analyze(jpeg())
        it.analyze(jpeg(60, 60))
    assert caught.value.permanent and "could not decode" in str(caught.value)
    assert "response_format" in server.requests[1].json


# --- throttle, retries and stops ----------------------------------------------------------------

def test_429_waits_for_retry_after_then_resends_the_same_photo():
    image = jpeg()
    with serve_openai() as server, analyzer(server) as it:
        server.modes.append("429")
        result = it.analyze(image)
    first, second = server.requests
    assert (first.status, second.status) == (429, 200) and result.tags == expected_tags(image)
    assert second.at - first.at >= 0.95  # Retry-After: 1
    assert first.fields["image"]["sha256"] == second.fields["image"]["sha256"]
    assert it.stats.rate_limited == 1


def test_a_used_up_quota_stops_the_stage():
    with serve_openai(default="quota") as server, analyzer(server, max_rate_limit_retries=0) as it:
        with pytest.raises(QuotaExhausted, match="quota"):
            it.analyze(jpeg())


def test_500_is_retried_then_a_failure_that_spends_no_attempt():
    with serve_openai() as server, analyzer(server) as it:
        server.modes.extend(["500", "good"])
        assert it.analyze(jpeg()).tags  # one 500, then an answer
        server.modes.extend(["500", "500"])
        with pytest.raises(AnalysisFailed) as caught:
            it.analyze(jpeg())
    assert not caught.value.spends_attempt and not caught.value.permanent
    assert "llama runner process has terminated" in str(caught.value)
    assert [r.status for r in server.requests] == [500, 200, 500, 500]


def test_a_slow_answer_times_out_without_spending_an_attempt():
    with serve_openai(default="slow", slow_seconds=5) as server, analyzer(server, timeout=0.3, max_retries=0) as it:
        started = time.monotonic()
        with pytest.raises(AnalysisFailed) as caught:
            it.analyze(jpeg())
    assert time.monotonic() - started < 2
    assert not caught.value.spends_attempt and "did not answer within 0.3 s" in str(caught.value)


@pytest.mark.parametrize("key, words", [(KEY, "refused the API key"), (None, "wants an API key")])
def test_401_stops_the_run(key, words):
    with serve_openai(key="the-right-key") as server, analyzer(server, key=key) as it:
        with pytest.raises(AuthenticationFailed, match=words) as caught:
            it.analyze(jpeg())
    assert KEY.lower() not in str(caught.value).lower()
    assert server.requests[0].headers.get("authorization") == (f"Bearer {KEY}" if key else None)


@pytest.mark.parametrize("mode, words", [("404", "check openai.model"), ("no-vision", "choose a vision model")])
def test_a_missing_model_or_one_without_vision_stops_the_run(mode, words):
    with serve_openai(default=mode) as server, analyzer(server) as it:
        with pytest.raises(AuthenticationFailed, match=words):
            it.analyze(jpeg())


def test_refused_connection_spends_no_attempt():
    with serve_openai() as server:
        base_url = server.base_url
    with OpenAIAnalyzer(MODEL, base_url=base_url, **FAST) as it:
        with pytest.raises(AnalysisFailed, match="connection refused") as caught:
            it.analyze(jpeg())
    assert not caught.value.spends_attempt


def test_the_key_echoed_back_in_any_case_is_never_kept():
    with serve_openai(key=KEY, default="echo-key") as server, analyzer(server, key=KEY) as it:
        result = storable(it.analyze(jpeg()), it.secrets)  # what the stage stores
        assert KEY not in repr(it) and KEY not in repr(it.client._transport)
    text = json.dumps([result.tags, result.description, result.raw])
    assert KEY.lower() not in text.lower() and "[redacted]" in result.description


# --- settings ---------------------------------------------------------------------------------

def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_openai_settings_and_what_they_bring_to_the_stage(tmp_path, monkeypatch):
    path = write_config(tmp_path, '[analysis]\nanalyzer = "openai"\nconcurrency = 8\nmax_edge = 2000\n'
                                  '[openai]\nmodel = "qwen2.5vl:7b"\nconcurrency = 1\nmax_edge = 768\n'
                                  'requests_per_minute = 30\n')
    config = load_config(path)
    assert (config.analysis.concurrency, config.analysis.max_edge) == (1, 768)  # [openai] governs its run
    assert config.openai_base_url() == "http://127.0.0.1:11434/v1" and config.openai_api_key() is None
    monkeypatch.setenv("OPENAI_BASE_URL", "http://nas.local:8080/v1/")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    assert config.openai_base_url() == "http://nas.local:8080/v1" and config.openai_api_key() == KEY
    assert load_config(write_config(tmp_path, '[openai]\nmodel = "m"\napi_key_env = ""\n')).openai_api_key() is None
    offline = load_config(write_config(tmp_path, '[analysis]\nmax_edge = 2000\n[openai]\nmax_edge = 768\n'))
    assert offline.analysis.max_edge == 2000  # only the running back-end's section counts


@pytest.mark.parametrize("text, words", [
    ('[analysis]\nanalyzer = "openai"\n', 'needs a model: set openai.model'),
    ('[analysis]\nanalyzer = "openai"\n[openai]\nmodel = "m"\nbase_url = "127.0.0.1:11434"\n', "http:// or https://"),
    ('[openai]\napi_key = "sk-1"\n', "keep the API key out of the config file"),
    ('[openai]\nmax_edge = 8\n', "the smallest that works is 64"),
    ('[openai]\nconcurrency = 0\n', "openai.concurrency must be a whole number from 1 to 64"),
    ('[openai]\napi_key_env = "MY KEY"\n', "name of an environment variable"),
    ('[analysis]\nanalyzer = "gpt"\n', "auto, imgtags, offline, openai"),
])
def test_bad_openai_settings_are_one_clear_line(tmp_path, text, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        load_config(write_config(tmp_path, text))


def test_checking_the_analyzer_name_imports_no_back_end(tmp_path):
    path = write_config(tmp_path, '[analysis]\nanalyzer = "openai"\n[openai]\nmodel = "m"\n')
    code = ("import sys; from catalog.config import load_config; load_config(sys.argv[1]); "
            "print(sorted(m for m in sys.modules if m.startswith(('catalog.analyzers.', 'httpx', 'PIL'))))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_factory_builds_from_config(tmp_path, monkeypatch):
    with serve_openai(key=KEY) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        path = write_config(tmp_path, f'[analysis]\nanalyzer = "openai"\n[openai]\nmodel = "{MODEL}"\n'
                                      'prompt = "Tags as JSON, please."\n')
        it = make_analyzer(load_config(path))
        try:
            assert it.name == "openai" and it.secrets == (KEY,)
            assert it.analyze(jpeg()).model == MODEL
        finally:
            it.close()
    assert server.requests[0].json["messages"][0]["content"][0]["text"] == "Tags as JSON, please."


# --- the stage, end to end ---------------------------------------------------------------------

def gps_photo(path: Path, size=(3000, 2000), colour=(30, 90, 160)) -> None:
    gps = {piexif.GPSIFD.GPSLatitudeRef: b"N", piexif.GPSIFD.GPSLatitude: ((41, 1), (53, 1), (0, 1)),
           piexif.GPSIFD.GPSLongitudeRef: b"E", piexif.GPSIFD.GPSLongitude: ((12, 1), (29, 1), (0, 1))}
    Image.new("RGB", size, colour).save(path, "JPEG", exif=piexif.dump({"GPS": gps}))


def test_the_stage_shrinks_to_max_edge_strips_gps_and_stores_openai_answers(tmp_path, monkeypatch):
    library = tmp_path / "lib"
    library.mkdir()
    for i in range(3):
        gps_photo(library / f"p{i}.jpg", (3000 + i, 2000), (30 + 60 * i, 90, 160))  # three pictures, no copies
    with serve_openai(key=KEY, default="echo-key") as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        config = load_config(write_config(tmp_path, f'[analysis]\nanalyzer = "openai"\n'
                                                    f'[openai]\nmodel = "{MODEL}"\nmax_edge = 512\n'))
        db = open_db(tmp_path / "c.db")
        scan(db, config, [library], progress=False)
        summary = analyze(db, config, progress=False)
    assert (summary.analyzer, summary.analysed, summary.failed, summary.requests) == ("openai", 3, 0, 3)
    for record in server.requests:
        upload = Image.open(io.BytesIO(record.fields["image"]["data"]))
        assert max(upload.size) == 512 and not upload.getexif().get_ifd(0x8825)  # no GPS IFD
    rows = list(db.query("SELECT provider, model, tokens_used, tags, raw_response FROM photos"))
    assert {(r["provider"], r["model"]) for r in rows} == {("openai", MODEL)}
    assert all(r["tokens_used"] > 600 for r in rows)
    db.close()
    assert KEY.lower().encode() not in (tmp_path / "c.db").read_bytes().lower()


# --- the seam: a new back-end is one module plus one registry line -------------------------------

ECHO_MODULE = '''"""A test-only back-end: the byte count as its one tag."""
from catalog.analyzers import Analysis

CLOSED = []


class Echo:
    name = "echo"

    def __init__(self, config):
        self.word = config.analysis.analyzer

    def analyze(self, image):
        return Analysis(tags=(f"{len(image.data)} bytes", self.word), provider="echo", model="echo-1")

    def close(self):
        CLOSED.append(self)


def create(config):
    return Echo(config)
'''


def test_a_new_back_end_is_one_module_plus_one_registry_line(tmp_path, monkeypatch):
    (tmp_path / "echo_backend.py").write_text(ECHO_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(REGISTRY, "echo", "echo_backend:create")  # the one line
    assert "echo" in analyzer_names()
    library = tmp_path / "lib"
    library.mkdir()
    Image.new("RGB", (64, 48), "red").save(library / "a.jpg")
    config = load_config(write_config(tmp_path, '[analysis]\nanalyzer = "echo"\n'))
    db = open_db(tmp_path / "c.db")
    scan(db, config, [library], progress=False)
    summary = analyze(db, config, progress=False)
    assert (summary.analyzer, summary.analysed) == ("echo", 1)
    row = next(db.query("SELECT provider, model, tags FROM photos"))
    assert row["provider"] == "echo" and json.loads(row["tags"])[1] == "echo"
    import echo_backend

    assert len(echo_backend.CLOSED) == 1  # close() is part of the protocol: the stage called it
    db.close()


def test_register_at_run_time_and_unknown_names():
    register("inline", lambda config: make_analyzer(config.using("offline")))
    try:
        built = make_analyzer(Config().using("inline"))
        assert built.name == "offline" and callable(built.close)
    finally:
        REGISTRY.pop("inline")
    with pytest.raises(ConfigError, match="unknown analyzer 'nope': choose one of imgtags, offline, openai"):
        make_analyzer(Config(analysis=AnalysisSettings(analyzer="nope")))
