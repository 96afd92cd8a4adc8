"""The ImgTags back-end against the loopback server: request shapes, answer parsing, every failure."""

from __future__ import annotations

import hashlib
import io
import shutil
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from imgtags_server import (FAIL_403, FAIL_422, FAIL_429, FAIL_500, FAIL_503_HTML, FAIL_CLOSE, FAIL_MALFORMED,
                            Canned, refused_base_url, serve_imgtags)
from PIL import Image, PngImagePlugin

from catalog.analyzers import LIKELIHOODS, Analysis, UploadImage, analyzer_factory
from catalog.analyzers.imgtags import ImgTagsAnalyzer
from catalog.settings import AnalysisSettings, Config
from catalog.errors import AnalysisFailed, AuthenticationFailed, QuotaExhausted, ServiceDown

KEY = "sk-test-4c3b2a1900ffee"
FAST = dict(requests_per_minute=1000, window_seconds=1.0, backoff_base=0.01, timeout=2.0)


@pytest.fixture(scope="module")
def real(tmp_path_factory, shared_photos):
    """Copies of the few shared photos used here (never read in place)."""
    dest = tmp_path_factory.mktemp("real")
    for name in ("real/DSCN0010.jpg", "real/IMG_5195.HEIC", "edge/rotating-squares.webp"):
        shutil.copy(shared_photos / name, dest / name.split("/")[1])
    return dest


@pytest.fixture
def server():
    with serve_imgtags(key=KEY) as srv:
        yield srv


@pytest.fixture
def analyzer(server):
    with ImgTagsAnalyzer(KEY, base_url=server.base_url, **FAST) as it:
        yield it


@pytest.fixture
def jpeg(real) -> UploadImage:
    return UploadImage((real / "DSCN0010.jpg").read_bytes(), "image/jpeg", "DSCN0010.jpg")


def png(width: int, height: int, comment: str = "") -> UploadImage:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", comment)
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(out, "PNG", pnginfo=info)
    return UploadImage(out.getvalue(), "image/png", "generated.png")


# --- what goes out, what comes back ---------------------------------------------------------

def test_upload_carries_the_key_and_the_contract_multipart_shape(analyzer, server, jpeg):
    analysis = analyzer.analyze(jpeg)
    [seen] = server.requests.snapshot()
    assert (seen.method, seen.path) == ("POST", "/api/v1/analyze")
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert list(seen.fields) == ["image"]
    field = seen.fields["image"]
    assert field["filename"] == "DSCN0010.jpg" and field["content_type"] == "image/jpeg"
    assert field["size"] == len(jpeg.data) and field["sha256"] == hashlib.sha256(jpeg.data).hexdigest()
    assert isinstance(analysis, Analysis) and analysis.provider == "imgtags" and analysis.model == "imgtags-v1"


def test_the_answer_is_parsed_field_by_field(analyzer, jpeg):
    analysis = analyzer.analyze(jpeg)
    data, meta = analysis.raw["data"], analysis.raw["meta"]
    assert analysis.raw["success"] is True
    assert analysis.tags == tuple(data["tags"]) and analysis.tags and all(isinstance(t, str) for t in analysis.tags)
    assert analysis.objects == tuple(data["objects"])
    assert analysis.description == data["description"]
    assert analysis.dominant_color == data["colors"]["dominant"] and analysis.dominant_color.startswith("#")
    assert analysis.palette == tuple(data["colors"]["palette"])
    assert (analysis.scene, analysis.mood) == (data["scene"], data["mood"])
    assert analysis.safe_adult == data["safe_search"]["adult"] and analysis.safe_adult in LIKELIHOODS
    assert analysis.safe_violence == data["safe_search"]["violence"]
    assert analysis.orientation == "landscape"  # 640 x 480
    assert analysis.tokens_used == meta["tokens_used"] > 0
    assert analysis.processing_time_ms == meta["processing_time_ms"] > 0
    assert analyzer.analyze(jpeg) == analysis  # deterministic: same bytes, same answer


def test_generated_images_get_their_own_answers(analyzer, real):
    sunset = analyzer.analyze(png(30, 50, "sunset"))
    assert sunset.tags[:3] == ("sunset", "beach", "ocean") and sunset.orientation == "portrait"
    other = analyzer.analyze(png(30, 50, "forest"))
    assert "sunset" not in other.tags
    webp = analyzer.analyze(UploadImage((real / "rotating-squares.webp").read_bytes(), "image/webp", "s.webp"))
    assert webp.tags


