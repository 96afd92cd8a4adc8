"""HashIndex: multi-index hashing agrees with brute force, on random hashes and planted near pairs."""

from __future__ import annotations

import itertools
import random

import pytest

from catalog.similar.fingerprint import distance
from catalog.similar.index import HashIndex


def brute_pairs(items, radius):
    return {(min(a, b), max(a, b), distance(ha, hb))
            for (a, ha), (b, hb) in itertools.combinations(items, 2) if distance(ha, hb) <= radius}


@pytest.mark.parametrize("radius", [0, 3, 6, 8, 10, 12, 20])
def test_index_agrees_with_brute_force(radius):
    rng = random.Random(radius)
    items = [(f"r{i}", rng.getrandbits(64)) for i in range(1500)]
    for i in range(300):  # planted near pairs and clusters at every distance up to 22
        base = items[rng.randrange(len(items))][1]
        flips = rng.sample(range(64), rng.randrange(0, 23))
        items.append((f"p{i}", base ^ sum(1 << b for b in flips)))
    items.append(("dup", items[0][1]))
    index = HashIndex(items)
    found = list(index.pairs(radius))
    assert len(found) == len({(a, b) for a, b, _ in found})  # each pair once
    assert {(min(a, b), max(a, b), d) for a, b, d in found} == brute_pairs(items, radius)
    for _key, h in items[::97]:
        expected = sorted((d, k) for k, hk in items if (d := distance(h, hk)) <= radius)
        got = index.within(h, radius)
        assert sorted((d, k) for k, d in got) == expected
        assert [d for _, d in got] == sorted(d for _, d in got)


def test_index_refuses_what_is_not_a_64_bit_hash():
    with pytest.raises(ValueError):
        HashIndex([("a", -1)])
    with pytest.raises(ValueError):
        HashIndex([("a", 2**64)])
    assert HashIndex([]).within(0, 10) == [] and list(HashIndex([("a", 5)]).pairs(64)) == []
    assert HashIndex([("a", 0), ("b", 2**64 - 1)]).within(0, 64) == [("a", 0), ("b", 64)]


def test_a_dense_cluster_is_chained_in_linear_work_not_paired_in_square():
    """6,000 near-identical hashes (a time-lapse, thousands of copies): every pair would be 18M;
    the index pairs each with its neighbours in hash order, which still joins them all."""
    import random

    from catalog.similar.index import DENSE, WINDOW

    rng = random.Random(7)
    base = rng.getrandbits(64)
    n = 6_000
    hashes = [base ^ (1 << rng.randrange(64)) ^ (1 << rng.randrange(64)) for _ in range(n)]
    index = HashIndex(enumerate(hashes))
    found = list(index.pairs(8))
    assert n - 1 <= len(found) <= 2 * 4 * n * WINDOW  # linear (chunks x window), not n * (n - 1) / 2
    assert all(d == (hashes[a] ^ hashes[b]).bit_count() <= 8 for a, b, d in found)
    parent = list(range(n))

    def root(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b, _ in found:
        parent[root(a)] = root(b)
    assert len({root(i) for i in range(n)}) == 1  # one cluster, as it is
    near = index.within(base, 8, limit=DENSE)
    assert len(near) == DENSE and all(d <= 8 for _, d in near)
