"""The rules every setting passes at load: its type, its bounds, and values that would only fail later.

Only the settings (catalog/config.py, catalog/settings.py) call these. A number setting
gets its bounds from LIMITS; one without a line there still has to be finite and fit in
32 bits, so nothing can overflow SQLite, a thread pool or a sleep.
"""

from __future__ import annotations

import fnmatch
import math
import re
from typing import Any
from urllib.parse import urlsplit

from catalog.errors import ConfigError

INT32 = 2**31 - 1
# The smallest upload settings that still give the analyzer a picture. Measured on the 34
# test photos: 8 KiB is the least every one of them fits in (the kept colour profile and
# JPEG tables weigh up to 7.6 KB even at 16 px); at 4 KiB 2 fail, at 1 KiB 14 fail. 32 KiB
# leaves room for larger colour profiles and still sends at least 100 px (median 446 px).
MIN_UPLOAD_BYTES = 32_768
# Below 64 px on the long edge (8 by 8 JPEG blocks) a photo is a smudge with nothing to tag,
# and each answer is still paid for.
MIN_EDGE = 64
# ImgTags refuses images over 10240 kilobytes (HTTP 422): a larger cap only buys refusals.
MAX_UPLOAD_BYTES = 10_240 * 1024
# Fewer pixels than this and ordinary camera photos are refused as decompression bombs.
MIN_IMAGE_PIXELS = 1_000_000

# "section.key": (smallest, largest, unit). 0 is also allowed where the default is 0 ("no
# limit") and for analysis.max_edge ("only shrink when needed").
LIMITS: dict[str, tuple[float, float, str]] = {
    "scan.hash_workers": (1, 256, "workers"),
    "scan.max_image_pixels": (MIN_IMAGE_PIXELS, 1_000_000_000, "pixels"),
    "analysis.requests_per_minute": (1, 100_000, "requests"),
    "analysis.concurrency": (1, 64, "requests in flight"),
    "analysis.max_attempts": (1, 100, "attempts"),
    "analysis.max_requests": (0, 1_000_000_000, "requests"),
    "analysis.max_tokens": (0, 10**15, "tokens"),
    "analysis.max_upload_bytes": (MIN_UPLOAD_BYTES, MAX_UPLOAD_BYTES, "bytes"),
    "analysis.max_edge": (MIN_EDGE, 65_535, "pixels"),  # 65,535: the largest a JPEG can be
    "analysis.timeout_seconds": (1, 3600, "seconds"),
    "analysis.max_retries": (0, 20, "retries"),
    # A real answer is a few kilobytes; 64 KB leaves room for chatty ones, 100 MB is plenty.
    "analysis.max_answer_bytes": (65_536, 100_000_000, "bytes"),
    "analysis.max_rate_limit_wait_seconds": (1, 86_400, "seconds"),
    "analysis.breaker_failures": (1, 1_000, "failures in a row"),
    "schedule.batch_size": (1, 10_000, "photos"),
    "openai.requests_per_minute": (1, 100_000, "requests"),
    "openai.concurrency": (1, 64, "requests in flight"),
    "openai.timeout_seconds": (1, 3600, "seconds"),
    "openai.max_edge": (MIN_EDGE, 65_535, "pixels"),
}
# Below these floors no photo can be uploaded (or read) at all: the message says so.
FLOOR_REASONS = {
    "analysis.max_upload_bytes": "no photo fits in an upload that small",
    "analysis.max_edge": "no photo can be tagged that small",
    "openai.max_edge": "no photo can be tagged that small",
    "scan.max_image_pixels": "ordinary photos would be refused as decompression bombs",
}
ZERO_ALLOWED = {"analysis.max_edge"}
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
HEADER_SAFE = re.compile(r"[\x21-\x7e]+")
DEFAULT_CRON = "0 2 * * *"


def shown(value: Any) -> str:
    """A value as a message quotes it: repr (control characters escaped), cut short."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text):,} characters)"


def _describe(low, high, unit: str, zero: bool) -> str:
    span = f"from {low:,} to {high:,}" + (f" {unit}" if unit else "")
    return ("0 or " if zero and low > 0 else "") + span


def number(value: Any, default: int | float, where: str) -> int | float:
    """A whole number or a finite decimal within the setting's bounds."""
    zero = default == 0 or where in ZERO_ALLOWED
    low, high, unit = LIMITS.get(where, (0 if default == 0 else 1, INT32, ""))
    whole = isinstance(default, int)
    kind = "a whole number" if whole else "a number"
    if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)) or (
            not whole and not math.isfinite(value)):
        raise ConfigError(f"{where} must be {kind} {_describe(low, high, unit, zero)}, not {shown(value)}")
    if zero and value == 0:
        return value
    if value < low and where in FLOOR_REASONS:
        raise ConfigError(f"{where} = {shown(value)} is too small: {FLOOR_REASONS[where]}; the smallest "
                          f"that works is {low:,} {unit}" + (" (or 0, no limit)" if zero else ""))
    if not low <= value <= high:
        raise ConfigError(f"{where} must be {kind} {_describe(low, high, unit, zero)}, not {shown(value)}")
    return value if whole else float(value)


def text(value: str, where: str) -> str:
    """No control characters: a NUL cuts a path short, an escape sequence fools a terminal."""
    found = CONTROL.search(value)
    if found:
        raise ConfigError(f"{where} holds a control character ({found.group()!r}) in {shown(value)}: remove it")
    return value


