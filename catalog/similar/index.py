"""Near-neighbour search over 64-bit hashes: multi-index hashing, so no pass compares all pairs.

The 64 bits are cut into `m` chunks. Two hashes within `radius` bits differ, by the pigeonhole
principle, by at most radius // m bits in at least one chunk; so each chunk has a table from
its value to the keys holding it, and a search probes, in every table, the values within
radius // m bits of the query's chunk. A candidate is then checked on all 64 bits. `m` is
chosen per radius (CHUNKS) to keep both the probes and the candidates few.
"""

from __future__ import annotations

import re
from collections import defaultdict
from itertools import combinations
from math import comb
from typing import Hashable, Iterable, Iterator

BITS = 64
# A chunk value held by more than DENSE hashes is a cluster of near-identical pictures (a
# time-lapse, a camera's hundred frames of one scene, thousands of copies): comparing all its
# pairs grows with the square (4,000 such hashes took 30 s, 100,000 would take hours). Inside
# one, each hash is paired only with its WINDOW neighbours in hash order, which still chains
# the cluster together, and `within(limit=)` stops at the first `limit` found.
DENSE = 64
WINDOW = 16
BITSET_WIDTHS = (3, 24)  # chunk widths searched as bitsets (2**24 bits: a 2 MB int)


def chunk_count(n: int, radius: int, *, pairs: bool = True) -> int | None:
    """The number of chunks that makes the least work for `n` hashes spread evenly (finding the
    chunk values within radius // m bits, plus checking the candidates they hold), or None when
    checking every hash (every pair) is less work."""
    def work(m: int) -> float:
        width, s = BITS // m, radius // m
        near = sum(comb(width, k) for k in range(min(s, width) + 1))
        if not pairs:  # probes, and the hashes they find
            return m * near * (1 + n / 2 ** width)
        return m * (_search_cost(min(n, 2 ** width), width, s) + near * n * n / 2 ** (width + 1))
    best = min(range(1, min(BITS, radius + 1) + 1), key=work)
    return best if work(best) < (n * n / 2 if pairs else n) else None


def _search_cost(values: int, width: int, s: int) -> float:
    """Work to find the pairs of `values` occupied chunk values 1..s bits apart: a probe per value
    and flip pattern, or a few big-int operations per pattern on a 2**width-bit bitset."""
    patterns = sum(comb(width, k) for k in range(1, min(s, width) + 1))
    probing = values * patterns
    if not BITSET_WIDTHS[0] <= width <= BITSET_WIDTHS[1]:
        return probing
    return min(probing, patterns * (2 ** width / 512 + 1))


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

    def within(self, h: int, radius: int, limit: int | None = None) -> list[tuple[Hashable, int]]:
        """Every (key, distance) whose hash is within `radius` bits of `h`, nearest first; with
        `limit`, the search stops once that many are found (bounded work in a dense cluster)."""
        if radius < 0:
            return []
        radius = min(radius, BITS)
        hashes = self.hashes
        m = chunk_count(len(hashes), radius, pairs=False)
        if m is None:  # few hashes or a wide radius: look at each
            near = sorted((d, pos) for pos, other in enumerate(hashes) if (d := (other ^ h).bit_count()) <= radius)
            return [(self.keys[pos], d) for d, pos in near[:limit]]
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
                            if limit is not None and len(found) >= limit:
                                found.sort()
                                return [(self.keys[pos], d) for d, pos in found]
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
            for positions in table.values():  # the same chunk value
                for a, b in _same_value_pairs(positions, hashes):
                    x = hashes[a] ^ hashes[b]
                    if x.bit_count() <= radius and not any(((x >> sh) & mk).bit_count() <= s
                                                           for sh, mk in earlier):
                        yield keys[a], keys[b], x.bit_count()
            firsts: dict[int, list[int]] = {}  # a dense chunk value -> its WINDOW first in hash order
            for e, values in _near_values(table, width, s):  # chunk values e apart (1..s bits)
                for value in values:
                    for a, b in _cross_pairs(table, value, value ^ e, hashes, firsts):
                        x = hashes[a] ^ hashes[b]
                        if x.bit_count() <= radius and not any(((x >> sh) & mk).bit_count() <= s
                                                               for sh, mk in earlier):
                            yield keys[a], keys[b], x.bit_count()


