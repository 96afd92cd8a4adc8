"""The write-back stage: analysis tags from the database into sidecars and/or the photos.

For every present file of an analysed photo: merge our keywords and description
into what is there (the user's own keywords are never dropped; only keywords we
wrote earlier and that are now stale are removed), write only if something
changes (idempotent), journal the previous state first (for --undo), verify the
new bytes (payload identity unchanged, our keywords readable), then replace the
file atomically and update the ledger so the next scan does not re-read it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field

from catalog import db as catalog_db
from catalog.db import db_text
from catalog.config import Config
from catalog.errors import CatalogError
from catalog.identity import hash_buffer, sniff
from catalog.progress import progress_bar
from catalog.writeback import embed, iptc, xmp
from catalog.writeback.atomic import atomic_write

log = logging.getLogger("catalog.writeback")
EMBEDDABLE = ("JPEG", "PNG", "WEBP", "TIFF")
WITH_IPTC = ("JPEG", "PNG", "TIFF")
PAGE = 500


@dataclass
class Change:
    """One file's planned or done change (what --dry-run prints)."""

    path: str
    target: str
    kind: str  # sidecar / embed
    add: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    description: bool = False  # the description changes
    status: str = "write"  # write / unchanged / skipped
    message: str | None = None


@dataclass
class WritebackSummary:
    mode: str = ""
    dry_run: bool = False
    files: int = 0
    written: int = 0
    unchanged: int = 0
    skipped: int = 0
    sidecars: int = 0
    embedded: int = 0
    seconds: float = 0.0
    run_id: int | None = None
    changes: list[dict] = field(default_factory=list)  # dry-run: every change; else the skipped ones

    def as_dict(self) -> dict:
        return asdict(self)


def _targets(db, paths):
    """Present files of analysed photos, by path, a page at a time."""
    scope, params = catalog_db.path_scope_sql(paths, column="f.path")
    sql = (f"SELECT f.path, f.path_bytes, f.root, f.photo_id, f.size, f.mtime_ns, p.tags, p.description "
           f"FROM files f JOIN photos p ON p.id = f.photo_id WHERE f.status = 'ok' "
           f"AND p.analysis_status = 'done' AND f.path > :after {scope} "
           f"ORDER BY f.path LIMIT {PAGE}")
    after = ""
    while True:
        rows = list(db.query(sql, {**params, "after": after}))
        yield from rows
        if len(rows) < PAGE:
            return
        after = rows[-1]["path"]


def _state(db, target: str) -> dict | None:
    return next(db.query("SELECT * FROM writeback_state WHERE target = ?", [target]), None)


def _fold(words) -> set[str]:
    import unicodedata

    return {unicodedata.normalize("NFC", w).casefold() for w in words}


def _plan(present: list[str], state: dict | None, tags: list[str]):
    """What to add, which of our earlier keywords to remove, and which keywords count as ours.

    A keyword the photo already had before we first wrote it stays the user's: we never
    claim it, so a later analysis without it cannot remove it.
    """
    ours_before = json.loads(state["keywords"]) if state else []
    remove = [k for k in ours_before if k not in tags]
    have = _fold(present)
    add = [k for k in tags if k.casefold() not in have]
    owned = [k for k in tags if k in ours_before or k.casefold() not in have]
    return add, [k for k in remove if k.casefold() in have], owned


def _may_replace(current: str | None, state: dict | None) -> bool:
    """Our description may replace the current one only if the current one is ours."""
    return bool(state and state["description"] is not None and current == state["description"])


def _exif_text(exif: dict | None, tag: int) -> str | None:
    value = ((exif or {}).get("0th") or {}).get(tag)
    if isinstance(value, (tuple, list)):
        value = bytes(value)
    if isinstance(value, bytes):
        codec = "utf-16-le" if tag == 0x9C9E else "utf-8"
        value = value.decode(codec, "replace")
    return value.replace("\x00", "").strip() or None if isinstance(value, str) else None


def _iptc_caption(iim: bytes | None) -> str | None:
    for record, number, value in iptc.parse_iim(iim) if iim else ():
        if (record, number) == (2, iptc.CAPTION):
            return value.decode("utf-8", "replace").strip() or None
    return None


