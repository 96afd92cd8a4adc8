"""Regroup only what changed: the groups and bursts the photos noted in `group_changes` touch.

The schema's triggers (m016) note every photo whose files came, went or changed status and
every photo whose fingerprint or facts changed, with its capture time then. From those:

- near groups: the stored groups holding a noted photo are taken apart, and the groups around
  their photos found again by walking the links (copy or edit within GROUP_DISTANCE bits) from
  them; each photo's neighbours come from the schema's indexes of the hash's three chunks
  (PHASH_CHUNKS: a few hundred index look-ups a photo, whatever the library's size);
- bursts: the days around each noted photo's capture time (then and now) are grouped again from
  the photos taken on them (an indexed range of photos.taken_at).

Both give exactly what regrouping the whole library would: a group is a connected component of
the links, and a burst a run of the shots in order, and only those that hold or border a
changed photo can differ. Where that cannot be vouched for cheaply (a cluster of more than
WALK_LIMIT linked photos, a burst running to the edge of the days read), the caller regroups
everything instead.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

from catalog.similar.classify import BURST_SECONDS, GROUP_DISTANCE, relation, taken_time
from catalog.similar.fingerprint import distance, from_db
from catalog.similar.index import _masks
from catalog.similar.regroup import DATED, arranged, by_rowid, bursts_lean

WALK_LIMIT = 5_000  # photos linked to the changed ones: past this, a full regroup is no dearer
IDS = "SELECT value FROM json_each(?)"
PHASH_CHUNKS = ((0, 22), (22, 21), (43, 21))  # (shift, width): the expression indexes of m016


class TooBroad(Exception):
    """The change reaches too far to regroup a part: regroup everything."""


def stored_groups(db, kind: str, ids) -> set[int]:
    """The numbers of the stored groups of this kind holding any of these photos."""
    return {n for (n,) in db.execute(f"SELECT DISTINCT group_no FROM photo_groups WHERE kind = ? AND photo_id IN ({IDS})",
                                     [kind, json.dumps(sorted(ids))]).fetchall()}


def members(db, kind: str, numbers) -> set[str]:
    return {i for (i,) in db.execute(f"SELECT photo_id FROM photo_groups WHERE kind = ? AND group_no IN ({IDS})",
                                     [kind, json.dumps(sorted(numbers))]).fetchall()}


def neighbours(db, h: int, radius: int = GROUP_DISTANCE) -> list[int]:
    """The rowids of the fingerprinted photos within `radius` bits of hash `h` (present or not):
    by the pigeonhole rule, each shares one of the three chunks within radius // 3 bits."""
    found = set()
    for shift, width in PHASH_CHUNKS:
        mask = (1 << width) - 1
        value = (h >> shift) & mask
        rows = db.execute(f"SELECT rowid, phash FROM photos WHERE ((phash >> {shift}) & {mask}) IN ({IDS})",
                          [json.dumps([value ^ e for e in _masks(width, radius // len(PHASH_CHUNKS))])])
        found.update(r for r, other in rows if distance(from_db(other), h) <= radius)
    return sorted(found)


def near_changes(db, changed: set[str]) -> tuple[set[int], list]:
    """(stored near groups to drop, the groups that replace them) for these changed photos."""
    from catalog.similar.groups import _components, candidates

    seen: dict[int, object] = {}  # rowid -> Candidate, or None when not present
    explored, edges, frontier = {}, [], []
    old: set[int] = set()
    asked: set[str] = set()
    reached = set(changed)
    while reached:  # the changed photos, then each photo the walk reaches: their stored groups go
        old |= stored_groups(db, "near", reached)
        need = (reached | members(db, "near", old)) - asked
        asked |= need
        for c in candidates(db, f"AND p.id IN ({IDS})", [json.dumps(sorted(need))]):
            explored[c.id] = c
            frontier.append(c)
        reached = set()
        while frontier:
            c = frontier.pop()
            near = neighbours(db, c.fingerprint.phash)
            unseen = [r for r in near if r not in seen]
            if unseen:
                found = by_rowid(db, unseen)
                seen.update((r, found.get(r)) for r in unseen)
            for other in (seen[r] for r in near):
                if other is None or other.id == c.id or relation(c, other) not in ("copy", "edit"):
                    continue
                edges.append((c.id, other.id))
                if other.id not in explored:
                    explored[other.id] = other
                    frontier.append(other)
                    reached.add(other.id)
            if len(explored) > WALK_LIMIT:
                raise TooBroad(f"more than {WALK_LIMIT} photos linked to the changed ones")
        asked |= reached
    groups = [arranged([explored[i] for i in ids]) for ids in _components(explored, edges, lambda a, b: True)]
    return old, groups


def _days(db, changed: set[str], noted: set[str]) -> list[tuple[date, date]]:
    """The stretches of days to read again: each capture time noted or current, a day either side."""
    found = {t for (t,) in db.execute(f"SELECT taken_at FROM photos WHERE id IN ({IDS}) AND taken_at IS NOT NULL",
                                      [json.dumps(sorted(changed))]).fetchall()} | noted
    days = sorted({when.date() for when in map(taken_time, found) if when is not None})
    spans: list[tuple[date, date]] = []
    for day in days:
        start, end = day - timedelta(days=1), day + timedelta(days=2)
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
        else:
            spans.append((start, end))
    return spans


def burst_changes(db, changed: set[str], noted: set[str]) -> tuple[set[int], list]:
    """(stored bursts to drop, the bursts that replace them) for these changed photos, whose
    capture times when noted were `noted`."""
    old = stored_groups(db, "burst", changed)
    spans = _days(db, changed | members(db, "burst", old), noted)
    if not spans:
        return old, []
    inside = " OR ".join("(p.taken_at >= ? AND p.taken_at < ?)" for _ in spans)
    params = [d.isoformat() for span in spans for d in span]
    old |= {n for (n,) in db.execute(
        f"SELECT DISTINCT pg.group_no FROM photo_groups pg JOIN photos p ON p.id = pg.photo_id "
        f"WHERE pg.kind = 'burst' AND ({inside})", params).fetchall()}
    edges = [datetime.combine(d, datetime.min.time()) for span in spans for d in span]
    margin = timedelta(seconds=BURST_SECONDS)

    def within(value: str | None) -> bool:
        when = taken_time(value)
        return when is not None and any(start + margin < when < end - margin
                                        for start, end in zip(edges[::2], edges[1::2]))

    for (taken_at,) in db.execute(
            f"SELECT p.taken_at FROM photo_groups pg JOIN photos p ON p.id = pg.photo_id "
            f"WHERE pg.kind = 'burst' AND pg.group_no IN ({IDS}) AND p.id NOT IN ({IDS})",
            [json.dumps(sorted(old)), json.dumps(sorted(changed))]).fetchall():
        if not within(taken_at):
            raise TooBroad("a stored burst reaches past the days read again")
    sql = DATED.replace("ORDER BY p.id", f"AND ({inside}) ORDER BY +p.id")  # by the index of taken_at
    runs = list(bursts_lean(db, sql, params))
    for run in runs:
        if not (within(run[0].taken_at) and within(run[-1].taken_at)):
            raise TooBroad("a burst runs to the edge of the days read again")
    return old, runs