def _same_value_pairs(positions: list[int], hashes: list[int]) -> Iterator[tuple[int, int]]:
    """Every pair of these positions; in a dense cluster each with its WINDOW next in hash order."""
    if len(positions) <= DENSE:
        yield from combinations(positions, 2)
        return
    ordered = sorted(positions, key=hashes.__getitem__)
    for i, a in enumerate(ordered):
        for b in ordered[i + 1:i + 1 + WINDOW]:
            yield a, b


def _cross_pairs(table: dict[int, list[int]], left: int, right: int, hashes: list[int],
                 firsts: dict[int, list[int]]) -> Iterator[tuple[int, int]]:
    """Every pair of the two chunk values' positions; when that is many (a dense cluster), only
    WINDOW x WINDOW bridges between the first of each in hash order: each side is already
    joined within itself."""
    lefts, rights = table[left], table[right]
    if len(lefts) * len(rights) <= DENSE * WINDOW:
        for a in lefts:
            for b in rights:
                yield a, b
        return
    for value in (left, right):
        if value not in firsts:
            firsts[value] = sorted(table[value], key=hashes.__getitem__)[:WINDOW]
    for a in firsts[left]:
        for b in firsts[right]:
            yield a, b


_NONZERO = re.compile(rb"[^\x00]")
_START = re.Match.start
_BITS_OF_BYTE = [[k for k in range(8) if byte >> k & 1] for byte in range(256)]


def _near_values(table: dict[int, list[int]], width: int, s: int) -> Iterator[tuple[int, list[int]]]:
    """For each flip pattern e of 1..s bits, the occupied chunk values v whose partner v ^ e is
    occupied too, v the smaller of the two (so each pair of values comes once).

    The occupied values are a bitset of 2**width bits. Flipping bit j of every value is a
    permutation of that bitset (swap blocks of 2**j), two shifts and masks on one big int;
    so `occupied & flipped(occupied)` marks at once every value whose partner is occupied,
    and Python touches only the pairs found.
    """
    if s < 1 or not table:
        return
    if _search_cost(len(table), width, s) >= len(table) * sum(comb(width, k) for k in range(1, s + 1)):
        yield from _near_values_by_probing(table, width, s)  # a bitset would be no quicker
        return
    size = 1 << width
    occupied = bytearray(size // 8)
    for v in table:
        occupied[v >> 3] |= 1 << (v & 7)
    bitset = int.from_bytes(occupied, "little")
    keep = [_low_half_mask(width, j) for j in range(width)]  # values whose bit j is 0

    def flips(start: int, depth: int, e: int, flipped: int) -> Iterator[tuple[int, list[int]]]:
        for j in range(start, width):
            t, low = 1 << j, keep[j]
            moved = ((flipped & low) << t) | ((flipped >> t) & low)
            both = bitset & moved & low  # v and v ^ e occupied, v below its partner (bit j is 0)
            if both:
                data = both.to_bytes(size // 8, "little")
                yield e | t, [i * 8 + k for i in map(_START, _NONZERO.finditer(data)) for k in _BITS_OF_BYTE[data[i]]]
            if depth + 1 < s:
                yield from flips(j + 1, depth + 1, e | t, moved)

    yield from flips(0, 0, 0, bitset)


def _low_half_mask(width: int, j: int) -> int:
    """The bitset of the 2**width values whose bit j is 0: runs of 2**j ones and 2**j zeros."""
    t = 1 << j
    if t >= 8:
        unit = b"\xff" * (t // 8) + b"\x00" * (t // 8)
    else:
        unit = bytes([{1: 0x55, 2: 0x33, 4: 0x0F}[t]])
    return int.from_bytes(unit * ((1 << width) // (8 * len(unit))), "little")


def _near_values_by_probing(table: dict[int, list[int]], width: int, s: int) -> Iterator[tuple[int, list[int]]]:
    for e in _masks(width, s)[1:]:
        values = [v for v in table if v < v ^ e and v ^ e in table]
        if values:
            yield e, values
