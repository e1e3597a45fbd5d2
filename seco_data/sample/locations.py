"""Where to collect: a deterministic stream of candidate points and the rules that accept them.

Candidate ``i`` is a pure function of (seed, i) (a counter-based generator), so the stream is the
same whatever the number of workers or the order results come back in. Candidates are screened in
index order by :class:`Screen`: outside UTM/Sentinel-2 coverage, not enough land, or a footprint
that intersects the footprint of an earlier accepted candidate -> rejected (true rejection through a
spatial index, not a distance heuristic).

Samplers:
- ``cities``: a city drawn uniformly among the N most populous (offline gazetteer), then a Gaussian
  offset of sigma km; the east-west offset is converted to degrees with cos(latitude), so the spread
  is the same number of kilometres in both directions at any latitude.
- ``aoi``: uniform on the sphere inside a GeoJSON polygon (area-correct: uniform in sin(latitude)).
- ``points``: a fixed list of points from a CSV (columns lon, lat; optional id), in file order.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import RecipeError
from ..grid import MAX_LAT, MIN_LAT, PatchGrid

EARTH_KM_PER_DEG = 111.32
_STREAM = 0x10CA


@dataclass(frozen=True)
class Candidate:
    index: int
    lon: float
    lat: float
    #: what the point was drawn around (city name, AOI, CSV id)
    origin: str = ""


class Sampler:
    """Draws candidate ``i`` deterministically from ``seed``."""

    name = ""

    def __init__(self, seed: int):
        self.seed = seed

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, _STREAM, index])

    def draw(self, index: int) -> Candidate | None:
        """Candidate ``index``, or None when the sampler is exhausted (finite lists)."""
        raise NotImplementedError

    def stream(self, start: int = 0) -> Iterator[Candidate]:
        i = start
        while True:
            c = self.draw(i)
            if c is None:
                return
            yield c
            i += 1


class CitySampler(Sampler):
    name = "cities"

    def __init__(self, seed: int, top: int = 10000, sigma_km: float = 50.0):
        super().__init__(seed)
        from ..gazetteer import load_cities

        self.cities = load_cities().top(top)
        self.sigma_km = sigma_km

    def draw(self, index: int) -> Candidate:
        rng = self.rng(index)
        k = int(rng.integers(len(self.cities)))
        dx_km, dy_km = rng.normal(0.0, self.sigma_km, size=2)
        lat0 = float(self.cities.lat[k])
        lon0 = float(self.cities.lon[k])
        lat = lat0 + dy_km / EARTH_KM_PER_DEG
        # east-west kilometres -> degrees at the city's latitude
        coslat = max(math.cos(math.radians(lat0)), 1e-3)
        lon = lon0 + dx_km / (EARTH_KM_PER_DEG * coslat)
        lon = ((lon + 180.0) % 360.0) - 180.0
        origin = f"{self.cities.name[k]}, {self.cities.country[k]}"
        return Candidate(index, lon, lat, origin)


class AoiSampler(Sampler):
    name = "aoi"

    def __init__(self, seed: int, path: str | Path, max_tries: int = 100_000):
        super().__init__(seed)
        from shapely import prepare
        from shapely.geometry import shape
        from shapely.ops import unary_union

        try:
            doc = json.loads(Path(path).read_text("utf-8"))
        except (OSError, ValueError) as e:
            raise RecipeError(f"cannot read the AOI GeoJSON {path}: {e}") from None
        if doc.get("type") == "FeatureCollection":
            geoms = [f["geometry"] for f in doc.get("features", [])]
        elif doc.get("type") == "Feature":
            geoms = [doc["geometry"]]
        else:
            geoms = [doc]
        try:
            self.geom = unary_union([shape(g) for g in geoms if g])
        except Exception as e:  # shapely raises several types for bad geometry
            raise RecipeError(f"the AOI {path} holds no valid geometry: {e}") from None
        if self.geom.is_empty or self.geom.area == 0:
            raise RecipeError(f"the AOI {path} has no polygon area", hint="use Polygon/MultiPolygon in lon/lat")
        prepare(self.geom)
        self.bounds = self.geom.bounds
        self.max_tries = max_tries

    def draw(self, index: int) -> Candidate:
        from shapely import contains_xy

        rng = self.rng(index)
        minx, miny, maxx, maxy = self.bounds
        s0, s1 = math.sin(math.radians(miny)), math.sin(math.radians(maxy))
        for _ in range(0, self.max_tries, 64):
            lon = rng.uniform(minx, maxx, 64)
            lat = np.degrees(np.arcsin(rng.uniform(s0, s1, 64)))
            inside = np.flatnonzero(contains_xy(self.geom, lon, lat))
            if inside.size:
                j = inside[0]
                return Candidate(index, float(lon[j]), float(lat[j]), "aoi")
        raise RecipeError(
            f"no point inside the AOI after {self.max_tries} tries",
            hint="the AOI is a tiny part of its bounding box; check its coordinates are lon/lat",
        )


class PointSampler(Sampler):
    name = "points"

    def __init__(self, seed: int, path: str | Path):
        super().__init__(seed)
        self.points: list[tuple[float, float, str]] = []
        try:
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                cols = {c.lower().strip(): c for c in (reader.fieldnames or [])}
                lon_c = cols.get("lon") or cols.get("longitude") or cols.get("x")
                lat_c = cols.get("lat") or cols.get("latitude") or cols.get("y")
                id_c = cols.get("id") or cols.get("name")
                if not lon_c or not lat_c:
                    raise RecipeError(
                        f"the points CSV {path} needs lon and lat columns", hint="header: id,lon,lat"
                    )
                for line, row in enumerate(reader, start=2):
                    try:
                        lon, lat = float(row[lon_c]), float(row[lat_c])
                    except (TypeError, ValueError):
                        raise RecipeError(f"{path}:{line}: lon/lat are not numbers: {row}") from None
                    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
                        raise RecipeError(f"{path}:{line}: ({lon}, {lat}) is not a lon/lat point")
                    self.points.append((lon, lat, row.get(id_c, "") if id_c else str(line - 1)))
        except OSError as e:
            raise RecipeError(f"cannot read the points CSV {path}: {e.strerror}") from None

    def draw(self, index: int) -> Candidate | None:
        if index >= len(self.points):
            return None
        lon, lat, pid = self.points[index]
        return Candidate(index, lon, lat, pid)


#: sampler name (recipe key ``locations.sampler``) -> how to build it from the recipe's ``locations``
SAMPLERS = {
    "cities": lambda spec, seed: CitySampler(seed, spec.top_cities, spec.sigma_km),
    "aoi": lambda spec, seed: AoiSampler(seed, spec.path),
    "points": lambda spec, seed: PointSampler(seed, spec.path),
}


def make_sampler(spec, seed: int) -> Sampler:
    """The sampler described by a recipe's ``locations`` section."""
    try:
        build = SAMPLERS[spec.sampler]
    except KeyError:
        raise RecipeError(f"recipe key 'locations.sampler' is unknown: {spec.sampler!r}",
                          hint=f"samplers: {', '.join(SAMPLERS)}") from None
    return build(spec, seed)


