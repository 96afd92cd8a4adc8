"""A deterministic walk of a library root: sorted, filtered, loop-safe, never stopped by one bad folder.

Yields one `Folder` at a time (its path and its image files with their stat
results) so the scanner can diff the ledger folder by folder and memory stays
flat however large the library grows.
"""

from __future__ import annotations

import errno
import fnmatch
import functools
import logging
import operator
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Iterator

log = logging.getLogger("catalog.walk")


@dataclass
class Folder:
    path: str
    files: list[tuple[str, os.stat_result]]  # (name, stat), sorted by name
    too_long: list[str] = field(default_factory=list)  # image names whose path the system refuses


@dataclass
class WalkReport:
    unreadable: list[str] = field(default_factory=list)  # folders we could not list
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    too_long: int = 0  # files and folders whose path is too long for the system


@functools.cache
def _limits() -> tuple[int, int]:
    try:
        return os.pathconf("/", "PC_PATH_MAX"), os.pathconf("/", "PC_NAME_MAX")
    except (OSError, ValueError):
        return 4096, 255


def too_long_message(path: str) -> str:
    """Why the system refuses this path, in numbers a user can act on."""
    raw = os.fsencode(path)
    path_max, name_max = _limits()
    longest = max(len(part) for part in raw.split(b"/"))
    if longest > name_max:
        return f"name too long for the system ({longest:,} bytes, the limit is {name_max})"
    return f"path too long for the system ({len(raw):,} bytes, the limit is {path_max:,})"


def _matcher(patterns: tuple[str, ...]):
    """A test `name -> bool` equal to any(fnmatch.fnmatchcase(name, p) for p in patterns).

    Whole names, `prefix*` and `*suffix` (all the defaults) are tested with str methods, the
    rest with one regex compiled once (fnmatchcase compiles each pattern the same way): the
    test runs on every name of the library.
    """
    wild = re.compile(r"[*?\[]").search
    names, prefixes, suffixes, rest = set(), [], [], []
    for p in patterns:
        if not wild(p):
            names.add(p)
        elif p.endswith("*") and not wild(p[:-1]):
            prefixes.append(p[:-1])
        elif p.startswith("*") and not wild(p[1:]):
            suffixes.append(p[1:])
        else:
            rest.append(p)
    prefixes, suffixes = tuple(prefixes), tuple(suffixes)
    match = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in rest)).match if rest else None

    def excluded(name: str) -> bool:
        return (name in names or name.startswith(prefixes) or name.endswith(suffixes)
                or (match is not None and match(name) is not None))
    return excluded


def _image_name(extensions: tuple[str, ...]):
    """A test `name -> bool` equal to `os.path.splitext(name)[1].lower() in extensions`, cheaper."""
    wanted = frozenset(e.lower() for e in extensions)

    def image_name(name: str) -> bool:
        dot = name.rfind(".")
        # splitext: a name that is only dots before its last dot (".jpg", "..jpg") has no extension
        return dot > 0 and name[dot:].lower() in wanted and (name[0] != "." or name[:dot].lstrip(".") != "")
    return image_name


def _by_name(files: list[tuple[str, os.stat_result]]) -> list[tuple[str, os.stat_result]]:
    """(name, stat) pairs sorted by the names' bytes (by their text when that is the same order)."""
    files.sort(key=_NAME)
    try:  # valid UTF-8 sorts by code point as by bytes; only undecodable names need their bytes
        "".join(map(_NAME, files)).encode("utf-8")
    except UnicodeEncodeError:
        files.sort(key=lambda pair: os.fsencode(pair[0]))
    return files


_NAME = operator.itemgetter(0)


