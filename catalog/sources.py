"""Analysis sources: one `analyses` row per (photo, source), and the merge `photos` caches.

A source is a back-end (imgtags, openai, offline) or an enricher (places, text, safety,
faces). Storing a source's answer replaces that source's row only; the others stay.
The photo's analysis columns are then recomputed from its rows: tags from every row,
back-end first (the newest back-end leads), then the enrichers in their registry order,
deduplicated case-insensitively; description, colours, scene, mood and the rest from the
newest back-end row; `safe_adult` from the back-end unless it said UNKNOWN, then from
`safety`; `place` from the first row that has one. Search, Datasette and write-back read
that cache; `catalog show` reads the rows.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from catalog import db as catalog_db
from catalog.analyzers import Analysis
from catalog.analyzers.storable import clean_json, clean_text, storable
from catalog.enrichers import REGISTRY as ENRICHERS
from catalog.enrichers import Enrichment

# The back-end's single-valued fields the photo takes from its newest back-end row.
BACKEND_FIELDS = ("description", "objects", "dominant_color", "palette", "scene", "mood", "safe_violence",
                  "shape", "provider", "model", "tokens_used", "processing_time_ms")
# Back-ends first (the newest leads), then the enrichers in their registry order.
ORDER = f"""CASE a.kind WHEN 'backend' THEN 0 ELSE instr('{",".join(ENRICHERS)}', a.source) END,
    a.produced_at DESC, a.source"""
ROWS = f"SELECT a.* FROM analyses a WHERE a.photo_id = ? ORDER BY {ORDER}"

UPSERT = """
INSERT INTO analyses (photo_id, source, kind, tags, description, objects, dominant_color, palette, scene, mood,
                      safe_adult, safe_violence, shape, place, city, region, country, text, faces, error,
                      provider, model, produced_at, tokens_used, processing_time_ms, raw, copied_from)
VALUES (:photo_id, :source, :kind, :tags, :description, :objects, :dominant_color, :palette, :scene, :mood,
        :safe_adult, :safe_violence, :shape, :place, :city, :region, :country, :text, :faces, :error,
        :provider, :model, :produced_at, :tokens_used, :processing_time_ms, :raw, :copied_from)
ON CONFLICT(photo_id, source) DO UPDATE SET kind = excluded.kind, tags = excluded.tags,
    description = excluded.description, objects = excluded.objects, dominant_color = excluded.dominant_color,
    palette = excluded.palette, scene = excluded.scene, mood = excluded.mood, safe_adult = excluded.safe_adult,
    safe_violence = excluded.safe_violence, shape = excluded.shape, place = excluded.place,
    city = excluded.city, region = excluded.region, country = excluded.country, text = excluded.text,
    faces = excluded.faces, error = excluded.error, provider = excluded.provider, model = excluded.model,
    produced_at = excluded.produced_at, tokens_used = excluded.tokens_used,
    processing_time_ms = excluded.processing_time_ms, raw = excluded.raw, copied_from = excluded.copied_from
"""
EMPTY_ROW = {k: None for k in ("description", "objects", "dominant_color", "palette", "scene", "mood",
                               "safe_adult", "safe_violence", "shape", "place", "city", "region", "country",
                               "text", "faces", "error", "copied_from")}


def _dumps(value) -> str | None:
    return json.dumps(value, ensure_ascii=False) if value is not None else None


def backend_row(photo_id: str, source: str, analysis: Analysis, secrets=()) -> dict:
    """The `analyses` row of a back-end's answer (made storable first)."""
    values = asdict(storable(analysis, secrets))
    return {**EMPTY_ROW, "photo_id": photo_id, "source": source, "kind": "backend",
            **{k: json.dumps(list(values[k]), ensure_ascii=False) for k in ("tags", "objects", "palette")},
            **{k: values[k] for k in ("description", "dominant_color", "scene", "mood", "safe_adult",
                                      "safe_violence", "provider", "model", "tokens_used", "processing_time_ms")},
            "shape": values["orientation"], "raw": _dumps(values["raw"]), "produced_at": catalog_db.now()}


