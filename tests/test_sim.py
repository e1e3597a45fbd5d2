"""The embedded simulator source ``sim``: determinism, seasons, snow, clouds, swath edges, bands."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pytest

from seco_data.bands import BANDS
from seco_data.grid import PatchGrid
from seco_data.sources import get_source
from seco_data.sources.sim import CLASS_NAMES, SimSource

ALL_L1C = {10: ("B02", "B03", "B04", "B08"), 20: ("B05", "B06", "B07", "B8A", "B11", "B12"),
           60: ("B01", "B09", "B10")}
ALL_L2A = {**ALL_L1C, 60: ("B01", "B09")}
WATER, CROPLAND = CLASS_NAMES.index("water"), CLASS_NAMES.index("cropland")


def _clear_caches():
    import seco_data.sources.sim.landcover as lc
    import seco_data.sources.sim.source as src

    lc.landscape.cache_clear()
    src._masks.cache_clear()


def _best(src: SimSource, grid: PatchGrid, start: dt.date, end: dt.date):
    """(scene, masks) with full coverage and the least cloud in the window."""
    probes = [(src.read_masks(s, grid), s) for s in src.search(grid, start, end)]
    probes = [(m, s) for m, s in probes if m.valid.all()]
    masks, scene = min(probes, key=lambda p: p[0].cloud_fraction)
    return scene, masks


def _mean_ndvi(src: SimSource, grid: PatchGrid, start: dt.date, end: dt.date) -> float:
    scene, m = _best(src, grid, start, end)
    px = src.read(scene, grid, {10: ("B04", "B08")}).pixels[10].astype(np.float64)
    clear = m.valid & ~m.cloud & ~m.shadow
    assert clear.mean() > 0.3, f"no clear view of {grid} in {start}..{end}"
    red, nir = px
    return float(((nir - red) / (nir + red))[clear].mean())


def test_source_contract():
    src = get_source("sim", "L2A")
    assert isinstance(src, SimSource)
    assert (src.name, src.synthetic, src.io_bound, src.scale, src.nodata) == ("sim", True, False, 1e-4, 0)
    assert src.providers[0]["roles"] == ["producer", "processor"]
    with pytest.raises(TypeError):
        SimSource(product="L2A", cloudy=True)  # unknown options are refused
    with pytest.raises(TypeError):
        SimSource(seed="1")
    grid = PatchGrid.around(1.0, 48.0)
    scene = src.search(grid, dt.date(2021, 6, 1), dt.date(2021, 6, 6))[0]
    with pytest.raises(ValueError, match="B10"):
        src.read(scene, grid, {60: ("B01", "B10")})
    with pytest.raises(ValueError, match="tile"):  # a scene of another tile
        src.read_masks(scene, PatchGrid.around(-93.5, 42.0))


def test_search_schedule_and_ids():
    src = SimSource("L1C")
    grid = PatchGrid.around(1.0, 48.0)
    # before Sentinel-2B flew (mid-2017): 2A alone, every 10 days from the start of the record
    early = src.search(grid, dt.date(2015, 6, 1), dt.date(2015, 9, 30))
    early_days = [s.datetime.date() for s in early]
    assert early_days[0] >= dt.date(2015, 6, 27) and early_days[0] < dt.date(2015, 7, 7)
    assert all((b - a).days == 10 for a, b in zip(early_days, early_days[1:]))
    assert {s.platform for s in early} == {"sentinel-2a"}
    scenes = src.search(grid, dt.date(2019, 6, 1), dt.date(2019, 8, 31))
    days = [s.datetime.date() for s in scenes]
    assert all((b - a).days == 5 for a, b in zip(days, days[1:])) and len(days) >= 18
    platforms = [s.platform for s in scenes[:4]]
    assert platforms in (["sentinel-2a", "sentinel-2b"] * 2, ["sentinel-2b", "sentinel-2a"] * 2)
    for s in scenes:
        assert re.fullmatch(r"S2[AB]_MSIL1C_\d{8}T\d{6}_R\d{3}_T\d{2}[C-X][A-Z]{2}", s.scene_id), s.scene_id
        assert s.product == "L1C" and 0.0 <= s.cloud_cover <= 100.0
        assert s.datetime.tzinfo is not None and 9.5 < s.datetime.hour + s.datetime.minute / 60 < 10.6
    # inclusive window on dates; another patch in the same 100 km tile sees the same scenes
    one = src.search(grid, days[3], days[3])
    assert [s.scene_id for s in one] == [scenes[3].scene_id]
    near = PatchGrid(grid.epsg, grid.x0 + 5000, grid.y0 - 3000)
    same = src.search(near, dt.date(2019, 6, 1), dt.date(2019, 8, 31))
    assert [(s.scene_id, s.cloud_cover) for s in same] == [(s.scene_id, s.cloud_cover) for s in scenes]
    # scene cloud cover: many clear scenes, a long tail of cloudy ones, cloudier in the tropics
    cc = {lat: np.array([s.cloud_cover for s in src.search(PatchGrid.around(lon, lat), dt.date(2017, 1, 1),
                                                            dt.date(2020, 12, 31))])
          for lon, lat in ((15.0, 24.0), (-60.0, -3.0))}
    assert (cc[24.0] < 5).mean() > 0.4 and cc[24.0].mean() < 35
    assert cc[-3.0].mean() > cc[24.0].mean() + 20


def test_deterministic_across_instances_and_call_order():
    grid = PatchGrid.around(-1.2, 46.2)  # coast, fields, clouds
    a, b = SimSource("L1C"), SimSource("L1C")
    window = (dt.date(2020, 3, 1), dt.date(2020, 4, 30))
    sa, sb = a.search(grid, *window), b.search(grid, *window)
    assert [(s.scene_id, s.datetime, s.cloud_cover, s.extra) for s in sa] == \
           [(s.scene_id, s.datetime, s.cloud_cover, s.extra) for s in sb]
    picks = [s for s in sa if 5 < s.cloud_cover < 95][:2] + [s for s in sa if s.cloud_cover == 0][:1]
    first = [a.read(s, grid, ALL_L1C) for s in picks]
    _clear_caches()
    second = [b.read(s, grid, ALL_L1C) for s in reversed(picks)][::-1]
    for r1, r2 in zip(first, second):
        for res in ALL_L1C:
            assert r1.pixels[res].tobytes() == r2.pixels[res].tobytes()
        assert np.array_equal(r1.masks.cloud, r2.masks.cloud)
    assert not np.array_equal(first[0].pixels[10], first[-1].pixels[10])
    other = SimSource("L1C", seed=1)
    assert other.search(grid, *window)[0].cloud_cover != sa[0].cloud_cover or \
           not np.array_equal(other.landcover(grid), a.landcover(grid))


def test_overlapping_grids_see_the_same_world():
    src = SimSource("L2A")
    g1 = PatchGrid.around(10.5, 52.3)
    g2 = PatchGrid(g1.epsg, g1.x0 + 1230, g1.y0 - 870, g1.size_m)  # 10 m multiple, odd in 20 m cells
    c1, c2 = src.landcover(g1), src.landcover(g2)
    r0, c0 = 87, 123  # overlap offsets in 10 m pixels
    assert np.array_equal(c1[r0:, c0:], c2[:-r0, :-c0])
    assert len(np.unique(c1)) >= 3
    scenes = src.search(g1, dt.date(2019, 1, 1), dt.date(2019, 12, 31))
    s2 = {s.scene_id for s in src.search(g2, dt.date(2019, 1, 1), dt.date(2019, 12, 31))}
    checked = 0
    for s in scenes:
        if not (15 < s.cloud_cover < 85) or s.scene_id not in s2:
            continue
        m1, m2 = src.read_masks(s, g1), src.read_masks(s, g2)
        for a, b in ((m1.cloud, m2.cloud), (m1.shadow, m2.shadow), (m1.valid, m2.valid)):
            assert np.array_equal(a[r0:, c0:], b[:-r0, :-c0])
        p1 = src.read(s, g1, {10: ("B03", "B08")}).pixels[10].astype(int)
        p2 = src.read(s, g2, {10: ("B03", "B08")}).pixels[10].astype(int)
        assert np.abs(p1[:, r0:, c0:] - p2[:, :-r0, :-c0]).max() <= 1
        checked += m1.cloud.any() and not m1.cloud.all()
        if checked >= 2:
            break
    assert checked >= 2


@pytest.mark.parametrize("lon, lat", [
    (1.0, 48.0),  # France
    (-93.5, 42.0),  # US Midwest
    (-61.0, -33.5),  # Argentina: seasons reversed
])
def test_ndvi_follows_the_seasons(lon, lat):
    src = SimSource("L2A")
    grid = PatchGrid.around(lon, lat)
    assert (src.landcover(grid) == CROPLAND).mean() > 0.1
    for year in (2018, 2021):
        july = _mean_ndvi(src, grid, dt.date(year, 6, 15), dt.date(year, 8, 15))
        january = _mean_ndvi(src, grid, dt.date(year - 1, 12, 1), dt.date(year, 2, 28))
        if lat > 0:
            assert july > january + 0.15, (year, july, january)
        else:
            assert january > july + 0.15, (year, july, january)


def test_snow_in_winter_at_high_latitude():
    src = SimSource("L2A")
    grid = PatchGrid.around(25.0, 66.0)
    land = src.landcover(grid) != WATER
    frac = {}
    for month in (2, 7):
        scene, m = _best(src, grid, dt.date(2021, month - 1, 15), dt.date(2021, month + 1, 15))
        green, swir = src.read(scene, grid, {10: ("B03",), 20: ("B11",)}).pixels.values()
        green = green[0].astype(float)
        swir = np.repeat(np.repeat(swir[0].astype(float), 2, axis=0), 2, axis=1)
        ndsi = (green - swir) / (green + swir)
        clear = land & m.valid & ~m.cloud & ~m.shadow
        assert clear.mean() > 0.3, f"no clear view in month {month}"
        frac[month] = float(((ndsi > 0.4) & (green > 1500))[clear].mean())
    assert frac[2] > 0.7 and frac[7] < 0.02, frac


def test_cloud_masks_honour_the_stated_cloud_cover():
    src = SimSource("L2A")
    rng = np.random.default_rng(42)
    stated, measured = [], []
    while len(stated) < 300:
        lon, lat = rng.uniform(-170, 170), rng.uniform(-55, 70)
        day = dt.date(2016, 1, 1) + dt.timedelta(days=int(rng.integers(0, 2900)))
        scenes = src.search(PatchGrid.around(lon, lat), day, day + dt.timedelta(days=4))
        if not scenes or scenes[0].cloud_cover in (0.0, 100.0):
            continue
        m = src.read_masks(scenes[0], PatchGrid.around(lon, lat))
        if m.valid.all():
            stated.append(scenes[0].cloud_cover)
            measured.append(100.0 * m.cloud.mean())
    stated, measured = np.array(stated), np.array(measured)
    edges = np.array([0, 20, 40, 60, 80, 100.01])
    diffs = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (stated >= lo) & (stated < hi)
        assert sel.sum() >= 15, (lo, hi, sel.sum())
        diffs.append(abs(stated[sel].mean() - measured[sel].mean()))
    assert np.mean(diffs) < 6.0 and max(diffs) < 12.0, diffs
    assert abs(stated.mean() - measured.mean()) < 4.0
    assert np.corrcoef(stated, measured)[0, 1] > 0.8


def test_clouds_are_bright_shadows_dark_and_cirrus_band_sees_clouds():
    src = SimSource("L1C")
    grid = PatchGrid.around(1.0, 48.0)
    scenes = src.search(grid, dt.date(2021, 3, 1), dt.date(2021, 10, 31))
    masks = [src.read_masks(s, grid) for s in scenes]
    i = next(i for i, m in enumerate(masks) if 0.1 < m.cloud.mean() < 0.8 and m.shadow.mean() > 0.03)
    s, m = scenes[i], masks[i]
    px = src.read(s, grid, {10: ("B02", "B08"), 20: ("B11",), 60: ("B10",)}).pixels
    blue, nir = px[10].astype(float)
    clear = ~m.cloud & ~m.shadow
    assert blue[m.cloud].mean() > 2.5 * blue[clear].mean()
    swir = np.repeat(np.repeat(px[20][0].astype(float), 2, 0), 2, 1)
    assert swir[m.cloud].mean() > 3000
    cirrus = np.repeat(np.repeat(px[60][0].astype(float), 6, 0), 6, 1)
    assert np.median(cirrus[m.cloud]) > 1000 > 10 * np.median(cirrus[clear])
    # the shadowed ground is darker than the same ground seen clear a few days before or after
    j = min((j for j, mj in enumerate(masks) if not (mj.cloud | mj.shadow).any() and mj.valid.all()),
            key=lambda j: abs(j - i))
    assert abs(j - i) <= 4
    nir_clear = src.read(scenes[j], grid, {10: ("B08",)}).pixels[10][0].astype(float)
    assert nir[m.shadow].mean() < 0.7 * nir_clear[m.shadow].mean()
    assert 0.85 < nir[clear].mean() / nir_clear[clear].mean() < 1.15


def test_swath_edge_scenes_have_no_data_beyond_the_edge():
    src = SimSource("L1C")
    grid = PatchGrid.around(1.0, 48.0)
    scenes = src.search(grid, dt.date(2019, 1, 1), dt.date(2021, 12, 31))
    edge = [s for s in scenes if s.extra["swath_edge"]]
    assert 0.1 < len(edge) / len(scenes) < 0.28
    # patches across the middle of the tile: the edge line crosses that row
    row = [PatchGrid(grid.epsg, (grid.x0 // 100_000) * 100_000 + 1000 + 2640 * k,
                     (grid.y0 // 100_000) * 100_000 + 51_320) for k in range(37)]
    valid = [src.read_masks(edge[0], g).valid for g in row]
    frac = np.array([v.mean() for v in valid])
    assert (frac == 1).any() and (frac < 1).any()
    cut = int(np.flatnonzero((frac > 0) & (frac < 1))[0])
    read = src.read(edge[0], row[cut], ALL_L1C)
    v = read.masks.valid
    assert np.array_equal(v, valid[cut])
    for res, px in read.pixels.items():
        f = res // 10
        vr = v.reshape(v.shape[0] // f, f, v.shape[1] // f, f).all(axis=(1, 3))
        assert (px[:, ~vr] == 0).all() and (px[:, vr] > 0).all()
    assert not read.masks.cloud[~v].any()
    inside = src.read_masks(scenes[0] if not scenes[0].extra["swath_edge"] else scenes[1], grid)
    assert inside.valid.all()


def test_bands_shapes_dtypes_and_nesting():
    grid = PatchGrid.around(-93.5, 42.0)
    for product, bands in (("L1C", ALL_L1C), ("L2A", ALL_L2A)):
        src = SimSource(product)
        scene = src.search(grid, dt.date(2020, 7, 1), dt.date(2020, 7, 5))[0]
        read = src.read(scene, grid, bands)
        assert set(read.pixels) == set(bands) and read.bands == bands
        for res, names in bands.items():
            px = read.pixels[res]
            assert px.dtype == np.uint16 and px.shape == (len(names), 2640 // res, 2640 // res)
        assert read.masks.cloud.shape == read.masks.valid.shape == (264, 264)
        assert src.read(scene, grid, {}).pixels == {}
        # a 20 m band is the 2x2 block mean of the same band computed at 10 m (up to sensor noise)
        fine = src.read(scene, grid, {10: ("B8A",)}).pixels[10][0].astype(float)
        coarse = src.read(scene, grid, {20: ("B8A",)}).pixels[20][0].astype(float)
        block = fine.reshape(132, 2, 132, 2).mean(axis=(1, 3))
        assert abs(block.mean() - coarse.mean()) < 5 and np.abs(block - coarse).mean() < 40
    assert set(BANDS) == {b for names in ALL_L1C.values() for b in names}


def test_water_is_dark_in_nir_and_swir_at_the_coast():
    src = SimSource("L2A")
    grid = PatchGrid.around(-1.2, 46.2)  # La Rochelle, Atlantic coast
    cls = src.landcover(grid)
    water, land = cls == WATER, (cls != WATER)
    assert 0.1 < water.mean() < 0.9
    scene, m = _best(src, grid, dt.date(2021, 6, 1), dt.date(2021, 8, 31))
    px = src.read(scene, grid, {10: ("B03", "B08"), 20: ("B11",)}).pixels
    green, nir = px[10].astype(float)
    clear = m.valid & ~m.cloud & ~m.shadow
    assert nir[water & clear].mean() < 400 and nir[land & clear].mean() > 4 * nir[water & clear].mean()
    assert green[water & clear].mean() > nir[water & clear].mean()
