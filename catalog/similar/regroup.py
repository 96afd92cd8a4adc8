"""The whole library's near-duplicate groups and bursts in little memory: compact arrays first, Candidates a batch at a time.

A million photos do not fit as Candidate objects (each carries 256 bytes of grey cells): the
hashes are read into arrays (16 bytes a photo), the index pairs them (catalog.similar.index),
and only the photos some pair joins are read as Candidates, a batch of whole components at a
time. Bursts likewise: the capture times and cameras as numbers, sorted in numpy, and only the
shots within BURST_SECONDS of one another read in full.
"""

from __future__ import annotations

import json
from array import array
from datetime import datetime, timedelta
from typing import Iterator

import numpy as np

from catalog.similar.classify import BURST_SECONDS, GROUP_DISTANCE, Candidate, keeper, relation, taken_time
from catalog.similar.fingerprint import distance
from catalog.similar.index import HashIndex

PAGE = 10_000  # rows fetched at a time
BATCH = 4_000  # photos read as Candidates at a time
PRESENT = "EXISTS (SELECT 1 FROM files f WHERE f.photo_id = p.id AND f.status = 'ok')"
HASHES = f"SELECT p.rowid, p.phash FROM photos p WHERE p.phash IS NOT NULL AND {PRESENT}"
DATED = f"""
SELECT p.rowid, NULLIF(TRIM(COALESCE(p.camera_make, '') || ' ' || COALESCE(p.camera_model, '')), ''), p.taken_at
FROM photos p
WHERE p.phash IS NOT NULL AND p.taken_at IS NOT NULL AND COALESCE(p.camera_make, p.camera_model) IS NOT NULL
      AND {PRESENT}
ORDER BY p.id
"""
MICROSECOND = timedelta(microseconds=1)


def hash_arrays(db, sql: str = HASHES, params=()) -> tuple[array, array]:
    """(rowids, unsigned hashes) of the photos `sql` selects as (rowid, phash), in two arrays."""
    rowids, signed = array("q"), array("q")
    cursor = db.execute(sql, params)
    while rows := cursor.fetchmany(PAGE):
        rowids.extend(r for r, _ in rows)
        signed.extend(h for _, h in rows)
    hashes = array("Q")
    hashes.frombytes(signed.tobytes())  # SQLite's signed INTEGER read as the unsigned hash (to_db)
    return rowids, hashes


def by_rowid(db, rowids) -> dict[int, Candidate]:
    """The Candidates of these photos (present ones only), by rowid."""
    from catalog.similar.groups import candidates

    found: dict[int, Candidate] = {}
    rowids = list(rowids)
    for start in range(0, len(rowids), PAGE):
        part = rowids[start:start + PAGE]
        rows = db.execute("SELECT rowid, id FROM photos WHERE rowid IN (SELECT value FROM json_each(?))",
                          [json.dumps(part)]).fetchall()
        ids = {i: r for r, i in rows}
        for c in candidates(db, "AND p.rowid IN (SELECT value FROM json_each(?))", [json.dumps(part)]):
            found[ids[c.id]] = c
    return found


def linked_components(members: list[Candidate], pairs) -> list[list[Candidate]]:
    """The groups of copies and edits among these photos joined by `pairs` (of ids)."""
    from catalog.similar.groups import _components

    every = {c.id: c for c in members}
    return [[every[i] for i in ids] for ids in _components(
        every, pairs, lambda a, b: relation(every[a], every[b]) in ("copy", "edit"))]


def arranged(group: list[Candidate]) -> list[tuple[Candidate, str | None]]:
    """A group keeper first (relation None), then copies, then edits, each nearest first."""
    best = keeper(group)
    rest = []
    for c in group:
        if c is not best:
            said = relation(best, c)
            rest.append((c, said if said in ("copy", "edit") else "edit"))
    rest.sort(key=lambda item: (item[1] != "copy", distance(best.fingerprint.phash, item[0].fingerprint.phash),
                                item[0].id))
    return [(best, None), *rest]


def near_key(group) -> tuple:
    """Listing order of near groups: biggest first, then by the keeper's id."""
    return -len(group), group[0][0].id


def burst_key(run) -> tuple:
    """Listing order of bursts: biggest first, then by the first shot's time and id."""
    return -len(run), run[0].taken_at, run[0].id


def _root(parent: array, x: int) -> int:
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


