"""The near-duplicate groups and bursts kept in the catalogue (`photo_groups`), for browsing.

Datasette only reads the catalogue, so the groups it shows (the `similar_groups` view and the
`near_duplicates` and `bursts` queries) are computed by the writer: after each scan, by
`catalog scan` and the nightly run. `catalog duplicates --near/--bursts` compute them afresh.
"""

from __future__ import annotations

from catalog.similar.groups import bursts, near_groups


def refresh_groups(db) -> dict:
    """Replace the stored groups by the current ones, in their listing order; returns their counts."""
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
