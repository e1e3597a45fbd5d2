import json

import numpy as np
import pytest
import rasterio

from fakes import ScriptedSource
from seco_data.sample.run import sample
from seco_data.geotiff import encode
from seco_data.grid import PatchGrid, to_utm, utm_epsg
from seco_data.recipe import load_recipe
from seco_data.sources.base import SceneRef


def test_written_patches_are_exact_utm_grids_and_lossless(tmp_path, scripted):
    out = tmp_path / "o"
    sample(load_recipe("demo", {"source": scripted, "n": 6}), out)
    src = ScriptedSource()
    items = [json.loads(p.read_text()) for p in out.glob("*/*/*.json")]
    assert len(items) == 24
    for item in items:
        lon, lat = item["properties"]["seco:point"]
        epsg = utm_epsg(lon, lat)
        x, y = to_utm(epsg, lon, lat)
        folder = next(out.glob(f"*/{item['properties']['seco:location']:07d}"))
        bounds = set()
        for key, asset in item["assets"].items():
            if key == "thumbnail":  # the PNG quicklook: checked in test_thumbnails.py
                continue
            res = int(key.split("_")[1][:-1])
            with rasterio.open(folder / asset["href"]) as ds:
                assert ds.crs.to_epsg() == epsg and ds.dtypes == ("uint16",) * ds.count
                t = ds.transform
                assert (t.a, t.b, t.d, t.e) == (res, 0, 0, -res)
                assert t.c % 10 == 0 and t.f % 10 == 0  # 10 m lattice
                assert (ds.height, ds.width) == {10: (264, 264), 20: (132, 132), 60: (44, 44)}[res]
                assert list(t)[:6] == asset["proj:transform"] and [ds.height, ds.width] == asset["proj:shape"]
                cx, cy = t.c + t.a * ds.width / 2, t.f + t.e * ds.height / 2
                assert abs(cx - x) <= 5 and abs(cy - y) <= 5  # the centre is the sampled point, +-half a pixel
                assert ds.nodata == 0 and ds.compression is not None and ds.profile["tiled"]
                assert list(ds.descriptions) == [b["name"] for b in asset["bands"]]
                assert ds.tags()["SCENE_ID"] == item["properties"]["seco:scene_id"]
                bounds.add(tuple(ds.bounds))
                got = ds.read()
            # lossless: the pixels the source delivered, bit for bit
            g = PatchGrid(epsg, int(t.c), int(t.f), 2640)
            k = int(item["properties"]["seco:scene_id"].rsplit("_", 1)[1])
            scene = SceneRef(item["properties"]["seco:scene_id"], None, 0.0, extra={"k": k})
            want = src.read(scene, g, {res: tuple(b["name"] for b in asset["bands"])}).pixels[res]
            np.testing.assert_array_equal(got, want)
        assert len(bounds) == 1  # the resolution groups cover the same extent


@pytest.mark.parametrize("compress", ["zstd", "deflate", "lzw", "none"])
def test_encode_codecs_round_trip(compress):
    g = PatchGrid.around(-93.5, 42.0)
    px = np.random.default_rng(0).integers(0, 65535, (3, 44, 44), dtype=np.uint16)
    e = encode(px, g, 60, ("B01", "B09", "B10"), compress=compress)
    with rasterio.MemoryFile(e.data) as m, m.open() as ds:
        np.testing.assert_array_equal(ds.read(), px)
        assert ds.crs.to_epsg() == g.epsg
    with pytest.raises(ValueError, match="uint16"):
        encode(px.astype(np.int32), g, 60, ("B01", "B09", "B10"))
    with pytest.raises(ValueError, match="do not match"):
        encode(px, g, 20, ("B01", "B09", "B10"))
