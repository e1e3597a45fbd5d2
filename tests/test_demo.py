"""The embedded default end to end: demo recipe on the simulator, process workers, schema-valid."""

import json

import numpy as np
import rasterio

from helpers import check_catalog, ledger_rows
from seco_data.sample.run import sample
from seco_data.catalog.info import catalog_info
from seco_data.recipe import load_recipe
from seco_data.catalog.validate import validate_catalog


def test_demo_catalog_is_deterministic_complete_and_valid(tmp_path, schemas):
    recipe = load_recipe("demo", {"n": 10})
    one = sample(recipe, tmp_path / "w1", workers=1)
    two = sample(recipe, tmp_path / "w2", workers=2)  # forked worker processes
    assert one.accepted == two.accepted == 10
    assert ledger_rows(tmp_path / "w1") == ledger_rows(tmp_path / "w2")
    for p in (tmp_path / "w1").rglob("*.tif"):
        assert p.read_bytes() == (tmp_path / "w2" / p.relative_to(tmp_path / "w1")).read_bytes()

    out = tmp_path / "w2"
    items = check_catalog(out, 10, 4)
    n, problems = validate_catalog(out, schemas)
    assert problems == [] and n == 2 + 10  # catalog, collection and one item per location
    coll = json.loads((out / "collection.json").read_text())
    assert coll["license"] == "CC0-1.0" and "synthetic" in coll["keywords"]
    assert coll["seco:source"] == {"name": "sim", "product": "L2A", "synthetic": True, "seed": 0}
    f = recipe.filters
    for it in items:
        p = it["properties"]
        assert p["seco:synthetic"] is True and p["eo:cloud_cover"] <= f.scene_cloud_max
        assert p["seco:cloud_fraction"] <= f.patch_cloud_max and p["seco:valid_fraction"] >= f.coverage_min
        assert p["datetime"] is None and p["start_datetime"] <= p["end_datetime"]
        assert sorted(s["season"] for s in p["seco:seasons"]) == [0, 1, 2, 3]
        for s in p["seco:seasons"]:
            w0, w1 = s["window"]
            assert w0 <= s["datetime"] < w1 and p["start_datetime"][:19] <= s["datetime"][:19] <= p["end_datetime"][:19]
            assert s["eo:cloud_cover"] <= f.scene_cloud_max and s["cloud_fraction"] <= f.patch_cloud_max
        with rasterio.open(out / it["assets"]["data_10m"]["href"]) as ds:
            px = ds.read()
            assert px.shape == (16, 264, 264) and (px > 0).all()  # 4 bands x 4 seasons, full coverage
            assert 100 < np.median(px) < 6000  # plausible surface reflectance DN
    info = catalog_info(out)
    assert info["locations"] == 10 and sum(info["dates_by_month"].values()) == 40
    assert info["candidates"] >= 10 and sum(info["rejections"].values()) == info["candidates"] - 10
