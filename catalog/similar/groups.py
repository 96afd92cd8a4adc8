"""Similar photos read from the catalogue: groups of copies and edits, bursts, one photo's look-alikes.

Only photos present in the library (a file with status 'ok') and fingerprinted take part.
Pairs come from a HashIndex, never from comparing all pairs; each pair is then judged by
catalog.similar.classify. The SQL of the similar-photos commands lives here.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Iterable

from catalog.similar.classify import (BURST_DISTANCE, COPY_DISTANCE, EDIT_DISTANCE, RELATIONS, SIMILAR_DISTANCE, Candidate, keeper, relation)
from catalog.similar.fingerprint import Fingerprint, distance, from_db

CANDIDATES = """
SELECT p.id, p.phash, p.aspect, p.tone, p.detail, p.width, p.height, p.taken_at,
       NULLIF(TRIM(COALESCE(p.camera_make, '') || ' ' || COALESCE(p.camera_model, '')), '') AS camera,
       (SELECT MAX(f.size) FROM files f WHERE f.photo_id = p.id AND f.status = 'ok') AS bytes,
       p.format, p.gps_lat IS NOT NULL AS has_gps
FROM photos p
WHERE p.phash IS NOT NULL {where}
"""
PRESENT = "AND EXISTS (SELECT 1 FROM files f WHERE f.photo_id = p.id AND f.status = 'ok') "


def _candidate(row) -> Candidate:
    (id, phash, aspect, tone, detail, width, height, taken_at, camera, size, fmt, has_gps) = row
    fp = Fingerprint(phash=from_db(phash), aspect=aspect or 0.0, tone=tone or 0, detail=detail or b"")
    return Candidate(id=id, fingerprint=fp, width=width or 0, height=height or 0, taken_at=taken_at,
                     camera=camera, bytes=size or 0, format=fmt, has_gps=bool(has_gps))


def candidates(db, where: str = "", params: Iterable | dict = (), *, present: bool = True) -> list[Candidate]:
    """Fingerprinted photos (only those present in the library, unless told), narrowed by an
    extra `AND ...` clause."""
    where = (PRESENT if present else "") + where
    return [_candidate(r) for r in db.execute(CANDIDATES.format(where=where), params).fetchall()]


def candidate(db, photo_id: str) -> Candidate | None:
    """One photo as a Candidate; None if it is unknown, absent from the library or not fingerprinted."""
    found = candidates(db, "AND p.id = ?", [photo_id])
    return found[0] if found else None


def _components(ids: Iterable[str], pairs: Iterable[tuple], linked) -> list[list[str]]:
    """Connected components (union-find) of the photos joined by the `pairs` that are `linked`;
    a pair already in one component is not asked again (in a cluster of near-identical photos
    most are)."""
    parent = {i: i for i in ids}

    def root(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b, *_ in pairs:
        ra, rb = root(a), root(b)
        if ra != rb and linked(a, b):
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[str, list[str]] = defaultdict(list)
    for i in parent:
        groups[root(i)].append(i)
    return [g for g in groups.values() if len(g) > 1]


def near_groups(db) -> list[list[tuple[Candidate, str | None]]]:
    """Groups of copies and edits of one picture, biggest first: the keeper first (relation None),
    then the others with their relation to it ("copy" or "edit"; a member joined through another
    member, not directly related to the keeper, counts as an edit). Pairs are looked for within
    GROUP_DISTANCE bits: an edit further off is found by similar_to, not here."""
    from catalog.similar.regroup import near_groups_lean, near_key

    return sorted(near_groups_lean(db), key=near_key)


def bursts(db) -> list[list[Candidate]]:
    """Runs of one camera's photos, each within BURST_SECONDS of the one before and related to it
    as a burst, in the order they were taken; biggest first."""
    from catalog.similar.regroup import burst_key, bursts_lean

    return sorted(bursts_lean(db), key=burst_key)


def similar_to(db, photo_id: str) -> list[tuple[Candidate, str, int]]:
    """Every photo related to this one: (candidate, relation, distance), copies first, then edits,
    bursts and look-alikes, nearest first within each. Empty when the photo is not fingerprinted."""
    target = candidate(db, photo_id)
    if target is None:
        return []
    radius = max(EDIT_DISTANCE, BURST_DISTANCE, SIMILAR_DISTANCE)
    near = [i for i, h in db.execute("SELECT id, phash FROM photos WHERE phash IS NOT NULL AND id != ?",
                                     [photo_id]).fetchall()
            if distance(from_db(h), target.fingerprint.phash) <= radius]
    found = []
    for other in _among(db, near):
        said = relation(target, other)
        if said is not None:
            found.append((other, said, distance(target.fingerprint.phash, other.fingerprint.phash)))
    found.sort(key=lambda item: (RELATIONS.index(item[1]), item[2], item[0].id))
    return found


def _among(db, ids: list[str], *, present: bool = True) -> list[Candidate]:
    if not ids:
        return []
    return candidates(db, "AND p.id IN (SELECT value FROM json_each(?))", [json.dumps(ids)], present=present)


def copy_source(db, photo_id: str) -> str | None:
    """An already analysed photo (analysis done) of which this photo is a `copy` (never an edit,
    burst or look-alike), or None. Its files may be gone: the analysis stays good. The nearest
    wins, then the keeper's rules."""
    target = candidate(db, photo_id)
    if target is None:
        return None
    near = [i for i, h in db.execute("SELECT id, phash FROM photos WHERE phash IS NOT NULL AND id != ? "
                                     "AND analysis_status = 'done'", [photo_id]).fetchall()
            if distance(from_db(h), target.fingerprint.phash) <= COPY_DISTANCE]
    copies = [c for c in _among(db, near, present=False) if relation(target, c) == "copy"]
    if not copies:
        return None
    nearest = min(distance(target.fingerprint.phash, c.fingerprint.phash) for c in copies)
    return keeper([c for c in copies if distance(target.fingerprint.phash, c.fingerprint.phash) == nearest]).id