def near_groups_lean(db) -> Iterator[list[tuple[Candidate, str | None]]]:
    """Every group of copies and edits of the library (as groups.near_groups, unordered), holding
    Candidates only for one batch of components at a time."""
    rowids, hashes = hash_arrays(db)
    index = HashIndex.of_arrays(range(len(rowids)), hashes)
    left, right = array("i"), array("i")
    parent = array("i", range(len(rowids)))
    for a, b, _ in index.pairs(GROUP_DISTANCE):  # components of every pair: linked ones lie within
        left.append(a)
        right.append(b)
        ra, rb = _root(parent, a), _root(parent, b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    del index
    if not left:
        return
    ends = np.concatenate((np.frombuffer(left, np.int32), np.frombuffer(right, np.int32)))
    nodes = np.unique(ends)
    roots = np.array([_root(parent, int(x)) for x in nodes], dtype=np.int32)
    pair_roots = roots[np.searchsorted(nodes, np.frombuffer(left, np.int32))]
    by_node, by_pair = np.argsort(roots, kind="stable"), np.argsort(pair_roots, kind="stable")
    node_cuts = np.flatnonzero(np.diff(roots[by_node])) + 1
    pair_cuts = np.flatnonzero(np.diff(pair_roots[by_pair])) + 1
    components = list(zip(np.split(nodes[by_node], node_cuts), np.split(by_pair, pair_cuts)))
    del parent, ends, roots, pair_roots, by_node, by_pair
    batch: list = []
    held = 0
    for i, component in enumerate(components):
        batch.append(component)
        held += len(component[0])
        if held >= BATCH or i == len(components) - 1:
            found = by_rowid(db, (rowids[int(x)] for n, _ in batch for x in n))
            for members, pair_rows in batch:
                ids = {int(x): found[rowids[int(x)]].id for x in members if rowids[int(x)] in found}
                pairs = [(ids[left[p]], ids[right[p]]) for p in pair_rows.tolist()
                         if left[p] in ids and right[p] in ids]
                for group in linked_components([found[rowids[x]] for x in ids], pairs):
                    yield arranged(group)
            batch, held = [], 0


def _dated(db, sql: str, params=()) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, array]:
    """For each dated photo `sql` selects as (rowid, camera, taken_at): its sort camera (ranked by
    camera.lower()), its camera as burst_mates compares them, its time in microseconds, its rank in
    the order the rows came (the photos' ids), and the rowids."""
    from catalog.similar.classify import _camera

    rowids, sort_cam, mate_cam, times = array("q"), array("i"), array("i"), array("q")
    names: dict[str, int] = {}
    mates: dict[str, int] = {}
    cursor = db.execute(sql, params)
    while rows := cursor.fetchmany(PAGE):
        for rowid, camera, taken_at in rows:
            when = taken_time(taken_at)
            if when is None or camera is None:
                continue
            rowids.append(rowid)
            sort_cam.append(names.setdefault(camera, len(names)))
            mate_cam.append(mates.setdefault(_camera(camera), len(mates)))
            times.append((when - datetime.min) // MICROSECOND)
    ranks = sorted(names, key=str.lower)
    lower_rank = {}
    for name in ranks:
        lower_rank.setdefault(name.lower(), len(lower_rank))
    rank_of = np.array([lower_rank[name.lower()] for name in names] or [0], dtype=np.int32)
    cam = rank_of[np.frombuffer(sort_cam, np.int32)] if len(sort_cam) else np.zeros(0, np.int32)
    return cam, np.frombuffer(mate_cam, np.int32), np.frombuffer(times, np.int64), np.arange(len(rowids)), rowids


def bursts_lean(db, sql: str = DATED, params=()) -> Iterator[list[Candidate]]:
    """The bursts among the dated photos `sql` selects (as groups.bursts), unordered: the shots
    sorted as numbers, and only the runs of mates (same camera, BURST_SECONDS apart) read in full."""
    cam, mate, times, order, rowids = _dated(db, sql, params)
    if len(order) < 2:
        return
    seq = np.lexsort((order, times, cam))
    near = (mate[seq][1:] == mate[seq][:-1]) & (np.abs(np.diff(times[seq])) <= BURST_SECONDS * 1_000_000)
    cuts = np.flatnonzero(~near) + 1  # stretches of consecutive mates: bursts lie within them
    stretches = [s for s in np.split(seq, cuts) if len(s) > 1]
    batch, held = [], 0
    for i, stretch in enumerate(stretches):
        batch.append(stretch)
        held += len(stretch)
        if held >= BATCH or i == len(stretches) - 1:
            found = by_rowid(db, (rowids[int(x)] for s in batch for x in s))
            for s in batch:
                yield from _runs([found[rowids[int(x)]] for x in s if rowids[int(x)] in found])
            batch, held = [], 0


def _runs(shots: list[Candidate]) -> list[list[Candidate]]:
    """Runs of shots, each related to the one before as a burst (groups.bursts' rule)."""
    from catalog.similar.classify import burst_mates

    out, run = [], []
    for c in shots:
        if run and burst_mates(run[-1], c) and relation(run[-1], c) == "burst":
            run.append(c)
            continue
        if len(run) > 1:
            out.append(run)
        run = [c]
    if len(run) > 1:
        out.append(run)
    return out