def test_url_mode_sends_json(analyzer, server):
    analysis = analyzer.analyze_url("https://example.com/photos/beach.jpg")
    [seen] = server.requests.snapshot()
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.headers["content-type"] == "application/json"
    assert seen.json == {"url": "https://example.com/photos/beach.jpg"} and seen.fields == {}
    assert analysis.tags and analysis.provider == "imgtags"


# --- refused locally: the server never sees these ------------------------------------------

@pytest.mark.parametrize("url", ["ftp://example.com/a.jpg", "https://example.com/" + "a" * 2040, "not a url",
                                 "https:///no-host.jpg", "file:///etc/passwd"])
def test_bad_urls_are_refused_locally(analyzer, server, url):
    with pytest.raises(AnalysisFailed) as caught:
        analyzer.analyze_url(url)
    assert caught.value.permanent
    assert len(server.requests) == 0


def test_oversized_wrong_format_and_empty_uploads_never_reach_the_server(analyzer, server, real):
    refused = [
        UploadImage(b"\xff\xd8" + b"\0" * 9_999_999, "image/jpeg", "huge.jpg"),  # 10,000,001 bytes
        UploadImage((real / "IMG_5195.HEIC").read_bytes(), "image/heic", "IMG_5195.HEIC"),
        UploadImage(b"II*\0" + b"\0" * 100, "image/tiff", "scan.tif"),
        UploadImage(b"", "image/jpeg", "empty.jpg"),
    ]
    for image in refused:
        with pytest.raises(AnalysisFailed) as caught:
            analyzer.analyze(image)
        assert caught.value.permanent, image.filename
        assert image.filename in str(caught.value)
    assert len(server.requests) == 0


def test_an_upload_of_exactly_the_limit_is_sent(analyzer, server):
    analyzer.analyze(UploadImage(b"\xff\xd8" + b"\0" * 9_999_998, "image/jpeg", "big.jpg"))
    assert server.requests[0].fields["image"]["size"] == 10_000_000


# --- 429s, retries and what is left after them ----------------------------------------------

def test_a_429_waits_and_the_same_photo_succeeds(analyzer, server, jpeg):
    server.rate_limit, server.rate_window = 1, 0.6
    first = analyzer.analyze(png(10, 10))
    second = analyzer.analyze(jpeg)
    seen = server.requests.snapshot()
    assert first.tags and second.tags
    assert [r.status for r in seen] == [200, 429, 200]
    assert seen[1].fields["image"]["filename"] == seen[2].fields["image"]["filename"] == "DSCN0010.jpg"
    assert analyzer.stats.rate_limited == 1 and analyzer.stats.requests == 3 and analyzer.stats.gave_up == 0


def test_500_and_html_503_are_retried_then_succeed(analyzer, server, jpeg):
    server.fail_next.extend([FAIL_500, FAIL_503_HTML])
    analysis = analyzer.analyze(jpeg)
    assert analysis.tags
    assert [r.status for r in server.requests] == [500, 503, 200]
    assert analyzer.stats.retries == 2


def test_malformed_json_in_a_200_is_never_resent_and_spends_an_attempt(analyzer, server, jpeg):
    server.fail_next.append(FAIL_MALFORMED)
    with pytest.raises(AnalysisFailed) as caught:
        analyzer.analyze(jpeg)
    assert caught.value.spends_attempt and not caught.value.permanent and caught.value.status == 200
    assert "not a JSON object" in str(caught.value)
    assert len(server.requests) == 1 and analyzer.stats.retries == 0


def test_a_persistent_500_becomes_a_retryable_failure_with_the_servers_message(analyzer, server, jpeg):
    server.fail_next.extend([FAIL_500] * 5)
    with pytest.raises(AnalysisFailed) as caught:
        analyzer.analyze(jpeg)
    assert not caught.value.permanent and not caught.value.spends_attempt and caught.value.status == 500
    assert "Failed to fetch image from URL" in str(caught.value)
    assert len(server.requests) == 5  # the default bound: 1 + 4 retries


def test_a_persistent_html_503_is_reported_readably(server, jpeg):
    server.fail_next.extend([FAIL_503_HTML] * 2)
    with ImgTagsAnalyzer(KEY, base_url=server.base_url, **{**FAST, "max_retries": 1}) as it:
        with pytest.raises(AnalysisFailed) as caught:
            it.analyze(jpeg)
    assert not caught.value.permanent and not caught.value.spends_attempt and caught.value.status == 503
    assert "HTTP 503" in str(caught.value) and "text/html" in str(caught.value)
    assert len(server.requests) == 2