def walk(
    root: str,
    *,
    extensions: tuple[str, ...],
    exclude: tuple[str, ...],
    follow_symlinks: bool,
    report: WalkReport,
) -> Iterator[Folder]:
    """Depth-first, names sorted by their bytes; folders that cannot be listed are reported."""
    image_name = _image_name(extensions)
    # a first cut at C speed (the exact test only for names starting with a dot); an extension
    # with a dot inside can never be splitext's, so it is left out
    suffixes = tuple(e.lower() for e in extensions if "." not in e[1:])
    excluded = _matcher(tuple(exclude))
    seen_dirs: set[tuple[int, int]] = set()
    try:
        st = os.stat(root)
        seen_dirs.add((st.st_dev, st.st_ino))
    except OSError:
        pass
    def sort_out(folder: str, entries: list[os.DirEntry]) -> tuple[list, list, list]:
        """A folder's (image name, stat) pairs, subfolders to walk and image names too long to stat."""
        files, subdirs, too_long = [], [], []
        for entry in entries:
            name = entry.name
            if excluded(name):
                continue
            image = name.lower().endswith(suffixes) and (name[0] != "." or image_name(name))
            try:
                if image and entry.is_file(follow_symlinks=False):  # the listing says: a plain file
                    files.append((name, entry.stat(follow_symlinks=False)))
                    continue
                if entry.is_symlink():
                    if not follow_symlinks:
                        continue
                elif not image and not entry.is_dir(follow_symlinks=False):
                    continue  # the listing says it is neither an image nor a folder: no stat
                st = entry.stat(follow_symlinks=True)
            except OSError as exc:  # a dangling link, a file vanishing mid-walk, a path too long
                path = os.path.join(folder, name)
                if exc.errno == errno.ENAMETOOLONG:
                    _too_long(entry, path, image_name, too_long, report)
                report.skipped.append((path, exc.strerror or str(exc)))
                continue
            if stat.S_ISDIR(st.st_mode):
                path = os.path.join(folder, name)
                key = (st.st_dev, st.st_ino)
                if key in seen_dirs:
                    report.skipped.append((path, "folder already visited (symlink loop?)"))
                    log.warning("skipping %s: already visited (symlink loop?)", path)
                    continue
                seen_dirs.add(key)
                subdirs.append(path)
            elif image and stat.S_ISREG(st.st_mode):
                files.append((name, st))
        return files, subdirs, too_long

    stack = [root]
    path_max, name_max = _limits()
    while stack:
        folder = stack.pop()
        try:
            # Listed through a descriptor, each entry is stat'ed relative to it (fstatat), not by
            # resolving its whole path again; unless a name could make the path too long, which
            # the system must get the chance to refuse as it will when the file is opened.
            relative = len(os.fsencode(folder)) + 1 + name_max < path_max
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY) if relative else None
        except OSError as exc:
            _unreadable(folder, exc, report)
            continue
        try:  # the descriptor stays open while the entries are stat'ed
            try:
                with os.scandir(folder if fd is None else fd) as it:
                    entries = list(it)
            except OSError as exc:
                _unreadable(folder, exc, report)
                continue
            files, subdirs, too_long = sort_out(folder, entries)
        finally:
            if fd is not None:
                os.close(fd)
        yield Folder(folder, _by_name(files), sorted(too_long, key=os.fsencode))
        stack.extend(sorted(subdirs, key=os.fsencode, reverse=True))


def _unreadable(folder: str, exc: OSError, report: WalkReport) -> None:
    report.unreadable.append(folder)
    if exc.errno == errno.ENAMETOOLONG:
        report.too_long += 1
    log.warning("cannot read folder %s: %s", folder,
                too_long_message(folder) if exc.errno == errno.ENAMETOOLONG else exc.strerror or exc)


def _too_long(entry: os.DirEntry, path: str, image_name, names: list[str], report: WalkReport) -> None:
    """A path the system refuses: an image is listed for the scanner to record, a folder reported."""
    try:
        is_dir = entry.is_dir(follow_symlinks=False)  # the listing's d_type: no path lookup
    except OSError:
        is_dir = False
    if is_dir:
        report.too_long += 1
        report.unreadable.append(path)
        log.warning("cannot read folder %s: %s", path, too_long_message(path))
    elif image_name(entry.name):
        names.append(entry.name)
