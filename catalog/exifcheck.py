"""A guard run before piexif reads EXIF: counts that could not fit are refused, not allocated."""

from __future__ import annotations

import struct

TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4,
              16: 8, 17: 8, 18: 8}


def check_counts(tiff: bytes) -> None:
    """Raise ValueError for directories whose entries claim more bytes than the block holds.

    piexif believes an entry's count and builds a struct format that long: a damaged count
    of a few billion would make it allocate gigabytes. We walk the same directories first.
    """
    order = "<" if tiff[:1] == b"I" else ">"
    n, seen = len(tiff), set()
    todo = [struct.unpack_from(order + "I", tiff, 4)[0]]
    while todo:
        off = todo.pop()
        if not off or off in seen:
            continue
        seen.add(off)
        count = struct.unpack_from(order + "H", tiff, off)[0]
        for i in range(count):
            tag, kind, num, field = struct.unpack_from(order + "HHI4s", tiff, off + 2 + 12 * i)
            if TYPE_SIZES.get(kind, 1) * num > n:
                raise ValueError(f"tag {tag} claims {num:,} values in a {n:,}-byte block")
            if tag in (34665, 34853, 40965):  # the Exif, GPS and Interoperability directories
                todo.append(struct.unpack(order + "I", field)[0])
        todo.append(struct.unpack_from(order + "I", tiff, off + 2 + 12 * count)[0])  # IFD1
