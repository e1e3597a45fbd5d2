"""A local STAC catalog over real OSCD scenes, sampled with the ``stac`` source."""

import datetime as dt
import json

import numpy as np
import pytest

from seco_data.catalog.index import CatalogIndex
from helpers import check_catalog, ledger_rows
from seco_data.sample.run import sample
from seco_data.errors import CatalogError
from seco_data.grid import PatchGrid
from seco_data.sources.local_catalog import make_local_catalog
from seco_data.recipe import load_recipe
from seco_data.sample.select import RetryPolicy
from seco_data.sources.stac import StacSource
from seco_data.catalog.validate import validate_catalog

CITIES = ("paris", "bercy", "beirut")
#: dates.txt of each city (the imgs_1 file names of some cities carry another date: dates.txt wins)
DATES = {"paris": ("2016-11-30", "2017-11-07"), "bercy": ("2016-11-30", "2017-08-29"),
         "beirut": ("2015-08-20", "2017-10-03")}


@pytest.fixture(scope="module")
def oscd(shared, tmp_path_factory):
    """Three OSCD cities (symlinked, read-only) and a catalog over them written elsewhere."""
    images = shared / "data" / "oscd" / "Onera Satellite Change Detection dataset - Images"
    root = tmp_path_factory.mktemp("oscd")
    for city in CITIES:
        (root / city).symlink_to(images / city, target_is_directory=True)
    cat = make_local_catalog(root, tmp_path_factory.mktemp("catalog"), name="oscd")
    return root, cat


def _items(cat):
    return {p.stem: json.loads(p.read_text()) for p in cat.parent.glob("*/*.json")}


def test_items_dates_and_bands(oscd):
    root, cat = oscd
    c = json.loads(cat.read_text())
    assert c["id"] == "oscd" and len([link for link in c["links"] if link["rel"] == "item"]) == 6
    items = _items(cat)
    assert sorted(items) == sorted(f"{c}_imgs_{k}" for c in CITIES for k in (1, 2))
    for city in CITIES:
        for k in (1, 2):
            it = items[f"{city}_imgs_{k}"]
            assert it["properties"]["datetime"] == f"{DATES[city][k - 1]}T00:00:00Z"
            assert it["properties"]["proj:code"] == "EPSG:4326" and it["properties"]["eo:cloud_cover"] == 0
            want = 13 if city in ("paris", "bercy") else 4
            assert len(it["assets"]) == want and it["assets"]["B02"]["eo:bands"][0]["common_name"] == "blue"
            assert it["assets"]["B02"]["href"].startswith("/")  # data outside the catalog folder: absolute
            w, s, e, n = it["bbox"]
            assert w < e and s < n and -180 <= w and e <= 180
    # pystac reads it, and the source indexes it
    src = StacSource("L1C", url=cat)
    assert src.check()["kind"] == "static"
    grid = PatchGrid.around(2.333, 48.821)
    found = src.search(grid, dt.date(2016, 11, 1), dt.date(2017, 12, 1))
    assert sorted(s.scene_id for s in found) == ["paris_imgs_1", "paris_imgs_2"]


def test_missing_date_is_an_error_naming_the_file(tmp_path, shared):
    src = next((shared / "data" / "oscd" / "Onera Satellite Change Detection dataset - Images" / "paris" / "imgs_2").glob("*_B02.tif"))
    (tmp_path / "scene").mkdir()
    (tmp_path / "scene" / "B02.tif").symlink_to(src)
    with pytest.raises(CatalogError, match="B02.tif") as e:
        make_local_catalog(tmp_path, tmp_path / "out")
    assert "dates.txt" in e.value.hint


