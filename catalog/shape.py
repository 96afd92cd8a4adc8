"""The shape rule: landscape, portrait or square (within 5 %), as the photo is seen upright.

One rule in two spellings: `shape_of` for sizes in hand (an analyzer measuring an upload) and
`shape_sql` for queries over the photos table (search's --orientation and its results). Where
an analyzer named the shape, queries take its word; otherwise the stored size decides, turned
by the EXIF orientation. The gallery view (migration m005) keeps its own frozen copy, which
tests/test_shape.py holds to this one.
"""

from __future__ import annotations

SHAPES = ("landscape", "portrait", "square")
WIDER, NARROWER = 105, 100  # landscape when width * 100 > height * 105: 5 % wider than tall


def shape_of(width: int | None, height: int | None, orientation: int | None = None) -> str | None:
    """The shape of a width x height image (None when its size is unknown).

    EXIF orientations 5 to 8 turn the picture a quarter: its stored width is its upright height.
    """
    if not width or not height:
        return None
    if orientation is not None and 5 <= orientation <= 8:
        width, height = height, width
    if width * NARROWER > height * WIDER:
        return "landscape"
    if width * WIDER < height * NARROWER:
        return "portrait"
    return "square"


def shape_sql(photo: str = "p") -> str:
    """`shape_of` as an SQL expression over the photos row `photo`, preferring the analysed shape."""
    upright_w = f"(CASE WHEN {photo}.orientation BETWEEN 5 AND 8 THEN {photo}.height ELSE {photo}.width END)"
    upright_h = f"(CASE WHEN {photo}.orientation BETWEEN 5 AND 8 THEN {photo}.width ELSE {photo}.height END)"
    return (f"COALESCE(NULLIF({photo}.shape, 'unknown'), CASE"
            f" WHEN NULLIF({photo}.width, 0) IS NULL OR NULLIF({photo}.height, 0) IS NULL THEN NULL"
            f" WHEN {upright_w} * {NARROWER} > {upright_h} * {WIDER} THEN 'landscape'"
            f" WHEN {upright_w} * {WIDER} < {upright_h} * {NARROWER} THEN 'portrait'"
            " ELSE 'square' END)")
