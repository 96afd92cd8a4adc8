"""Never pay twice: a pending photo that is a copy of an analysed photo takes that photo's answer.

A `copy` (catalog.similar: the same picture resized, re-encoded, converted or rotated) gets
the back-end answer its analysed original already has, with no request; its analyses row
says `copied_from`. Never for edits, bursts or merely similar photos, and never over a
photo's own paid answer (only pending photos are considered, and not with --reanalyze).
A copy whose original is on its way to the service in the same run waits for that answer
instead of buying its own. `[analysis] reuse_for_copies = false` turns all of it off. The
offline analyzer's answers are never copied: they cost nothing and come from each file's own
metadata (a copy's dates or camera may differ).
"""

from __future__ import annotations

from collections import deque

from catalog.analysis_db import can_copy, store_copy

NEVER_COPIED = frozenset({"offline"})  # back-ends that cost nothing and read the photo's own metadata


def copy_source(db, photo_id: str, analyzer: str) -> str | None:
    """An analysed photo this one is a copy of, holding an answer of back-end `analyzer`."""
    from catalog.similar.groups import copy_source as analysed_original

    found = analysed_original(db, photo_id)
    return found if found is not None and can_copy(db, found, analyzer) else None


def copies_of(db, photo_id: str) -> set[str]:
    """Every photo this one is a copy of (analysed or not)."""
    from catalog.similar.groups import similar_to

    return {candidate.id for candidate, relation, _ in similar_to(db, photo_id) if relation == "copy"}


class CopyReuse:
    """One analysis run's reuse: which photos take an original's answer, which wait for one."""

    def __init__(self, db, enabled: bool):
        self.db, self.enabled = db, enabled
        self.waiting: dict[str, list[dict]] = {}  # a photo in flight -> its copies waiting for its answer
        self.ready: deque[dict] = deque()  # copies whose original is back: decide again

    def take(self, row: dict, analyzer: str) -> bool:
        """Store an analysed original's answer as this photo's; False when there is none to take."""
        if not self.enabled or analyzer in NEVER_COPIED:
            return False
        source = copy_source(self.db, row["id"], analyzer)
        return source is not None and store_copy(self.db, row["id"], source, analyzer) is not None

    def wait(self, row: dict, analyzer: str, in_flight: set[str]) -> bool:
        """True when an original of this photo is on its way to the service: the row waits for it."""
        if not self.enabled or analyzer in NEVER_COPIED or not in_flight:
            return False
        busy = sorted(copies_of(self.db, row["id"]) & in_flight)
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
        sent: set[str] = set()
        for row in rows:
            if self.enabled and (copy_source(self.db, row["id"], self.analyzer) is not None
                                 or copies_of(self.db, row["id"]) & sent):
                self.saved += 1
                continue
            sent.add(row["id"])
            yield row