class Writer:
    def __init__(self, db, config: Config, summary: WritebackSummary, run_id: int | None, dry_run: bool):
        self.db, self.config, self.summary, self.run_id, self.dry_run = db, config, summary, run_id, dry_run
        self.wb = config.writeback

    def _record(self, change: Change) -> None:
        s = self.summary
        if change.status == "write":
            s.written += 1
            if change.kind == "sidecar":
                s.sidecars += 1
            else:
                s.embedded += 1
        elif change.status == "unchanged":
            s.unchanged += 1
        else:
            s.skipped += 1
            log.warning("%s: %s", change.path, change.message)
        if self.dry_run or change.status == "skipped":
            s.changes.append(asdict(change))

    def _journal_and_state(self, *, target, path, kind, fmt, existed, snapshot, state, row, tags,
                           description_written, mtime_before) -> int:
        with self.db.atomic():
            cursor = self.db.execute(
                "INSERT INTO writeback_journal (run_id, target, target_bytes, path, kind, format, existed, "
                "snapshot, previous_state, mtime_ns_before) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [self.run_id, db_text(target)[0], db_text(target)[1], row["path"], kind, fmt, int(existed), snapshot,
                 json.dumps(state) if state else None, mtime_before])
            self.db.execute(
                "INSERT OR REPLACE INTO writeback_state (target, path, kind, photo_id, keywords, description, "
                "written_at, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [db_text(target)[0], row["path"], kind, row["photo_id"], json.dumps(tags, ensure_ascii=False),
                 description_written, catalog_db.now(), self.run_id])
        return cursor.lastrowid

    def _finish(self, journal_id: int, st: os.stat_result, ledger_path: str | None) -> None:
        with self.db.atomic():
            self.db.execute("UPDATE writeback_journal SET size_after = ?, mtime_ns_after = ? WHERE id = ?",
                            [st.st_size, st.st_mtime_ns, journal_id])
            if ledger_path:  # the photo changed on purpose: the next scan must not re-read it
                self.db.execute("UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?",
                                [st.st_size, st.st_mtime_ns, ledger_path])

    def sidecar(self, row, photo: str, tags, description, *, note: str | None = None) -> None:
        wb = self.wb
        target = xmp.sidecar_path(photo, style=wb.sidecar_name, sidecar_dir=wb.sidecar_dir or None,
                                  root=catalog_db.fs_path({"path": row["root"]}))
        change = Change(row["path"], db_text(target)[0], "sidecar", message=note)
        try:
            existed = os.path.exists(target)
            existing = _read(target) if existed else None
            base = existing if existing is not None else _embedded_packet(photo)
            state = _state(self.db, db_text(target)[0])
            # A new sidecar seeded from the photo inherits what we embedded there as ours.
            plan_state = state or (_state(self.db, row["path"]) if existing is None else None)
            facts = xmp.read_xmp(base) if base else xmp.XmpFacts()
            change.add, change.remove, owned = _plan(list(facts.subject), plan_state, tags)
            replace = _may_replace(facts.description, plan_state)
            packet = xmp.merge_xmp(base, add=tags, remove=change.remove, description=description,
                                   replace_description=replace, parent=wb.hierarchy_parent)
            change.description = xmp.read_xmp(packet).description != facts.description
            if existing is not None and packet == existing:
                change.status = "unchanged"
            elif not self.dry_run:
                journal = self._journal_and_state(
                    target=target, path=photo, kind="sidecar", fmt="XMP", existed=existed, snapshot=existing,
                    state=state, row=row, tags=owned, description_written=_ours(packet, description),
                    mtime_before=os.stat(target).st_mtime_ns if existed else None)
                xmp.write_sidecar(target, packet)
                self._finish(journal, os.stat(target), None)
        except (OSError, ValueError, CatalogError) as exc:
            change.status, change.message = "skipped", _why(exc)
        self._record(change)

    def embed(self, row, photo: str, tags, description) -> None:
        change = Change(row["path"], row["path"], "embed")
        try:
            st = os.stat(photo)
            if (st.st_size, st.st_mtime_ns) != (row["size"], row["mtime_ns"]):
                raise CatalogError("changed since the last scan: run `catalog scan` first")
            if not st.st_mode & 0o222:
                raise CatalogError("the file is read-only: left alone (use mode = \"sidecar\")")
            with open(photo, "rb") as f:
                data = f.read()
            fmt = sniff(data[:32])
            if fmt not in EMBEDDABLE:
                self.sidecar(row, photo, tags, description,
                             note=f"{fmt or 'this format'} has no lossless writer here: wrote a sidecar instead")
                return
            current = embed.read_embedded(data, fmt)
            state = _state(self.db, row["path"])
            facts = xmp.read_xmp(current.xmp) if current.xmp else xmp.XmpFacts()
            xp_words = [w for w in (_exif_text(current.exif, 0x9C9E) or "").split(";") if w.strip()]
            iptc_words = iptc.keywords_of(current.iptc) if current.iptc else []
            change.add, change.remove, owned = _plan([*facts.subject, *iptc_words, *xp_words], state, tags)
            packet = xmp.merge_xmp(current.xmp, add=tags, remove=change.remove, description=description,
                                   replace_description=_may_replace(facts.description, state),
                                   parent=self.wb.hierarchy_parent)
            iim = None
            if fmt in WITH_IPTC:
                iim = iptc.merge_iptc(current.iptc, add=tags, remove=change.remove, caption=description,
                                      replace_caption=_may_replace(_iptc_caption(current.iptc), state))
            # EXIF: XPKeywords merged like the others; ImageDescription only where empty or ours.
            xp = [w for w in xp_words if w not in change.remove]
            xp += [t for t in tags if t.casefold() not in _fold(xp)]
            exif_description = _exif_text(current.exif, 0x010E)
            new_description = description if (not exif_description or _may_replace(exif_description, state)) else None
            new = embed.write_embedded(data, fmt, xmp=packet, iptc=iim, keywords=xp, description=new_description)
            change.description = xmp.read_xmp(packet).description != facts.description
            if new == data:
                change.status = "unchanged"
            elif not self.dry_run:
                self._verify(data, new, fmt, tags)
                journal = self._journal_and_state(
                    target=photo, path=photo, kind="embed", fmt=fmt, existed=True,
                    snapshot=embed.snapshot(data, fmt), state=state, row=row, tags=owned,
                    description_written=_ours(packet, description), mtime_before=st.st_mtime_ns)
                self._finish(journal, atomic_write(photo, new), row["path"])
        except (OSError, ValueError, CatalogError) as exc:
            change.status, change.message = "skipped", _why(exc)
        self._record(change)

    @staticmethod
    def _verify(old: bytes, new: bytes, fmt: str, tags) -> None:
        """Pixels untouched (same payload identity) and our keywords readable back."""
        if hash_buffer(fmt, new).digest != hash_buffer(fmt, old).digest:
            raise CatalogError("verification failed: the image data would change; nothing written")
        written = embed.read_embedded(new, fmt)
        found = set(xmp.read_xmp(written.xmp).subject) if written.xmp else set()
        if not set(tags) <= found:
            raise CatalogError("verification failed: the keywords do not read back; nothing written")


