"""Near-neighbour search over 64-bit hashes: multi-index hashing, so no pass compares all pairs.

The 64 bits are cut into `m` chunks. Two hashes within `radius` bits differ, by the pigeonhole
principle, by at most radius // m bits in at least one chunk; so each chunk has a table from
its value to the keys holding it, and a search probes, in every table, the values within
radius // m bits of the query's chunk. A candidate is then checked on all 64 bits. `m` is
chosen per radius (CHUNKS) to keep both the probes and the candidates few.

Storage is compact, for a library of a million photos: the hashes in one array of unsigned
64-bit ints and each table as numpy arrays (the positions sorted by chunk value, the distinct
values, where each starts): about 16 bytes a hash and table, where dicts of lists took ~150.
"""

from __future__ import annotations

from array import array
from functools import cache
from itertools import combinations
from math import comb
from typing import Hashable, Iterable, Iterator, Sequence

import numpy as np

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


@cache
def _masks(width: int, s: int) -> list[int]:
    """Every value of `width` bits with at most `s` bits set (0 first)."""
    out = [0]
    for k in range(1, min(s, width) + 1):
        out.extend(sum(1 << b for b in bits) for bits in combinations(range(width), k))
    return out


class _Table:
    """One chunk's table: chunk value -> the positions holding it (ascending), as sorted arrays."""

    def __init__(self, hashes: np.ndarray, shift: int, width: int):
        self.width = width
        chunk = (hashes >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        if width <= 32:
            chunk = chunk.astype(np.uint32)
        self.order = np.argsort(chunk, kind="stable").astype(np.int32)
        self.values, starts, counts = np.unique(chunk[self.order], return_index=True, return_counts=True)
        self.starts = np.append(starts, len(chunk)).astype(np.int64)
        self.counts = counts

    def __len__(self) -> int:
        return len(self.values)

    def lookup(self, probes: np.ndarray) -> np.ndarray:
        """The positions holding each probed value, probe by probe (int64)."""
        probes = probes.astype(self.values.dtype)
        i = np.searchsorted(self.values, probes)
        inside = i < len(self.values)
        i = i[inside][self.values[i[inside]] == probes[inside]]
        if not len(i):
            return np.zeros(0, np.int64)
        lo, hi = self.starts[i], self.starts[i + 1]
        steps = np.repeat(lo - np.concatenate(([0], np.cumsum(hi - lo)[:-1])), hi - lo)
        return self.order[np.arange(int((hi - lo).sum())) + steps].astype(np.int64)

    def occupied(self) -> bytes:
        """The values held, as a little-endian bitset of 2**width bits (width >= 3)."""
        bits = np.zeros(1 << self.width, dtype=bool)
        bits[self.values] = True
        return np.packbits(bits, bitorder="little").tobytes()


class HashIndex:
    """Keys and their 64-bit hashes; `within` and `pairs` answer Hamming-radius questions."""

    def __init__(self, items: Iterable[tuple[Hashable, int]] = ()):
        self.keys: Sequence[Hashable] = []
        self.hashes = array("Q")
        for key, h in items:
            if not 0 <= h < 1 << BITS:
                raise ValueError(f"not a 64-bit unsigned hash: {h!r} (key {key!r})")
            self.keys.append(key)
            self.hashes.append(h)
        self._tables: dict[int, list[tuple[int, int, _Table]]] = {}

    @classmethod
    def of_arrays(cls, keys: Sequence[Hashable], hashes: array) -> "HashIndex":
        """An index over parallel sequences (e.g. an array('q') of rowids and an array('Q') of
        hashes), without a Python object per photo."""
        if len(keys) != len(hashes):
            raise ValueError("keys and hashes differ in length")
        index = cls()
        index.keys, index.hashes = keys, hashes
        return index

    def __len__(self) -> int:
        return len(self.keys)

    def _tables_for(self, m: int) -> list[tuple[int, int, _Table]]:
        """Per chunk: (shift, width, chunk value -> positions), built on first use per `m`."""
        if m not in self._tables:
            hashes = np.frombuffer(self.hashes, dtype=np.uint64) if len(self.hashes) else np.zeros(0, np.uint64)
            tables = []
            for shift, width in _spans(m):
                tables.append((shift, width, _Table(hashes, shift, width)))
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
        found = []  # positions in the order the probes meet them (each once), as the limit counts them
        for shift, width, table in self._tables_for(m):
            value = (h >> shift) & ((1 << width) - 1)
            found.append(table.lookup(np.array(_masks(width, s), dtype=np.uint64) ^ np.uint64(value)))
        met = np.concatenate(found)
        _, first = np.unique(met, return_index=True)
        met = met[np.sort(first)]
        dist = np.bitwise_count(np.frombuffer(self.hashes, dtype=np.uint64)[met] ^ np.uint64(h))
        keep = dist <= radius
        met, dist = met[keep][:limit], dist[keep][:limit]
        return [(self.keys[pos], d) for d, pos in sorted(zip(dist.tolist(), met.tolist()))]

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
        every = np.frombuffer(hashes, dtype=np.uint64)
        spans = [(shift, (1 << width) - 1) for shift, width in _spans(m)]
        for index, (shift, width) in enumerate(_spans(m)):
            earlier = spans[:index]
            # one table at a time, not kept: a million hashes' three tables would be 48 MB at once
            table = self._tables[m][index][2] if m in self._tables else _Table(every, shift, width)
            for a, b in _table_pairs(table, width, s, hashes):  # arrays of positions, a batch at a time
                x = every[a] ^ every[b]
                d = np.bitwise_count(x)
                keep = d <= radius
                for sh, mk in earlier:  # reported by an earlier chunk already
                    keep &= np.bitwise_count((x >> np.uint64(sh)) & np.uint64(mk)) > s
                for pa, pb, bits in zip(a[keep].tolist(), b[keep].tolist(), d[keep].tolist()):
                    yield keys[pa], keys[pb], bits


def _grid(order: np.ndarray, starts: np.ndarray, counts: np.ndarray, li: np.ndarray, ri: np.ndarray,
          upper: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of positions of value slot li[k] with those of ri[k], for all k at once; with
    `upper` (li == ri), each pair of one value's positions once."""
    cl, cr = counts[li], counts[ri]
    rep = cl * cr
    total = int(rep.sum())
    if not total:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    k = np.arange(total) - np.repeat(np.cumsum(rep) - rep, rep)
    width = np.repeat(cr, rep)
    i, j = k // width, k % width
    if upper:
        keep = i < j
        i, j = i[keep], j[keep]
        return order[np.repeat(starts[li], rep)[keep] + i], order[np.repeat(starts[ri], rep)[keep] + j]
    return order[np.repeat(starts[li], rep) + i], order[np.repeat(starts[ri], rep) + j]


def _table_pairs(table: _Table, width: int, s: int, hashes) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The pairs of positions one table proposes: those sharing a chunk value, and those whose
    values are 1..s bits apart; in numpy, but for the dense clusters (DENSE, WINDOW) in Python."""
    order, starts, counts = table.order, table.starts, table.counts
    few = np.flatnonzero((counts > 1) & (counts <= DENSE))
    yield _grid(order, starts, counts, few, few, upper=True)
    left, right = [], []
    for i in np.flatnonzero(counts > DENSE).tolist():
        for a, b in _same_value_pairs(order[starts[i]:starts[i + 1]].tolist(), hashes):
            left.append(a)
            right.append(b)
    yield np.array(left, dtype=np.int64), np.array(right, dtype=np.int64)
    firsts: dict[int, list[int]] = {}  # a dense chunk value -> its WINDOW first in hash order
    for e, values in _near_values(table, width, s):  # chunk values e apart (1..s bits)
        values = values.astype(table.values.dtype)
        li = np.searchsorted(table.values, values)
        ri = np.searchsorted(table.values, values ^ np.array(e, dtype=table.values.dtype))
        small = counts[li] * counts[ri] <= DENSE * WINDOW
        yield _grid(order, starts, counts, li[small], ri[small])
        left, right = [], []
        for lo, hi in zip(li[~small].tolist(), ri[~small].tolist()):
            lefts, rights = order[starts[lo]:starts[lo + 1]].tolist(), order[starts[hi]:starts[hi + 1]].tolist()
            for a, b in _cross_pairs(lefts, rights, (lo, hi), hashes, firsts):
                left.append(a)
                right.append(b)
        yield np.array(left, dtype=np.int64), np.array(right, dtype=np.int64)


def _same_value_pairs(positions: list[int], hashes: list[int]) -> Iterator[tuple[int, int]]:
    """Every pair of these positions; in a dense cluster each with its WINDOW next in hash order."""
    if len(positions) <= DENSE:
        yield from combinations(positions, 2)
        return
    ordered = sorted(positions, key=hashes.__getitem__)
    for i, a in enumerate(ordered):
        for b in ordered[i + 1:i + 1 + WINDOW]:
            yield a, b


def _cross_pairs(lefts: list[int], rights: list[int], slots: tuple[int, int], hashes,
                 firsts: dict[int, list[int]]) -> Iterator[tuple[int, int]]:
    """Every pair of the two chunk values' positions; when that is many (a dense cluster), only
    WINDOW x WINDOW bridges between the first of each in hash order: each side is already
    joined within itself."""
    if len(lefts) * len(rights) <= DENSE * WINDOW:
        for a in lefts:
            for b in rights:
                yield a, b
        return
    for slot, positions in zip(slots, (lefts, rights)):
        if slot not in firsts:
            firsts[slot] = sorted(positions, key=hashes.__getitem__)[:WINDOW]
    for a in firsts[slots[0]]:
        for b in firsts[slots[1]]:
            yield a, b


def _set_bits(bitset: int, size: int) -> np.ndarray:
    """The positions of the bits set in a `size`-bit int, ascending."""
    data = np.frombuffer(bitset.to_bytes(size // 8, "little"), np.uint8)
    nonzero = np.flatnonzero(data)
    rows, cols = np.nonzero(np.unpackbits(data[nonzero][:, None], axis=1, bitorder="little"))
    return nonzero[rows] * 8 + cols


def _near_values(table: _Table, width: int, s: int) -> Iterator[tuple[int, np.ndarray]]:
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
    bitset = int.from_bytes(table.occupied(), "little")
    keep = [_low_half_mask(width, j) for j in range(width)]  # values whose bit j is 0

    def flips(start: int, depth: int, e: int, flipped: int) -> Iterator[tuple[int, list[int]]]:
        for j in range(start, width):
            t, low = 1 << j, keep[j]
            moved = ((flipped & low) << t) | ((flipped >> t) & low)
            both = bitset & moved & low  # v and v ^ e occupied, v below its partner (bit j is 0)
            if both:
                yield e | t, _set_bits(both, size)
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


def _near_values_by_probing(table: _Table, width: int, s: int) -> Iterator[tuple[int, np.ndarray]]:
    values = table.values
    for e in _masks(width, s)[1:]:
        partners = values ^ np.array(e, dtype=values.dtype)
        i = np.minimum(np.searchsorted(values, partners), len(values) - 1)
        found = values[(values < partners) & (values[i] == partners)]
        if len(found):
            yield e, found
