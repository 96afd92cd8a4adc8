"""One shape rule: shape_of, its SQL spelling and the gallery view's frozen copy give the same answers."""

from __future__ import annotations

import itertools

from catalog.db import now
from catalog.shape import shape_of, shape_sql

SIZES = [(100, 100), (105, 100), (106, 100), (100, 105), (100, 106), (4000, 3000), (3000, 4000), (1, 1000),
         (1000, 1), (96, 100), (95, 100), (None, None)]
ORIENTATIONS = [None, 1, 3, 5, 6, 8]


def test_examples():
    assert shape_of(4000, 3000) == "landscape" and shape_of(3000, 4000) == "portrait"
    assert shape_of(4000, 3000, orientation=6) == "portrait"  # a camera held upright
    assert shape_of(1000, 1040) == shape_of(1040, 1000) == "square"  # within 5 %
    assert shape_of(None, None) is None and shape_of(0, 100) is None


def test_sql_and_gallery_agree_with_shape_of(db):
    cases = list(itertools.product(SIZES, ORIENTATIONS)) + [((4000, 3000), 1, "portrait")]
    stamp = now()
    for i, case in enumerate(cases):
        (width, height), orientation, *analysed = case
        photo_id = f"p{i:03d}"
        db["photos"].insert({"id": photo_id, "first_seen": stamp, "width": width, "height": height,
                             "orientation": orientation, "shape": analysed[0] if analysed else None})
        db["files"].insert({"path": f"/lib/{photo_id}.jpg", "root": "/lib", "folder": "/lib",
                            "name": f"{photo_id}.jpg", "size": 1, "mtime_ns": 1, "status": "ok",
                            "photo_id": photo_id, "first_seen": stamp, "last_seen": stamp})
    rows = db.query(f"SELECT p.id, {shape_sql()} AS shape, g.orientation AS gallery "
                    "FROM photos p JOIN gallery g ON g.photo_id = p.id ORDER BY p.id")
    for case, row in zip(cases, rows, strict=True):
        (width, height), orientation, *analysed = case
        expected = analysed[0] if analysed else shape_of(width, height, orientation)
        assert row["shape"] == row["gallery"] == expected, case