def enricher_row(photo_id: str, found: Enrichment) -> dict:
    """The `analyses` row of one enricher's finding."""
    def text(value, limit=500):
        return clean_text(value, limit).strip() or None

    tags = [t for t in (clean_text(t, 100).strip() for t in found.tags) if t][:200]
    return {**EMPTY_ROW, "photo_id": photo_id, "source": found.source, "kind": "enricher",
            "tags": json.dumps(tags, ensure_ascii=False), "place": text(found.place), "city": text(found.city),
            "region": text(found.region), "country": text(found.country), "text": text(found.text, 10_000),
            "faces": found.faces, "provider": text(found.provider), "model": text(found.model),
            "safe_adult": found.safe_adult if found.source == "safety" else None,
            "produced_at": catalog_db.now(), "tokens_used": 0, "processing_time_ms": found.processing_time_ms,
            "raw": _dumps(clean_json(found.raw))}


def error_row(photo_id: str, source: str, message: str) -> dict:
    """An enricher that cannot read this photo: recorded, so it is not tried again."""
    return {**EMPTY_ROW, "photo_id": photo_id, "source": source, "kind": "enricher", "tags": "[]",
            "error": clean_text(message, 500), "provider": None, "model": None, "produced_at": catalog_db.now(),
            "tokens_used": 0, "processing_time_ms": 0, "raw": None}


def store_rows(db, rows: list[dict]) -> None:
    """Replace these sources' rows and refresh their photos' cache (inside the caller's transaction)."""
    if rows:
        db.conn.executemany(UPSERT, rows)
        refresh_merged(db, {r["photo_id"] for r in rows})


def merge(rows: list[dict]) -> dict:
    """The photo's cached analysis fields from its rows (given in merge order, see ROWS)."""
    rows = [r for r in rows if not r.get("error")]
    tags: dict[str, str] = {}
    for row in rows:
        for tag in json.loads(row["tags"] or "[]"):
            if isinstance(tag, str) and tag.strip():
                tags.setdefault(tag.strip().casefold(), tag.strip())
    merged = {"tags": json.dumps(list(tags.values()), ensure_ascii=False),
              "place": next((r["place"] for r in rows if r["place"]), None)}
    backend = next((r for r in rows if r["kind"] == "backend"), None)
    adult = backend["safe_adult"] if backend else None
    if adult in (None, "", "UNKNOWN"):
        adult = next((r["safe_adult"] for r in rows if r["source"] == "safety" and r["safe_adult"]), adult)
    merged["safe_adult"] = adult
    if backend is not None:
        merged.update({k: backend[k] for k in BACKEND_FIELDS})
        merged["raw_response"] = backend["raw"]
        merged["analysed_at"] = backend["produced_at"]
    return merged


def refresh_merged(db, photo_ids) -> None:
    """Recompute the photos' cached fields and search text from their rows (inside a transaction)."""
    for photo_id in sorted(set(photo_ids)):
        rows = [dict(r) for r in db.query(ROWS, [photo_id])]
        if not rows:
            continue
        merged = merge(rows)
        db.execute(f"UPDATE photos SET {', '.join(f'{k} = :{k}' for k in merged)} WHERE id = :id",
                   {**merged, "id": photo_id})
    catalog_db.refresh_search_text(db, photo_ids)


def sources_of(db, photo_id: str) -> list[dict]:
    """A photo's rows in merge order, JSON fields parsed (for `catalog show`)."""
    rows = []
    for row in db.query(ROWS, [photo_id]):
        row = dict(row)
        for key in ("tags", "objects", "palette", "raw"):
            row[key] = json.loads(row[key]) if row[key] else None
        rows.append(row)
    return rows


def provenance(db, photo_id: str) -> list[str]:
    """catalog:Sources entries for write-back: each source that gave keywords, with its model and date."""
    entries = []
    for row in sources_of(db, photo_id):
        if row["error"] or not row["tags"]:
            continue
        made = " ".join(filter(None, [row["provider"], row["model"]])) or row["source"]
        entries.append(f"{row['source']}; {made}; {row['produced_at']}; {', '.join(row['tags'])}")
    return entries
