import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Polygon

from seco_data.errors import RecipeError
from seco_data.grid import PatchGrid, to_lonlat, to_utm, utm_epsg
from seco_data.sample.locations import AoiSampler, CitySampler, FootprintIndex, PointSampler, Screen, land_fraction
from seco_data.recipe import Locations


def _independent_overlap(a: PatchGrid, b: PatchGrid) -> bool:
    """Reference test: both footprints as polygons in a's UTM zone, interiors intersect."""
    def poly(g):
        ring = g.footprint_lonlat(densify=8)
        xs, ys = to_utm(a.epsg, [p[0] for p in ring], [p[1] for p in ring])
        return Polygon(list(zip(xs, ys)))
    # 0.01 m2: adjacent squares (shared edge) keep a numerical sliver after the lon/lat round trip
    return poly(a).intersection(poly(b)).area > 1e-2


def _imagery_ok(seed: int, index: int) -> bool:
    """Whether a candidate's imagery passes, a fixed coin per candidate (what a source would decide)."""
    return bool(np.random.default_rng([seed, index]).random() < 0.6)


def _serial(cands, seed, sigma):
    """The reference: candidates collected strictly one after the other."""
    screen = Screen(Locations(land_only=False, sigma_km=sigma), 2640)
    accepted, overlap = [], []
    for c in cands:
        v = screen.check(c)
        assert not v.deferred  # nothing is ever pending here
        if v.reason == "overlap":
            overlap.append(c.index)
        elif v.reason is None:
            ok = _imagery_ok(seed, c.index)
            screen.resolve(c.index, ok)
            if ok:
                accepted.append((c.index, v.grid))
    return accepted, overlap


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), sigma=st.sampled_from([1.0, 3.0, 10.0]))
def test_screened_footprints_never_intersect(seed, sigma):
    # few cities and a tiny sigma force many near-collisions, the case that matters
    cands = list(itertools.islice(CitySampler(seed, top=3, sigma_km=sigma).stream(), 150))
    accepted, overlap = _serial(cands, seed, sigma)
    assert overlap and accepted
    kept = [g for _, g in accepted]
    for i in range(len(kept)):
        for j in range(i):
            assert not _independent_overlap(kept[i], kept[j]), (kept[i], kept[j])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), sigma=st.sampled_from([1.0, 3.0]), window=st.integers(2, 40),
       order=st.integers(0, 2**31))
def test_concurrent_screening_decides_as_the_serial_run(seed, sigma, window, order):
    """Candidates in flight together, resolved in any order: released footprints of imagery
    rejections and deferred candidates give exactly the serial run's locations."""
    cands = list(itertools.islice(CitySampler(seed, top=3, sigma_km=sigma).stream(), 150))
    want_accepted, want_overlap = _serial(cands, seed, sigma)
    screen = Screen(Locations(land_only=False, sigma_km=sigma), 2640)
    rng = np.random.default_rng(order)
    grids, ready, accepted, overlap = {}, [], set(), set()
    todo = iter(cands)
    in_flight = 0
    while True:
        while in_flight < window and (c := next(todo, None)) is not None:
            v = screen.check(c)
            if v.reason == "overlap":
                overlap.add(c.index)
                continue
            grids[c.index] = v.grid
            in_flight += 1
            if not v.deferred:
                ready.append(c.index)
        if not ready:
            assert screen.deferred == 0 and in_flight == 0
            break
        i = ready.pop(int(rng.integers(len(ready))))  # results come back in any order
        ok = _imagery_ok(seed, i)
        in_flight -= 1
        accepted |= {i} if ok else set()
        released, lost = screen.resolve(i, ok)
        ready += released
        overlap |= set(lost)
        in_flight -= len(lost)
    assert sorted(accepted) == [i for i, _ in want_accepted]
    assert sorted(overlap) == sorted(want_overlap)


def test_overlap_across_utm_zones_and_touching_edges():
    idx = FootprintIndex()
    # two patches straddling the zone 31/32 boundary at 6 E, 1 km apart
    a = PatchGrid.around(5.995, 45.0)
    b = PatchGrid.around(6.005, 45.0)
    assert a.epsg != b.epsg
    idx.add(a)
    assert idx.intersects(b) and _independent_overlap(a, b)
    # exactly adjacent squares on the same grid share an edge only: not an intersection
    c = PatchGrid(a.epsg, a.x0 + a.size_m, a.y0, a.size_m)
    assert not idx.intersects(c)
    d = PatchGrid(a.epsg, a.x0 + a.size_m - 10, a.y0, a.size_m)
    assert idx.intersects(d)
    # across the antimeridian
    e = PatchGrid.around(179.99, -17.0)
    f = PatchGrid.around(-179.995, -17.0)
    idx.add(e)
    assert idx.intersects(f)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_same_seed_same_candidates(seed):
    a = CitySampler(seed, top=100, sigma_km=50)
    b = CitySampler(seed, top=100, sigma_km=50)
    assert [b.draw(i) for i in (5, 3, 0)] == [a.draw(i) for i in (5, 3, 0)]  # any order
    assert CitySampler(seed + 1, top=100).draw(0) != a.draw(0)