class FootprintIndex:
    """Patch footprints by candidate number; answers which of them a new one would intersect.

    An R-tree over lon/lat bounding boxes finds neighbours; the exact test is done in metres: two
    patches on the same UTM grid intersect iff their squares overlap; across zones the footprints
    are compared as polygons in the first one's UTM zone. Touching edges do not count.
    """

    def __init__(self):
        from rtree import index

        props = index.Property()
        props.dimension = 2
        self._tree = index.Index(properties=props, interleaved=True)
        self._grids: dict[int, PatchGrid] = {}

    def __len__(self) -> int:
        return len(self._grids)

    @staticmethod
    def _boxes(grid: PatchGrid) -> list[tuple[float, float, float, float]]:
        minx, miny, maxx, maxy = grid.bbox_lonlat()
        if maxx - minx > 180:  # crosses the antimeridian: split in two boxes
            ring = grid.footprint_lonlat()
            east = [p[0] for p in ring if p[0] > 0]
            west = [p[0] for p in ring if p[0] <= 0]
            return [(min(east), miny, 180.0, maxy), (-180.0, miny, max(west), maxy)]
        return [(minx, miny, maxx, maxy)]

    def overlapping(self, grid: PatchGrid) -> list[int]:
        """The numbers of the footprints ``grid`` intersects."""
        hits = set()
        for box in self._boxes(grid):
            for j in self._tree.intersection(box):
                if j not in hits and _overlap(grid, self._grids[j]):
                    hits.add(j)
        return sorted(hits)

    def intersects(self, grid: PatchGrid) -> bool:
        return bool(self.overlapping(grid))

    def add(self, grid: PatchGrid, key: int | None = None) -> int:
        key = len(self._grids) if key is None else key
        self._grids[key] = grid
        for box in self._boxes(grid):
            self._tree.insert(key, box)
        return key

    def remove(self, key: int) -> None:
        grid = self._grids.pop(key, None)
        if grid is not None:
            for box in self._boxes(grid):
                self._tree.delete(key, box)


def _overlap(a: PatchGrid, b: PatchGrid) -> bool:
    if a.epsg == b.epsg:
        return abs(a.x0 - b.x0) < min(a.size_m, b.size_m) and abs(a.y0 - b.y0) < min(a.size_m, b.size_m)
    from shapely.geometry import Polygon

    from ..grid import to_utm

    ring = b.footprint_lonlat(densify=4)
    xs, ys = to_utm(a.epsg, [p[0] for p in ring], [p[1] for p in ring])
    pb = Polygon(list(zip(xs, ys)))
    left, bottom, right, top = a.bounds
    pa = Polygon([(left, top), (right, top), (right, bottom), (left, bottom)])
    return pa.intersection(pb).area > 0


