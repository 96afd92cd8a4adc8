"""Near-neighbour search over 64-bit hashes: multi-index hashing, so no pass compares all pairs.

The 64 bits are cut into `m` chunks. Two hashes within `radius` bits differ, by the pigeonhole
principle, by at most radius // m bits in at least one chunk; so each chunk has a table from
its value to the keys holding it, and a search probes, in every table, the values within
radius // m bits of the query's chunk. A candidate is then checked on all 64 bits. `m` is
chosen per radius (CHUNKS) to keep both the probes and the candidates few.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations
from math import comb
from typing import Hashable, Iterable, Iterator

BITS = 64


def chunk_count(n: int, radius: int, *, pairs: bool = True) -> int | None:
    """The number of chunks that makes the least work for `n` hashes spread evenly (probes of
    the values within radius // m bits, plus candidates to check), or None when checking every
    hash (every pair) is less work."""
    def work(m: int) -> float:
        width, s = BITS // m, radius // m
        near = sum(comb(width, k) for k in range(min(s, width) + 1))
        hits = n / 2 ** width  # hashes sharing one chunk value
        return m * near * (min(n, 2 ** width) * (1 + hits / 2) if pairs else 1 + hits)
    best = min(range(1, min(BITS, radius + 1) + 1), key=work)
    return best if work(best) < (n * n / 2 if pairs else n) else None


def _spans(m: int) -> list[tuple[int, int]]:
    """(shift, width) of each of `m` chunks covering 64 bits, widths differing by at most one."""
    widths = [BITS // m + (i < BITS % m) for i in range(m)]
    spans, shift = [], 0
    for w in widths:
        spans.append((shift, w))
        shift += w
    return spans


def _masks(width: int, s: int) -> list[int]:
    """Every value of `width` bits with at most `s` bits set (0 first)."""
    out = [0]
    for k in range(1, min(s, width) + 1):
        out.extend(sum(1 << b for b in bits) for bits in combinations(range(width), k))
    return out


class HashIndex:
    """Keys and their 64-bit hashes; `within` and `pairs` answer Hamming-radius questions."""

    def __init__(self, items: Iterable[tuple[Hashable, int]]):
        self.keys: list[Hashable] = []
        self.hashes: list[int] = []
        for key, h in items:
            if not 0 <= h < 1 << BITS:
                raise ValueError(f"not a 64-bit unsigned hash: {h!r} (key {key!r})")
            self.keys.append(key)
            self.hashes.append(h)
        self._tables: dict[int, list[tuple[int, int, dict[int, list[int]]]]] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def _tables_for(self, m: int) -> list[tuple[int, int, dict[int, list[int]]]]:
        """Per chunk: (shift, width, chunk value -> positions), built on first use per `m`."""
        if m not in self._tables:
            tables = []
            for shift, width in _spans(m):
                table: dict[int, list[int]] = defaultdict(list)
                mask = (1 << width) - 1
                for pos, h in enumerate(self.hashes):
                    table[(h >> shift) & mask].append(pos)
                tables.append((shift, width, dict(table)))
            self._tables[m] = tables
        return self._tables[m]

    def within(self, h: int, radius: int) -> list[tuple[Hashable, int]]:
        """Every (key, distance) whose hash is within `radius` bits of `h`, nearest first."""
        if radius < 0:
            return []
        radius = min(radius, BITS)
        hashes = self.hashes
        m = chunk_count(len(hashes), radius, pairs=False)
        if m is None:  # few hashes or a wide radius: look at each
            near = ((d, pos) for pos, other in enumerate(hashes) if (d := (other ^ h).bit_count()) <= radius)
            return [(self.keys[pos], d) for d, pos in sorted(near)]
        s = radius // m
        seen: set[int] = set()
        found = []
        for shift, width, table in self._tables_for(m):
            value = (h >> shift) & ((1 << width) - 1)
            for e in _masks(width, s):
                for pos in table.get(value ^ e, ()):
                    if pos not in seen:
                        seen.add(pos)
                        d = (hashes[pos] ^ h).bit_count()
                        if d <= radius:
                            found.append((d, pos))
        found.sort()
        return [(self.keys[pos], d) for d, pos in found]

    def pairs(self, radius: int) -> Iterator[tuple[Hashable, Hashable, int]]:
        """Every pair of keys whose hashes are within `radius` bits, each pair once.

        A pair is reported by the first chunk in which it is within radius // m bits, so no
        set of pairs seen is kept, however many there are.
        """
        if radius < 0:
            return
        radius = min(radius, BITS)
        hashes, keys = self.hashes, self.keys
        m = chunk_count(len(hashes), radius)
        if m is None:  # few hashes or a wide radius: look at each pair
            for a, b in combinations(range(len(hashes)), 2):
                if (d := (hashes[a] ^ hashes[b]).bit_count()) <= radius:
                    yield keys[a], keys[b], d
            return
        s = radius // m
        tables = self._tables_for(m)
        spans = [(shift, (1 << width) - 1) for shift, width, _ in tables]
        for index, (_, width, table) in enumerate(tables):
            earlier = spans[:index]
            masks = _masks(width, s)
            for value, positions in table.items():
                for e in masks:
                    other = value ^ e
                    if other < value:
                        continue
                    mates = positions if other == value else table.get(other)
                    if not mates:
                        continue
                    for i, a in enumerate(positions):
                        ha = hashes[a]
                        for b in (mates[i + 1:] if other == value else mates):
                            x = ha ^ hashes[b]
                            d = x.bit_count()
                            if d > radius or any(((x >> sh) & mk).bit_count() <= s for sh, mk in earlier):
                                continue
                            yield keys[a], keys[b], d