def test_city_offsets_are_isotropic_in_km_at_high_latitude():
    s = CitySampler(7, top=10000, sigma_km=50)
    cities = {n: (lo, la) for n, lo, la in zip(s.cities.name, s.cities.lon, s.cities.lat)}
    dx, dy = [], []
    for i in range(6000):
        c = s.draw(i)
        lon0, lat0 = cities[c.origin.rsplit(", ", 1)[0]]
        if abs(lat0) > 55:
            dlon = (c.lon - lon0 + 180) % 360 - 180
            dx.append(dlon * 111.32 * math.cos(math.radians(lat0)))
            dy.append((c.lat - lat0) * 111.32)
    assert len(dx) > 100
    assert np.std(dx) == pytest.approx(50, rel=0.2) and np.std(dy) == pytest.approx(50, rel=0.2)


def test_land_only_screen():
    screen = Screen(Locations(land_only=True, min_land_fraction=0.5), 2640)
    assert screen.check(CitySampler(0, top=1).draw(0)).reason in (None, "overlap", "not_land")
    from seco_data.sample.locations import Candidate
    assert screen.check(Candidate(0, -30.0, 0.0)).reason == "not_land"  # mid Atlantic
    assert screen.check(Candidate(1, 2.35, 48.85)).reason is None  # Paris
    assert screen.check(Candidate(2, 0.0, 86.0)).reason == "outside_coverage"
    assert land_fraction(PatchGrid.around(2.35, 48.85)) == 1.0


def test_aoi_sampler_uniform_inside(tmp_path):
    # a lat band from 0 to 60 N: area-uniform sampling puts fewer points per degree near 60
    poly = {"type": "Polygon", "coordinates": [[[10, 0], [20, 0], [20, 60], [10, 60], [10, 0]]]}
    p = tmp_path / "aoi.geojson"
    p.write_text(json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": poly, "properties": {}}]}))
    s = AoiSampler(3, p)
    pts = [s.draw(i) for i in range(4000)]
    lats = np.array([c.lat for c in pts])
    assert all(10 <= c.lon <= 20 and 0 <= c.lat <= 60 for c in pts)
    expected = math.sin(math.radians(30)) / math.sin(math.radians(60))  # share below 30 N
    assert np.mean(lats < 30) == pytest.approx(expected, abs=0.03)
    (tmp_path / "bad.geojson").write_text("{nope")
    with pytest.raises(RecipeError, match="AOI"):
        AoiSampler(0, tmp_path / "bad.geojson")


def test_point_sampler(tmp_path):
    p = tmp_path / "pts.csv"
    p.write_text("id,lat,lon\nparis,48.85,2.35\ntokyo,35.68,139.69\n")
    s = PointSampler(0, p)
    got = list(s.stream())
    assert [(c.origin, c.lon, c.lat) for c in got] == [("paris", 2.35, 48.85), ("tokyo", 139.69, 35.68)]
    p.write_text("a,b\n1,2\n")
    with pytest.raises(RecipeError, match="lon and lat"):
        PointSampler(0, p)
    p.write_text("lon,lat\n2.3,north\n")
    with pytest.raises(RecipeError, match=":2:"):
        PointSampler(0, p)


@settings(max_examples=100, deadline=None)
@given(lon=st.floats(-179.9, 179.9), lat=st.floats(-79.0, 83.0))
def test_patch_grid_is_snapped_and_centred(lon, lat):
    g = PatchGrid.around(lon, lat)
    assert g.epsg == utm_epsg(lon, lat)
    assert g.x0 % 10 == 0 and g.y0 % 10 == 0
    cx, cy = g.centre
    x, y = to_utm(g.epsg, lon, lat)
    assert abs(cx - x) <= 5.0 + 1e-6 and abs(cy - y) <= 5.0 + 1e-6  # half a 10 m pixel
    clon, clat = to_lonlat(g.epsg, cx, cy)
    assert abs(clat - lat) < 1e-3
    assert g.shape(10) == (264, 264) and g.shape(20) == (132, 132) and g.shape(60) == (44, 44)