@dataclass(frozen=True)
class Verdict:
    candidate: Candidate
    grid: PatchGrid | None
    #: None when the candidate passes, else the rejection reason
    reason: str | None
    #: it passes, but overlaps earlier candidates still pending: it waits for them (:meth:`Screen.resolve`)
    deferred: bool = False


class Screen:
    """Screens candidates in index order: coverage, land, then footprints.

    A footprint holds its ground while its location is accepted or still pending; a location
    rejected later (no scene, clouds, coverage, source errors) releases it, so that rejections for
    imagery do not choke dense sampling. Screening is therefore exact and order-independent: a
    candidate overlapping an accepted earlier one is rejected (``overlap``); one overlapping only
    earlier pending ones is *deferred* (its footprint already blocks later candidates) until those
    are resolved, then rejected if one of them was accepted, else released to be collected. The
    outcome is the one of collecting the candidates strictly one after the other, whatever the
    number of workers and the order results come back in.
    """

    def __init__(self, spec, size_m: int):
        self.spec = spec
        self.size_m = size_m
        self.index = FootprintIndex()
        self.accepted: set[int] = set()
        self.blockers: dict[int, set[int]] = {}  # deferred candidate -> pending earlier ones it overlaps
        self.dependents: dict[int, set[int]] = {}  # pending candidate -> deferred later ones waiting on it

    @property
    def deferred(self) -> int:
        return len(self.blockers)

    def check(self, c: Candidate) -> Verdict:
        if not (MIN_LAT <= c.lat <= MAX_LAT):
            return Verdict(c, None, "outside_coverage")
        grid = PatchGrid.around(c.lon, c.lat, self.size_m)
        if self.spec.land_only and land_fraction(grid) < self.spec.min_land_fraction:
            return Verdict(c, grid, "not_land")
        return self._place(c, grid)

    def _place(self, c: Candidate, grid: PatchGrid) -> Verdict:
        hits = [i for i in self.index.overlapping(grid) if i < c.index]
        if any(i in self.accepted for i in hits):
            return Verdict(c, grid, "overlap")
        self.index.add(grid, c.index)
        if hits:
            self.blockers[c.index] = set(hits)
            for i in hits:
                self.dependents.setdefault(i, set()).add(c.index)
            return Verdict(c, grid, None, deferred=True)
        return Verdict(c, grid, None)

    def resolve(self, idx: int, accepted: bool) -> tuple[list[int], list[int]]:
        """Record the outcome of pending candidate ``idx``; return the deferred candidates it releases
        (to collect now) and those it rejects (they overlap it and it was accepted), both sorted."""
        ready, rejected = set(), set()
        todo = [(idx, accepted)]
        while todo:
            i, ok = todo.pop()
            waiting = sorted(self.dependents.pop(i, ()))
            if ok:
                self.accepted.add(i)
                for j in waiting:  # they overlap an accepted earlier footprint
                    for b in self.blockers.pop(j, ()):
                        if b != i:
                            self.dependents.get(b, set()).discard(j)
                    rejected.add(j)
                    ready.discard(j)
                    todo.append((j, False))
            else:
                self.index.remove(i)
                for j in waiting:
                    b = self.blockers.get(j)
                    if b is not None:
                        b.discard(i)
                        if not b:
                            del self.blockers[j]
                            ready.add(j)
        return sorted(ready - rejected), sorted(rejected)

    def restore_accepted(self, idx: int, grid: PatchGrid) -> None:
        """Re-add the footprint of a location accepted by an earlier run (resume)."""
        self.index.add(grid, idx)
        self.accepted.add(idx)

    def restore_pending(self, c: Candidate, grid: PatchGrid) -> Verdict:
        """Screen again a candidate an earlier run left pending (resume; in index order, after every
        accepted footprint is restored): it may wait for earlier pending ones, or lose to an accepted one."""
        return self._place(c, grid)


def land_fraction(grid: PatchGrid, n: int = 5) -> float:
    """Fraction of an n x n lattice of points in the footprint that is land (1 km mask)."""
    from ..grid import to_lonlat
    from ..landmask import is_land

    left, bottom, right, top = grid.bounds
    step = grid.size_m / n
    xs = left + step * (np.arange(n) + 0.5)
    ys = bottom + step * (np.arange(n) + 0.5)
    gx, gy = np.meshgrid(xs, ys)
    lon, lat = to_lonlat(grid.epsg, gx.ravel(), gy.ravel())
    return float(np.mean(is_land(lon, lat)))
