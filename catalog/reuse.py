"""Never pay twice: a pending photo that is a copy of an analysed photo takes that photo's answer.

A `copy` (catalog.similar: the same picture resized, re-encoded, converted or rotated) gets
the back-end answer its analysed original already has, with no request; its analyses row
says `copied_from`. Never for edits, bursts or merely similar photos, and never over a
photo's own paid answer (only pending photos are considered, and not with --reanalyze).
A copy whose original is on its way to the service in the same run waits for that answer
instead of buying its own. `[analysis] reuse_for_copies = false` turns all of it off. The
offline analyzer's answers are never copied: they cost nothing and come from each file's own
metadata (a copy's dates or camera may differ).

Which photos are copies of which comes from one HashIndex per run (`Copies`): the per-photo
look-ups of catalog.similar.groups read every fingerprint, fine for one photo, too slow for
each photo of a first run over a large library. `Copies.original` picks the analysed copy to
take from: the nearest, then by the keeper's rules; at most MATES copies are looked at a photo.
"""

from __future__ import annotations

from collections import deque

from catalog.analysis_db import can_copy, store_copy

NEVER_COPIED = frozenset({"offline"})  # back-ends that cost nothing and read the photo's own metadata
MATES = 64  # copies looked at per photo: in a cluster of thousands of near-identical photos the
            # nearest few are enough, and looking at all of them grows with the square


class Copies:
    """Which catalogued photos each photo is a copy of, from one index over every fingerprint."""

    def __init__(self, db):
        from catalog.similar.classify import COPY_DISTANCE
        from catalog.similar.groups import candidates
        from catalog.similar.index import HashIndex

        self.radius = COPY_DISTANCE
        self.every = {c.id: c for c in candidates(db, present=False)}  # an original's files may be gone
        self.index = HashIndex((c.id, c.fingerprint.phash) for c in self.every.values())

    def of(self, photo_id: str) -> set[str]:
        """The photos this one is a copy of (analysed or not); none when it has no fingerprint."""
        from catalog.similar.classify import relation

        me = self.every.get(photo_id)
        if me is None:
            return set()
        return {key for key, _ in self.index.within(me.fingerprint.phash, self.radius, limit=MATES + 1)
                if key != photo_id and relation(me, self.every[key]) == "copy"}

    def original(self, photo_id: str, ids) -> str | None:
        """Of these copies of the photo, the nearest, then the keeper's rules (catalog.similar)."""
        from catalog.similar.classify import keeper
        from catalog.similar.fingerprint import distance

        me, found = self.every.get(photo_id), [self.every[i] for i in ids if i in self.every]
        if me is None or not found:
            return None
        gaps = {c.id: distance(me.fingerprint.phash, c.fingerprint.phash) for c in found}
        return keeper([c for c in found if gaps[c.id] == min(gaps.values())]).id


def copy_source(db, photo_id: str, analyzer: str, copies: set[str], index: Copies) -> str | None:
    """An analysed photo this one is a copy of, holding an answer of back-end `analyzer`."""
    return index.original(photo_id, [other for other in copies if can_copy(db, other, analyzer)])


class CopyReuse:
    """One analysis run's reuse: which photos take an original's answer, which wait for one."""

    def __init__(self, db, enabled: bool):
        self.db, self.enabled = db, enabled
        self._copies: Copies | None = None  # built when first needed
        self.waiting: dict[str, list[dict]] = {}  # a photo in flight -> its copies waiting for its answer
        self.ready: deque[dict] = deque()  # copies whose original is back: decide again

    def _copies_of(self, photo_id: str) -> set[str]:
        if self._copies is None:
            self._copies = Copies(self.db)
        return self._copies.of(photo_id)

    def take(self, row: dict, analyzer: str) -> bool:
        """Store an analysed original's answer as this photo's; False when there is none to take."""
        if not self.enabled or analyzer in NEVER_COPIED:
            return False
        copies = self._copies_of(row["id"])
        source = copy_source(self.db, row["id"], analyzer, copies, self._copies) if copies else None
        return source is not None and store_copy(self.db, row["id"], source, analyzer) is not None

    def wait(self, row: dict, analyzer: str, in_flight: set[str]) -> bool:
        """True when an original of this photo is on its way to the service: the row waits for it."""
        if not self.enabled or analyzer in NEVER_COPIED or not in_flight:
            return False
        busy = sorted(self._copies_of(row["id"]) & in_flight)
        if busy:
            self.waiting.setdefault(busy[0], []).append(row)
        return bool(busy)

    def finished(self, photo_id: str) -> None:
        """This photo's request is over (answered or failed): its waiting copies are decided again."""
        self.ready.extend(self.waiting.pop(photo_id, ()))

    def next_ready(self) -> dict | None:
        return self.ready.popleft() if self.ready else None


class SavedRequests:
    """What `analyze --dry-run` says reuse would save: the pending rows, minus the copies."""

    def __init__(self, db, analyzer: str, enabled: bool):
        self.db, self.analyzer, self.enabled = db, analyzer, enabled and analyzer not in NEVER_COPIED
        self.saved = 0

    def remaining(self, rows):
        """The rows that would still be sent, in order; counts the others in `saved`."""
        copies, sent = Copies(self.db) if self.enabled else None, set()
        for row in rows:
            if copies is not None and (mates := copies.of(row["id"])) and (
                    mates & sent or any(can_copy(self.db, other, self.analyzer) for other in mates)):
                self.saved += 1
                continue
            sent.add(row["id"])
            yield row