def writeback(db, config: Config, *, paths=None, mode: str | None = None, dry_run: bool = False,
              progress: bool = True) -> WritebackSummary:
    """Write analysis tags for every present, analysed file (under `paths`, if given)."""
    started = time.perf_counter()
    mode = mode or config.writeback.mode
    summary = WritebackSummary(mode=mode, dry_run=dry_run)
    run_id = None if dry_run else catalog_db.start_run(db, "writeback")
    summary.run_id = run_id
    writer = Writer(db, config, summary, run_id, dry_run)
    bar = progress_bar(unit=" files", desc="write back") if progress else None
    status = "failed"
    try:
        for row in _targets(db, paths):
            summary.files += 1
            photo = catalog_db.fs_path(row)
            tags = [t for t in json.loads(row["tags"] or "[]") if isinstance(t, str) and t.strip()]
            description = row["description"] or None
            if mode in ("embed", "both"):
                writer.embed(row, photo, tags, description)
            if mode in ("sidecar", "both"):
                writer.sidecar(row, photo, tags, description)
            if bar is not None:
                bar.update()
        status = "partial" if summary.skipped else "ok"
    finally:
        if bar is not None:
            bar.close()
        summary.seconds = round(time.perf_counter() - started, 3)
        if run_id is not None:
            counts = {k: v for k, v in summary.as_dict().items() if k != "changes"}
            catalog_db.finish_run(db, run_id, status, counts)
    return summary


def _embedded_packet(photo: str) -> bytes | None:
    """A new sidecar starts from the photo's own XMP, so the user's keywords carry over."""
    try:
        with open(photo, "rb") as f:
            return xmp.find_xmp_packet(f.read(4 << 20))
    except OSError:
        return None


def _ours(packet: bytes, description: str | None) -> str | None:
    """The description we count as ours: only if the packet now holds exactly it."""
    return description if description and xmp.read_xmp(packet).description == description else None


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _why(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return f"cannot write: {exc.strerror or exc}"
    return str(exc)
