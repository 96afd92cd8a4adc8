"""The near-duplicate groups and bursts kept in the catalogue (`photo_groups`), for browsing.

Datasette only reads the catalogue, so the groups it shows (the `similar_groups` view and the
`near_duplicates` and `bursts` queries) are computed by the writer: after each scan, by
`catalog scan` and the nightly run, from the changes the schema's triggers noted in
`group_changes`: a few changed photos regroup only the groups they touch
(catalog.similar.incremental), many or a first scan the whole library (catalog.similar.regroup).
`group_no` is a group's id, kept while the group is; the listing order is `listed`, a key.
`catalog duplicates --near/--bursts` compute them afresh.
"""

from __future__ import annotations

import json
import logging

log = logging.getLogger("catalog.similar")
# More photos changed than one in FULL_SHARE (and FULL_AT_LEAST), and the whole library is
# regrouped. Measured on 100k photos (bench/similar_refresh.py, 2 loaded cores): 10 changes cost
# 0.1 s (~10 ms each: index look-ups and the walk), a full regroup 24 s (~0.24 ms a photo), so
# they meet near one change in 40 photos; one in 100 keeps the walk well on the cheap side
# (changes that land in big groups walk further).
FULL_SHARE = 100
FULL_AT_LEAST = 200
PAGE = 10_000  # group rows written at a time


def stored_counts(db) -> dict:
    """How many near-duplicate groups and bursts are stored, without grouping again."""
    counts = dict(db.execute("SELECT kind, COUNT(DISTINCT group_no) FROM photo_groups GROUP BY kind").fetchall())
    return {"near_groups": counts.get("near", 0), "bursts": counts.get("burst", 0)}


def listed(kind: str, group) -> str:
    """A group's place in the listing as text that sorts like near_key / burst_key (biggest
    first, then the keeper's id, or the first shot's time and id): photo_groups.listed."""
    size = f"{999_999_999 - len(group):09d}"
    if kind == "near":
        return f"{size}\t{group[0][0].id}"
    return f"{size}\t{group[0].taken_at}\t{group[0].id}"


def _rows(kind: str, groups, first: int) -> list[tuple]:
    rows = []
    for number, group in enumerate(groups, first):
        key = listed(kind, group)
        for position, member in enumerate(group):
            c, said = member if kind == "near" else (member, None)
            rows.append((kind, number, position, c.id, said, key if position == 0 else None))
    return rows


INSERT = "INSERT INTO photo_groups (kind, group_no, position, photo_id, relation, listed) VALUES (?, ?, ?, ?, ?, ?)"


def regroup_all(db, upto: int | None = None) -> None:
    """Replace every stored group by the library's groups now; forget the changes noted up to
    rowid `upto` (all when None). Each group is written as it is found, numbered in that order
    (`listed` orders the listing), so none is held: a million photos put hundreds of thousands
    in groups."""
    from catalog.similar.regroup import bursts_lean, near_groups_lean

    with db.atomic():
        db.execute("DELETE FROM photo_groups")
        for kind, groups in (("near", near_groups_lean(db)), ("burst", bursts_lean(db))):
            rows = []
            for number, group in enumerate(groups, 1):
                rows += _rows(kind, [group], number)
                if len(rows) >= PAGE:
                    db.conn.executemany(INSERT, rows)
                    rows = []
            db.conn.executemany(INSERT, rows)
        db.execute("DELETE FROM group_changes WHERE ? IS NULL OR rowid <= ?", [upto, upto])


def regroup_changed(db, upto: int) -> None:
    """Regroup only around the photos noted in group_changes up to rowid `upto`; raises
    incremental.TooBroad when that cannot be vouched for."""
    from catalog.similar.incremental import burst_changes, near_changes
    from catalog.similar.regroup import burst_key, near_key

    noted = db.execute("SELECT photo_id, taken_at FROM group_changes WHERE rowid <= ?", [upto]).fetchall()
    changed = {i for i, _ in noted}
    near = near_changes(db, changed)
    shots = burst_changes(db, changed, {t for _, t in noted if t})
    with db.atomic():
        for kind, (old, groups) in (("near", near), ("burst", shots)):
            db.execute("DELETE FROM photo_groups WHERE kind = ? AND group_no IN (SELECT value FROM json_each(?))",
                       [kind, json.dumps(sorted(old))])
            (last,) = db.execute("SELECT COALESCE(MAX(group_no), 0) FROM photo_groups WHERE kind = ?", [kind]).fetchone()
            db.conn.executemany(INSERT, _rows(kind, sorted(groups, key=near_key if kind == "near" else burst_key), last + 1))
        db.execute("DELETE FROM group_changes WHERE rowid <= ?", [upto])


def refresh_groups(db) -> dict:
    """Bring the stored groups up to date with the changes the catalogue noted since the last
    time; returns their counts. Nothing noted (a no-change night): nothing done. A few: only the
    groups they touch. Many (more than one photo in FULL_SHARE, at least FULL_AT_LEAST): all."""
    from catalog.similar.incremental import TooBroad

    changed, upto = db.execute("SELECT COUNT(DISTINCT photo_id), MAX(rowid) FROM group_changes").fetchone()
    if not changed:
        return stored_counts(db)
    (photos,) = db.execute("SELECT COALESCE(MAX(rowid), 0) FROM photos").fetchone()  # about the library's size
    if changed > max(FULL_AT_LEAST, photos // FULL_SHARE):
        regroup_all(db, upto)
    else:
        try:
            regroup_changed(db, upto)
        except TooBroad as exc:
            log.info("regrouping the whole library: %s", exc)
            regroup_all(db, upto)
    return stored_counts(db)