def library(lib, where: str = "library"):
    for root in lib.roots:
        if not root.strip():
            raise ConfigError(f"{where}.roots has an empty entry: it would scan the current folder")
    if not lib.include_extensions:
        raise ConfigError(f"{where}.include_extensions is empty: no file would count as a photo")
    for pattern in lib.exclude:
        if not pattern.strip():
            raise ConfigError(f"{where}.exclude has an empty pattern")
        if all(fnmatch.fnmatchcase(name, pattern) for name in ("IMG_0001.JPG", "2019", "a")):
            raise ConfigError(f"{where}.exclude pattern {shown(pattern)} matches every name: nothing would be scanned")


def extensions(values: tuple[str, ...], where: str) -> tuple[str, ...]:
    for value in values:
        if not value.strip(". "):
            raise ConfigError(f"{where} has an entry without a name ending: {shown(value)}")
        if "/" in value or any(c.isspace() for c in value):
            raise ConfigError(f"{where} entry {shown(value)} is not a file name ending like \".jpg\"")
    return values


def base_url(url: str, where: str) -> str:
    """An http(s) URL with a host: the key is sent there, so nothing else will do."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a port out of range)
    except ValueError as exc:
        raise ConfigError(f"{where} is not a valid URL ({exc}): {shown(url)}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise ConfigError(f"{where} must be an http:// or https:// URL with a host, not {shown(url)}")
    if parts.username or parts.password:
        raise ConfigError(f"{where} must not hold a user name or password: the API key goes in its "
                          "environment variable")
    return url


DASK_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")


def task_runner(value: str, where: str) -> str:
    """"threads", or a Dask scheduler's address: scheme://host:port (tcp:// when the scheme is left out)."""
    if value == "threads":
        return value
    address = value if "://" in value else f"tcp://{value}"
    try:
        parts = urlsplit(address)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{where} is not a Dask scheduler address ({exc}): {shown(value)}") from None
    if (parts.scheme not in DASK_SCHEMES or not parts.hostname or port is None or parts.path not in ("", "/")
            or parts.username or parts.password or parts.query or any(c.isspace() for c in value)):
        raise ConfigError(f'{where} must be "threads" or a Dask scheduler address like "tcp://10.0.0.5:8786" '
                          f"({', '.join(DASK_SCHEMES)}; host and port), not {shown(value)}")
    return address.rstrip("/")


def loopback(url: str) -> bool:
    """Whether a URL names this machine (localhost, 127.0.0.0/8, ::1): nothing sent there leaves it."""
    import ipaddress

    host = urlsplit(url).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_key(key: str | None, variable: str) -> None:
    """A key an HTTP header can carry (the key itself never appears in the message)."""
    if key is not None and not HEADER_SAFE.fullmatch(key):
        raise ConfigError(f"the API key in ${variable} holds spaces, line breaks or non-ASCII "
                          "characters that an HTTP header cannot carry: set it again")


def env_name(name: str, where: str) -> str:
    if not ENV_NAME.fullmatch(name):
        raise ConfigError(f"{where} must be the name of an environment variable, like IMGTAGS_API_KEY, "
                          f"not {shown(name)}")
    return name


def hierarchy_parent(parent: str, where: str) -> str:
    """`auto` or `machine|auto`: hierarchical keywords go under it, in XMP (|) and digiKam (/)."""
    levels = parent.split("|")
    if not all(level.strip() for level in levels):
        raise ConfigError(f"{where} must name a keyword parent such as \"auto\" (levels joined by |), "
                          f"not {shown(parent)}")
    if "/" in parent:
        raise ConfigError(f"{where} must not contain /: digiKam reads / as a level separator")
    return parent


def _prefect_croniter():
    """The cron parser Prefect's schedules use (its vendored croniter), so that what we accept
    Prefect accepts; loaded from its file when Prefect itself is not imported (Prefect takes
    ~1.5 s to import, the parser ~0.1 s)."""
    import importlib.util
    import sys
    from pathlib import Path

    name = "catalog._prefect_croniter"
    if "prefect" in sys.modules:
        from prefect._vendor.croniter import croniter

        return croniter
    if name not in sys.modules:
        origin = Path(importlib.util.find_spec("prefect").origin).parent
        spec = importlib.util.spec_from_file_location(name, origin / "_vendor" / "croniter" / "croniter.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name].croniter


def cron(expression: str, where: str) -> str:
    """Valid for Prefect's CronSchedule (prefect._internal.schemas.validators.validate_cron_string)
    and due at least once: a date that never comes (30 February) would schedule nothing."""
    if expression == DEFAULT_CRON:
        return expression
    croniter = _prefect_croniter()
    try:
        valid = croniter.is_valid(expression)
    except Exception:  # the parser's own surprises are invalid expressions too
        valid = False
    if not valid or any(field.casefold() in ("r", "h") for field in expression.split()):
        raise ConfigError(f"{where} is not a cron expression (minute hour day month weekday, e.g. "
                          f"\"0 2 * * *\"): {shown(expression)}")
    try:
        croniter(expression).get_next(float)
    except Exception:
        raise ConfigError(f"{where} = {shown(expression)} never comes round: no date matches it") from None
    return expression


def timezone(name: str, where: str) -> str:
    """An IANA zone name from the same list Prefect checks against (zoneinfo's)."""
    if name:
        from zoneinfo import available_timezones

        if name not in available_timezones():
            raise ConfigError(f"{where} must be an IANA time zone such as \"Europe/Berlin\" "
                              f"(or empty for this machine's), not {shown(name)}")
    return name