def test_a_422_is_permanent_never_retried_and_carries_the_servers_words(analyzer, server, jpeg):
    server.fail_next.append(FAIL_422)
    with pytest.raises(AnalysisFailed) as caught:
        analyzer.analyze(jpeg)
    assert caught.value.permanent and caught.value.status == 422
    assert "The image field must be an image." in str(caught.value) and "image:" in str(caught.value)
    assert len(server.requests) == 1


def test_a_wrong_key_raises_authentication_failed_without_the_key(server, jpeg):
    wrong = "sk-wrong-0123456789abcdef"
    with ImgTagsAnalyzer(wrong, base_url=server.base_url, **FAST) as it:
        with pytest.raises(AuthenticationFailed) as caught:
            it.analyze(jpeg)
        assert wrong not in repr(it)
    message = str(caught.value)
    assert message == "ImgTags refused the API key (HTTP 401): check IMGTAGS_API_KEY"
    assert wrong not in repr(caught.value)
    assert server.requests[0].headers["authorization"] == f"Bearer {wrong}"
    assert len(server.requests) == 1


def test_a_403_is_an_authentication_failure_too(analyzer, server, jpeg):
    server.fail_next.append(FAIL_403)
    with pytest.raises(AuthenticationFailed, match=r"HTTP 403"):
        analyzer.analyze(jpeg)
    assert len(server.requests) == 1


def test_a_timeout_is_retried_then_fails_clearly(server, jpeg):
    server.latency = 1.0
    with ImgTagsAnalyzer(KEY, base_url=server.base_url, **{**FAST, "timeout": 0.2, "max_retries": 1}) as it:
        with pytest.raises(AnalysisFailed) as caught:
            it.analyze(jpeg)
    assert not caught.value.permanent and not caught.value.spends_attempt
    assert str(caught.value).startswith("ImgTags did not answer within 0.2 s")
    assert len(server.requests) == 2


def test_a_refused_connection_fails_clearly():
    base_url = refused_base_url()
    with ImgTagsAnalyzer(KEY, base_url=base_url, **{**FAST, "max_retries": 1}) as it:
        with pytest.raises(AnalysisFailed) as caught:
            it.analyze_url("https://example.com/a.jpg")
        assert it.stats.requests == 2
    assert not caught.value.permanent and not caught.value.spends_attempt
    assert str(caught.value) == f"cannot connect to {base_url}/analyze: connection refused"


def test_a_server_that_keeps_hanging_up_fails_clearly(server, jpeg):
    server.fail_next.extend([FAIL_CLOSE] * 2)
    with ImgTagsAnalyzer(KEY, base_url=server.base_url, **{**FAST, "max_retries": 1}) as it:
        with pytest.raises(AnalysisFailed, match="closed the connection without an answer"):
            it.analyze(jpeg)


# --- whose fault: an attempt is spent only on a failure that is the photo's own ---------------

@pytest.mark.parametrize(("kinds", "spends", "words"), [
    ([FAIL_500] * 2, False, "HTTP 500"),
    ([FAIL_CLOSE] * 2, False, "closed the connection"),
    ([FAIL_429] * 3, False, "kept answering 429"),
    ([Canned(404, {"message": "Not Found"})], False, "HTTP 404"),
    (["short-body"], True, "broke off after"),
    (["huge-body"], True, "over the 2,000,000-byte cap (analysis.max_answer_bytes)"),
    (["deep-nesting"], True, "nested too deeply"),
])
def test_server_faults_spend_no_attempt_and_unusable_2xx_spend_one(server, jpeg, kinds, spends, words):
    server.fail_next.extend(kinds)
    with ImgTagsAnalyzer(KEY, base_url=server.base_url, **{**FAST, "max_retries": 1, "max_rate_limit_retries": 2,
                                                            "max_rate_limit_wait": 5.0}) as it:
        with pytest.raises(AnalysisFailed) as caught:
            it.analyze(jpeg)
    assert caught.value.spends_attempt is spends and not caught.value.permanent
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_a_trickling_answer_fails_at_the_deadline_and_spends_an_attempt(server, jpeg):
    server.mode, server.trickle_interval = "trickle", 0.05
    with ImgTagsAnalyzer(KEY, base_url=server.base_url, **{**FAST, "timeout": 0.4}) as it:
        with pytest.raises(AnalysisFailed, match=r"did not arrive within 0.4 s") as caught:
            it.analyze(jpeg)
    assert caught.value.spends_attempt and len(server.requests) == 1


