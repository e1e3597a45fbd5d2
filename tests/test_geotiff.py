import numpy as np
import pytest
import rasterio

from fakes import ScriptedSource
from seco_data.catalog.index import CatalogIndex
from seco_data.sample.run import sample
from seco_data.geotiff import encode
from seco_data.grid import PatchGrid, to_utm, utm_epsg
from seco_data.recipe import load_recipe
from seco_data.sources.base import SceneRef


@pytest.mark.parametrize("layout", ["compact", "per-patch"])
def test_written_patches_are_exact_utm_grids_and_lossless(tmp_path, scripted, layout):
    out = tmp_path / "o"
    sample(load_recipe("demo", {"source": scripted, "n": 6, "layout": layout}), out)
    src = ScriptedSource()
    patches = list(CatalogIndex(out).patches())
    assert len(patches) == 24 and len({p.location for p in patches}) == 6
    files = set()
    for p in patches:
        lon, lat = p.point
        epsg = utm_epsg(lon, lat)
        x, y = to_utm(epsg, lon, lat)
        bounds = set()
        assert [a.resolution for a in p.data] == [10, 20, 60]
        for asset in p.data:
            res = asset.resolution
            files.add(asset.path)
            with rasterio.open(asset.path) as ds:
                assert ds.crs.to_epsg() == epsg and ds.dtypes == ("uint16",) * ds.count
                t = ds.transform
                assert (t.a, t.b, t.d, t.e) == (res, 0, 0, -res)
                assert t.c % 10 == 0 and t.f % 10 == 0  # 10 m lattice
                assert (ds.height, ds.width) == {10: (264, 264), 20: (132, 132), 60: (44, 44)}[res]
                assert tuple(t)[:6] == asset.transform and (ds.height, ds.width) == asset.shape
                cx, cy = t.c + t.a * ds.width / 2, t.f + t.e * ds.height / 2
                assert abs(cx - x) <= 5 and abs(cy - y) <= 5  # the centre is the sampled point, +-half a pixel
                assert ds.nodata == 0 and ds.compression is not None and ds.profile["tiled"]
                described = [ds.descriptions[i - 1] for i in asset.band_indexes()]
                if layout == "compact":  # every season's bands in one file, season-major
                    assert ds.count == 4 * len(asset.bands)
                    assert described == [f"s{p.season}:{b}" for b in asset.bands]
                    assert f"s{p.season}={p.scene_id}@" in ds.tags()["SCENES"]
                else:
                    assert described == list(asset.bands) and ds.tags()["SCENE_ID"] == p.scene_id
                bounds.add(tuple(ds.bounds))
            got = asset.read()
            # lossless: the pixels the source delivered, bit for bit
            g = PatchGrid(epsg, int(t.c), int(t.f), 2640)
            scene = SceneRef(p.scene_id, None, 0.0, extra={"k": int(p.scene_id.rsplit("_", 1)[1])})
            want = src.read(scene, g, {res: asset.bands}).pixels[res]
            np.testing.assert_array_equal(got, want)
        assert len(bounds) == 1  # the resolution groups cover the same extent
    assert len(files) == 6 * 3 * (1 if layout == "compact" else 4)


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