def test_sample_bi_temporal_patches_from_oscd(oscd, tmp_path, schemas):
    root, cat = oscd
    items = _items(cat)
    centres = {c: ((items[f"{c}_imgs_1"]["bbox"][0] + items[f"{c}_imgs_1"]["bbox"][2]) / 2,
                   (items[f"{c}_imgs_1"]["bbox"][1] + items[f"{c}_imgs_1"]["bbox"][3]) / 2) for c in ("paris", "bercy")}
    csv = tmp_path / "points.csv"
    csv.write_text("lon,lat,id\n" + "".join(f"{lon},{lat},{c}\n" for c, (lon, lat) in centres.items()))
    # season 0 catches both cities' first date (2016-11-30), season 1 their second (2017-08-29 / 11-07)
    recipe = load_recipe("demo", {
        "source": "stac", "product": "L1C", "n": 2, "bands": ["B02", "B03", "B04", "B08"],
        "seasons.anchors": ["2016-11-30", "2017-10-03"], "seasons.window_days": 90, "seasons.shift_days": 0,
        "locations.sampler": "points", "locations.path": str(csv), "locations.land_only": False,
        "filters.scene_cloud_max": 100, "filters.patch_cloud_max": 1.0, "filters.coverage_min": 0.95,
        "source_options": {"url": str(cat)},
    })
    out = tmp_path / "out"
    report = sample(recipe, out, retry=RetryPolicy(base_s=0.01))
    assert report.complete and report.patches == 4
    check_catalog(out, 2, 2)
    assert validate_catalog(out, schemas)[1] == []
    rows = ledger_rows(out)
    assert [r[2] for r in rows] == ["paris_imgs_1", "paris_imgs_2", "bercy_imgs_1", "bercy_imgs_2"]
    assert [r[3][:10] for r in rows] == [*DATES["paris"], *DATES["bercy"]]

    import rasterio
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    patches = {(p.location, p.season): p for p in CatalogIndex(out).patches()}
    for loc, city in enumerate(("paris", "bercy")):
        for season, k in enumerate((1, 2)):
            a = patches[loc, season].data[0]
            got = a.read()
            with rasterio.open(a.path) as ds:
                crs, transform = ds.crs, ds.transform
            assert crs.to_epsg() == 32631 and got.shape == (4, 264, 264) and a.bands == ("B02", "B03", "B04", "B08")
            src = items[f"{city}_imgs_{k}"]["assets"]["B04"]["href"]
            want = np.zeros((264, 264), np.uint16)
            with rasterio.open(src) as s:
                reproject(s.read(1), want, src_transform=s.transform, src_crs=s.crs, dst_transform=transform,
                          dst_crs=crs, resampling=Resampling.bilinear, src_nodata=0, dst_nodata=0)
            diff = np.abs(got[2].astype(int) - want.astype(int))
            assert np.median(diff) <= 1 and np.mean(diff) < 5, (city, k, diff.mean())
            assert got[2].std() > 50  # real texture, not a constant


def test_cli_make_local_catalog_and_check(shared, tmp_path):
    """`sources make-local-catalog` over a real OSCD city, then `sources check` on it; a bad URL fails."""
    from click.testing import CliRunner

    from seco_cli.data import main

    images = shared / "data" / "oscd" / "Onera Satellite Change Detection dataset - Images"
    root = tmp_path / "scenes"
    root.mkdir()
    (root / "paris").symlink_to(images / "paris", target_is_directory=True)
    r = CliRunner().invoke(main, ["sources", "make-local-catalog", str(root), "--out", str(tmp_path / "stac")])
    assert r.exit_code == 0, r.output
    cat = tmp_path / "stac" / "catalog.json"
    assert f"catalog: {cat}" in r.output and cat.exists()
    lon, lat = 2.333, 48.821  # inside the Paris scene
    args = ["sources", "check", "--source", "stac", "--stac-url", str(cat), "--product", "L1C",
            "--bands", "B02,B03,B04,B08", "--set", "seasons.anchors=[2016-11-30]", "--window-days", "20",
            "--set", "seasons.shift_days=0", "--lon", str(lon), "--lat", str(lat)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "paris_imgs_1" in r.output and "10 m: 4x264x264 uint16" in r.output and "stac is ready" in r.output
    r = CliRunner().invoke(main, [*args[:5], str(tmp_path / "nope" / "catalog.json"), *args[6:]])
    assert r.exit_code != 0 and "FAIL" in r.output and "Traceback" not in r.output