def test_quota_and_breaker_stops_pass_through_unchanged(server, jpeg):
    server.mode = "quota-daily"
    with ImgTagsAnalyzer(KEY, base_url=server.base_url, **FAST) as it:
        with pytest.raises(QuotaExhausted, match=r"^ImgTags quota exhausted until .* UTC \(daily limit\)"):
            it.analyze(jpeg)
    server.mode = "503-html"
    with ImgTagsAnalyzer(KEY, base_url=server.base_url, **{**FAST, "max_retries": 0, "breaker_failures": 2}) as it:
        for _ in range(2):
            with pytest.raises(AnalysisFailed):
                it.analyze(jpeg)
        with pytest.raises(ServiceDown, match=r"^ImgTags failed 2 times in a row \(last: HTTP 503\)"):
            it.analyze(jpeg)
    assert len(server.requests) == 3


def test_an_echoed_key_never_reaches_a_failure_message(server, jpeg):
    server.fail_next.extend(["echo-key-500"] * 2 + [Canned(422, {"message": f"bad key {KEY}\x1b]0;t\x07"})])
    with ImgTagsAnalyzer(KEY, base_url=server.base_url, **{**FAST, "max_retries": 1}) as it:
        messages = []
        for _ in range(2):
            with pytest.raises(AnalysisFailed) as caught:
                it.analyze(jpeg)
            messages.append(str(caught.value))
    assert all(KEY not in m and "[redacted]" in m for m in messages), messages
    assert "\x1b" not in messages[1]


# --- tolerant parsing -----------------------------------------------------------------------

def test_missing_optional_fields_take_the_defaults(analyzer, server, jpeg):
    body = {"success": True, "data": {"tags": ["a", "b"], "colors": "odd", "safe_search": {"adult": "maybe"},
                                      "model": "imgtags-v2"}}
    server.fail_next.append(Canned(200, body))
    analysis = analyzer.analyze(jpeg)
    assert analysis.tags == ("a", "b") and analysis.objects == ()
    assert analysis.dominant_color == "unknown" and analysis.palette == ()
    assert (analysis.scene, analysis.mood, analysis.orientation) == ("unknown", "unknown", "unknown")
    assert analysis.safe_adult == "UNKNOWN" and analysis.safe_violence == "UNKNOWN"
    assert (analysis.tokens_used, analysis.processing_time_ms, analysis.model) == (0, 0, "imgtags-v2")
    assert analysis.raw == body


@pytest.mark.parametrize("body", [{"success": False, "error": {"message": "model overloaded"}},
                                  {"success": True}, {"success": True, "data": ["x"]}, ["not", "an", "object"]])
def test_a_200_without_an_analysis_is_a_retryable_failure(analyzer, server, jpeg, body):
    server.fail_next.append(Canned(200, body))
    with pytest.raises(AnalysisFailed) as caught:
        analyzer.analyze(jpeg)
    assert not caught.value.permanent and caught.value.spends_attempt
    assert len(server.requests) == 1
    if isinstance(body, dict) and "error" in body:
        assert "model overloaded" in str(caught.value)


# --- wiring ---------------------------------------------------------------------------------

def test_registered_by_name_and_shareable_between_threads(server, real, monkeypatch):
    monkeypatch.setenv("IMGTAGS_API_KEY", KEY)
    monkeypatch.setenv("IMGTAGS_BASE_URL", server.base_url)
    it = analyzer_factory("imgtags")(Config(analysis=AnalysisSettings(requests_per_minute=6000)))
    assert isinstance(it, ImgTagsAnalyzer)
    try:
        images = [png(10 + i, 20) for i in range(12)]
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(it.analyze, images))
    finally:
        it.close()
    assert all(r.orientation == "portrait" for r in results[:10]) and results[10].orientation == "square"
    assert it.stats.requests == 12 == len(server.requests)


def test_the_loopback_server_enforces_the_contract_itself(server):
    """The refusal tests above only mean something if the server would have refused too."""
    url, auth = f"{server.base_url}/analyze", {"Authorization": f"Bearer {KEY}"}
    big = httpx.post(url, headers=auth, files={"image": ("a.jpg", b"\0" * 10_000_001, "image/jpeg")})
    heic = httpx.post(url, headers=auth, files={"image": ("a.heic", b"\0" * 10, "image/heic")})
    missing = httpx.post(url, headers=auth, files={"photo": ("a.jpg", b"\0" * 10, "image/jpeg")})
    no_key = httpx.post(url, json={"url": "https://example.com/a.jpg"})
    assert [r.status_code for r in (big, heic, missing, no_key)] == [422, 422, 422, 401]
    assert missing.json()["errors"]["url"] == ["The url field is required when image is not present."]
