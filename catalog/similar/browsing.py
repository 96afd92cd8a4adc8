"""The near-duplicate groups and bursts kept in the catalogue (`photo_groups`), for browsing.

Datasette only reads the catalogue, so the groups it shows (the `similar_groups` view and the
`near_duplicates` and `bursts` queries) are computed by the writer: after each scan, by
`catalog scan` and the nightly run. `catalog duplicates --near/--bursts` compute them afresh.
"""

from __future__ import annotations


# What a scan reports that can change the groups: photos and files that came, went or changed,
# and fingerprints made for photos catalogued before them.
GROUP_INPUTS = ("new", "changed", "moved", "missing", "revived", "fingerprinted")


def scan_changed_groups(scanned: dict) -> bool:
    """True when this scan (its summary as a dict) may have changed the groups."""
    return any(scanned.get(key) for key in GROUP_INPUTS)


def stored_counts(db) -> dict:
    """How many near-duplicate groups and bursts are stored, without grouping again."""
    counts = dict(db.execute("SELECT kind, COUNT(DISTINCT group_no) FROM photo_groups GROUP BY kind").fetchall())
    return {"near_groups": counts.get("near", 0), "bursts": counts.get("burst", 0)}


def refresh_groups(db, *, changed: bool = True) -> dict:
    """Replace the stored groups by the current ones, in their listing order; returns their counts.

    `changed=False` (the scan found nothing new, changed, moved or gone) keeps the stored
    groups: grouping 100k photos takes seconds, a no-change night should not pay them.
    """
    if not changed:
        return stored_counts(db)
    from catalog.similar.groups import bursts, near_groups  # grouping's imports: only when it runs

    near = near_groups(db)
    shots = bursts(db)
    rows = [("near", number, position, candidate.id, relation)
            for number, group in enumerate(near, 1) for position, (candidate, relation) in enumerate(group)]
    rows += [("burst", number, position, candidate.id, None)
             for number, group in enumerate(shots, 1) for position, candidate in enumerate(group)]
    with db.atomic():
        db.execute("DELETE FROM photo_groups")
        db.conn.executemany("INSERT INTO photo_groups (kind, group_no, position, photo_id, relation) "
                            "VALUES (?, ?, ?, ?, ?)", rows)
    return {"near_groups": len(near), "bursts": len(shots)}
