"""One file's write-back: merge into what is there, verify, journal ahead, replace atomically, claim."""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import asdict, dataclass, field

from catalog import db as catalog_db
from catalog.db import db_text
from catalog.settings import Config
from catalog.errors import CatalogError, ChangedMeanwhile, WriteBackError
from catalog.identity import hash_buffer, sniff
from catalog.writeback import embed, fields, iptc, journal, xmp, xmp_merge
from catalog.writeback.atomic import Fingerprint, atomic_write, inside, read_file, sweep
from catalog.writeback.sidecar import sidecar_path, write_sidecar

log = logging.getLogger("catalog.writeback")
EMBEDDABLE = ("JPEG", "PNG", "WEBP", "TIFF")
WITH_IPTC = ("JPEG", "PNG", "TIFF")


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


class Writer:
    def __init__(self, db, config: Config, summary: WritebackSummary, run_id: int | None, dry_run: bool):
        self.db, self.config, self.summary, self.run_id, self.dry_run = db, config, summary, run_id, dry_run
        self.wb = config.writeback
        self.swept: set[str] = set()

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
        if self.dry_run or change.status == "skipped" or change.message:
            s.changes.append(asdict(change))

    def _roots(self, row) -> list[str]:
        """Where write-back may write: the file's library root and the configured roots."""
        return [catalog_db.fs_path({"path": row["root"]}), *self.config.library.roots]

    def _photo(self, row, photo: str) -> tuple[str, Fingerprint]:
        """The file that holds the photo's bytes and its fingerprint, unchanged since the scan.

        A symlinked photo is followed only with library.follow_symlinks, and only to a file
        inside the library roots; the link itself is never replaced.
        """
        real = photo
        st = os.lstat(photo)
        if stat.S_ISLNK(st.st_mode):
            if not self.config.library.follow_symlinks:
                raise WriteBackError("is a symbolic link and library.follow_symlinks is off: left alone")
            real = os.path.realpath(photo)
            st = os.lstat(real)
        if not stat.S_ISREG(st.st_mode):
            raise WriteBackError("is not a regular file any more: left alone")
        if not inside(real, self._roots(row)):
            raise WriteBackError(f"lies in {os.path.realpath(real)}, outside the library roots: nothing written there")
        # Fresh from the ledger: an earlier write this run (through a link) may have moved it on.
        ledger = self.db.execute("SELECT size, mtime_ns FROM files WHERE path = ?", [row["path"]]).fetchone()
        row["size"], row["mtime_ns"] = ledger or (None, None)
        if (st.st_size, st.st_mtime_ns) != (row["size"], row["mtime_ns"]):
            raise WriteBackError("changed since the last scan: run `catalog scan` first")
        return real, Fingerprint.of(st)

    def _commit(self, *, row, kind: str, fmt: str, target: str, real: str, new: bytes,
                before: Fingerprint | None, snapshot: bytes | None, key: str, owned, description) -> None:
        """Journal ahead, replace atomically, read back; only then claim the keywords as ours."""
        previous = journal.state(self.db, key)
        claim = journal.claim_of(key=key, row=row, kind=kind, keywords=owned, description=description,
                                 run_id=self.run_id)
        sha = journal.digest(new)
        ids: list[int] = []
        folder = os.path.dirname(os.path.abspath(real))
        if folder not in self.swept:  # a killed run's temp files go the next time we write there
            self.swept.add(folder)
            sweep(folder)

        def ahead(written: os.stat_result) -> None:
            ids.append(journal.begin(self.db, run_id=self.run_id, target=target, real=real, path=row["path"],
                                     kind=kind, fmt=fmt, before=before, snapshot=snapshot, previous=previous,
                                     written=written, sha256=sha, claim=claim))

        try:
            if kind == "sidecar":
                write_sidecar(real, new, expect=before, before_rename=ahead)
            else:
                atomic_write(real, new, expect=before, before_rename=ahead)
        except BaseException as exc:  # the file says whether the write landed (a signal may come late)
            if ids and journal.settle(self.db, ids[0]) == "pending" and isinstance(exc, ChangedMeanwhile):
                journal.drop(self.db, ids[0])  # refused before the rename: the bytes there are theirs
            raise
        if journal.settle(self.db, ids[0]) != "done":
            raise WriteBackError("written, but it no longer reads back as written (another program?): "
                                 "its keywords are not counted as ours; see --undo")

    def sidecar(self, row, photo: str, tags, description, *, note: str | None = None) -> None:
        wb = self.wb
        target = self._sidecar_of(row, photo)
        key = db_text(target)[0]
        change = Change(row["path"], key, "sidecar", message=note)
        try:
            real_photo, _ = self._photo(row, photo)
            allowed = [*self._roots(row), *filter(None, [wb.sidecar_dir])]
            if not inside(os.path.dirname(os.path.abspath(target)), allowed):
                raise WriteBackError("its sidecar would lie outside the library roots: nothing written")
            try:
                existing, before = read_file(target, limit=xmp.MAX_BYTES, what="the sidecar")
            except FileNotFoundError:
                existing, before = None, None
            packet_in_photo, photo_descriptions = fields.photo_metadata(real_photo)
            base = existing if existing is not None else packet_in_photo
            state = journal.state(self.db, key)
            # A new sidecar seeded from the photo inherits what we embedded there as ours.
            embed_state = journal.state(self.db, row["path"])
            plan_state = state or (embed_state if existing is None else None)
            facts = xmp.read_xmp(base) if base else xmp.XmpFacts()
            change.add, change.remove, owned = fields.plan(list(facts.subject), plan_state, tags)
            ours = {description, *(s["description"] for s in (state, embed_state) if s)}
            if fields.users_description([facts.description, *photo_descriptions], ours):
                description = None  # the user described this photo: ours goes nowhere
            packet = xmp_merge.merge_xmp(base, add=tags, remove=change.remove, description=description,
                                         replace_description=fields.may_replace(facts.description, plan_state),
                                         parent=wb.hierarchy_parent, sources=row["provenance"])
            change.description = xmp.read_xmp(packet).description != facts.description
            if existing is not None and packet == existing:
                change.status = "unchanged"
            elif not self.dry_run:
                self._commit(row=row, kind="sidecar", fmt="XMP", target=target, real=target, new=packet,
                             before=before, snapshot=existing, key=key, owned=owned,
                             description=fields.ours_in(packet, description))
        except (OSError, ValueError, CatalogError) as exc:
            change.status, change.message = "skipped", _why(exc)
        self._record(change)

    def embed(self, row, photo: str, tags, description) -> None:
        change = Change(row["path"], row["path"], "embed")
        try:
            real, scanned = self._photo(row, photo)
            if not os.stat(real).st_mode & 0o222:
                raise CatalogError("the file is read-only: left alone (use mode = \"sidecar\")")
            data, before = read_file(real, what="the photo")
            if before != scanned:
                raise WriteBackError("changed while being read: left alone, tried again next run")
            fmt = sniff(data[:32])
            if fmt not in EMBEDDABLE:
                self.sidecar(row, photo, tags, description,
                             note=f"{fmt or 'this format'} has no lossless writer here: wrote a sidecar instead")
                return
            current = embed.read_embedded(data, fmt)
            state = journal.state(self.db, row["path"])
            facts = xmp.read_xmp(current.xmp) if current.xmp else xmp.XmpFacts()
            xp_words = fields.xp_keywords(current.exif)
            iptc_words = iptc.keywords_of(current.iptc) if current.iptc else []
            change.add, change.remove, owned = fields.plan([*facts.subject, *iptc_words, *xp_words], state, tags)
            found = fields.descriptions(current)
            ours = {description, *(s["description"] for s in (state, self._sidecar_state(row, photo)) if s)}
            if fields.users_description([*found, self._sidecar_description(row, photo)], ours):
                description = None  # the user described this photo somewhere: ours goes nowhere
            packet = xmp_merge.merge_xmp(current.xmp, add=tags, remove=change.remove, description=description,
                                         replace_description=fields.may_replace(facts.description, state),
                                         parent=self.wb.hierarchy_parent, sources=row["provenance"])
            iim = None
            if fmt in WITH_IPTC:
                iim = iptc.merge_iptc(current.iptc, add=tags, remove=change.remove, caption=description,
                                      replace_caption=fields.may_replace(found[2], state))
            # EXIF: XPKeywords merged like the others; ImageDescription only where empty or ours.
            xp = [w for w in xp_words if w not in change.remove]
            xp += [t for t in tags if t.casefold() not in fields.fold(xp)]
            new_description = description if (not found[1] or fields.may_replace(found[1], state)) else None
            new = embed.write_embedded(data, fmt, xmp=packet, iptc=iim, keywords=xp, description=new_description)
            change.description = xmp.read_xmp(packet).description != facts.description
            if new == data:
                change.status = "unchanged"
            elif not self.dry_run:
                self._verify(data, new, fmt, tags)
                self._commit(row=row, kind="embed", fmt=fmt, target=photo, real=real, new=new, before=before,
                             snapshot=embed.snapshot(data, fmt), key=row["path"], owned=owned,
                             description=fields.ours_in(packet, description))
        except (OSError, ValueError, CatalogError) as exc:
            change.status, change.message = "skipped", _why(exc)
        self._record(change)

    def _sidecar_of(self, row, photo: str) -> str:
        return sidecar_path(photo, style=self.wb.sidecar_name, sidecar_dir=self.wb.sidecar_dir or None,
                            root=catalog_db.fs_path({"path": row["root"]}))

    def _sidecar_description(self, row, photo: str) -> str | None:
        """The description in the photo's sidecar, if it has one we can read."""
        try:
            return fields.sidecar_description(self._sidecar_of(row, photo))
        except ValueError:
            return None

    def _sidecar_state(self, row, photo: str) -> dict | None:
        try:
            return journal.state(self.db, db_text(self._sidecar_of(row, photo))[0])
        except ValueError:
            return None

    @staticmethod
    def _verify(old: bytes, new: bytes, fmt: str, tags) -> None:
        """Pixels untouched (same payload identity) and our keywords readable back."""
        if hash_buffer(fmt, new).digest != hash_buffer(fmt, old).digest:
            raise CatalogError("verification failed: the image data would change; nothing written")
        written = embed.read_embedded(new, fmt)
        found = set(xmp.read_xmp(written.xmp).subject) if written.xmp else set()
        if not fields.fold(tags) <= fields.fold(found):  # a person's "Town" stands for our "town"
            raise CatalogError("verification failed: the keywords do not read back; nothing written")


def _why(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return f"cannot write: {exc.strerror or exc}"
    return str(exc)
