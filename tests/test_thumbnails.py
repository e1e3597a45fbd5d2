"""True-colour quicklooks: the documented stretch (lossless PNG), the catalogs' JPEG strips, `catalog thumbnails`."""

import hashlib
import json
import shutil
import sqlite3
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.io import MemoryFile

from helpers import index_items
from seco_cli.data import main
from seco_data.sample.run import finalize
from seco_data.geotiff import encode_raster
from seco_data.catalog.add_thumbnails import add_thumbnails
from seco_data.catalog.thumbnails import thumbnail, thumbnail_png
from seco_data.catalog.verify import verify_catalog

#: the documented stretch, restated here: reflectance 0 .. 0.3 to 0 .. 255 with gamma 1.3
TOP, GAMMA = 0.3, 1.3


def _stretch(reflectance: np.ndarray) -> np.ndarray:
    """An independent statement of the stretch: a per-value table built with Python floats."""
    out = np.empty(reflectance.shape, np.int64)
    for v in np.unique(reflectance):
        x = min(max(float(v) / TOP, 0.0), 1.0) ** (1 / GAMMA)
        out[reflectance == v] = int(x * 255 + 0.5)
    return out


def _decode(data: bytes) -> np.ndarray:
    """Pixels of a PNG or a JPEG file, checked to be what its first bytes say."""
    driver = "PNG" if data[:8] == b"\x89PNG\r\n\x1a\n" else "JPEG" if data[:3] == b"\xff\xd8\xff" else None
    assert driver, data[:8]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with MemoryFile(data) as mem, mem.open() as ds:
            assert ds.driver == driver and ds.dtypes == ("uint8",) * ds.count
            return ds.read()


def _halved_stretch(reflectance: np.ndarray) -> np.ndarray:
    """The documented picture of a 264 px patch at catalog size: 2 x 2 means (every pixel valid),
    then the stretch (restated vectorised: the means take too many distinct values for _stretch)."""
    c, h, w = reflectance.shape
    m = reflectance.reshape(c, h // 2, 2, w // 2, 2).mean(axis=(2, 4))
    return np.floor(np.clip(m / TOP, 0, 1) ** (1 / GAMMA) * 255 + 0.5)


def _assert_jpeg_close(got: np.ndarray, want: np.ndarray) -> None:
    """A JPEG (quality 90) of ``want``: small mean error, no gross one (the simulator's pixel noise is
    what JPEG loses most; a wrong band, season or orientation is off by tens of levels)."""
    diff = np.abs(got.astype(np.float64) - want)
    assert diff.mean() < 6 and np.percentile(diff, 99) < 30, (diff.mean(), np.percentile(diff, 99))


def _assert_close(got: np.ndarray, want: np.ndarray) -> None:
    """Equal, allowing one level where pow() of two math libraries may round a .5 differently."""
    diff = np.abs(got.astype(np.int64) - want)
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999, (diff.max(), (diff == 0).mean())


def _geotiff(pixels: np.ndarray, bands, nodata=0, res=10) -> bytes:
    return encode_raster(pixels, rasterio.CRS.from_epsg(32631), rasterio.Affine(res, 0, 400000, 0, -res, 5000000), res,
                         tuple(bands), nodata=nodata).data


# -- the picture ------------------------------------------------------------------------------------


def test_png_is_the_documented_stretch_of_b04_b03_b02():
    rng = np.random.default_rng(0)
    px = rng.integers(1, 4500, (4, 264, 264), dtype=np.uint16)  # B02 B03 B04 B08, up to 0.45 reflectance
    px[:, :10, :20] = 0  # a no-data corner
    px[0, 50, 50] = 0  # one band at 0 alone is data, not no-data
    png = thumbnail_png(_geotiff(px, ("B02", "B03", "B04", "B08")), scale=1e-4)
    img = _decode(png)
    assert img.shape == (3, 264, 264)  # native size, RGB
    want = _stretch(px[[2, 1, 0]].astype(np.float64) * 1e-4)  # R, G, B = B04, B03, B02
    want[:, :10, :20] = 0  # no-data is black
    _assert_close(img, want)
    assert img[:, 50, 50].tolist()[:2] == want[:2, 50, 50].tolist() and img[2, 50, 50] == 0
    assert img[:, :10, :20].max() == 0 and (img[:, 10:, 20:] == 0).sum() == 1  # B02 at (50, 50)
    assert thumbnail_png(_geotiff(px, ("B02", "B03", "B04", "B08")), scale=1e-4) == png  # same bytes


def test_8bit_grey_fallback_and_orientation(tmp_path):
    rng = np.random.default_rng(1)
    dn8 = rng.integers(0, 256, (3, 264, 264), dtype=np.uint8)
    # 8-bit data (imported SeCo): reflectance = DN / 255, no nodata value: zeros stay data (and black)
    img = _decode(thumbnail_png(_geotiff(dn8, ("B02", "B03", "B04"), nodata=None), scale=1 / 255))
    _assert_close(img, _stretch(dn8[[2, 1, 0]].astype(np.float64) * (1 / 255)))
    # no B02/B03/B04 in the asset: grey of its first band
    dn = rng.integers(1, 5000, (2, 264, 264), dtype=np.uint16)
    grey = _decode(thumbnail_png(_geotiff(dn, ("B08", "B11")), scale=1e-4))
    assert grey.shape == (3, 264, 264) and (grey[0] == grey[1]).all() and (grey[1] == grey[2]).all()
    _assert_close(grey[0], _stretch(dn[0] * 1e-4))
    # a south-up file is drawn north up
    path = tmp_path / "south_up.tif"
    with rasterio.open(path, "w", driver="GTiff", width=264, height=264, count=3, dtype="uint16", nodata=0,
                       crs="EPSG:32631", transform=rasterio.Affine(10, 0, 400000, 0, 10, 4997360)) as dst:
        dst.write(dn8.astype(np.uint16)[::-1, ::-1] * 10)  # rows upside down; bands as B04 B03 B02
        dst.descriptions = ("B04", "B03", "B02")
    flipped = _decode(thumbnail_png(path, scale=1e-4))
    _assert_close(flipped, _stretch(dn8[::-1].astype(np.float64) * 10e-4))


def test_large_patch_is_area_averaged_by_an_integer_factor():
    rng = np.random.default_rng(2)
    px = rng.integers(1, 3000, (3, 601, 640), dtype=np.uint16)
    px[:, :4, :4] = 0  # 2 x 2 blocks of no-data only, and a block with one no-data pixel
    px[:, 10, 10] = 0
    img = _decode(thumbnail_png(_geotiff(px, ("B02", "B03", "B04")), scale=1e-4))
    assert img.shape == (3, 300, 320)  # 640 > 320: halved (the last, odd row dropped)
    r = px[[2, 1, 0], :600].astype(np.float64) * 1e-4
    valid = (px[:, :600] != 0).any(axis=0)
    s = (r * valid).reshape(3, 300, 2, 320, 2).sum(axis=(2, 4))
    n = valid.reshape(300, 2, 320, 2).sum(axis=(1, 3))
    want = _stretch(s / np.maximum(n, 1))
    want[:, n == 0] = 0
    _assert_close(img, want)
    assert img[:, :2, :2].max() == 0 and n[5, 5] == 3 and img[:, 5, 5].min() > 0


def test_unreadable_geotiff_is_a_catalog_error_naming_it(tmp_path):
    from seco_data.errors import CatalogError

    bad = tmp_path / "bad_10m.tif"
    data = _geotiff(np.ones((3, 64, 64), np.uint16), ("B02", "B03", "B04"))
    bad.write_bytes(data[:200])
    with pytest.raises(CatalogError, match="bad_10m.tif"):
        thumbnail_png(bad, scale=1e-4)


# -- at collection time -----------------------------------------------------------------------------


def _season_rgb(tif: Path, season: int) -> np.ndarray:
    """Reflectance of B04, B03, B02 of one season of a compact GeoTIFF (bands described s<season>:<band>)."""
    with rasterio.open(tif) as ds:
        names = list(ds.descriptions)
        return ds.read([names.index(f"s{season}:{b}") + 1 for b in ("B04", "B03", "B02")]).astype(np.float64)


def test_sampled_items_carry_their_thumbnail(demo_catalog):
    items = index_items(demo_catalog)
    assert len(items) == 5
    for item in items:
        a = item["assets"]["thumbnail"]
        assert a["href"] == f"./0000/{item['id']}_thumb.jpg" and a["type"] == "image/jpeg" and a["roles"] == ["thumbnail"]
        data = (demo_catalog / a["href"]).read_bytes()
        assert len(data) == a["file:size"] and a["file:checksum"] == "1220" + hashlib.sha256(data).hexdigest()
        picture = _decode(data)
        assert picture.shape == (3, 132, 4 * 132)  # the four seasons side by side, at half resolution
        tif = demo_catalog / item["assets"]["data_10m"]["href"]
        assert thumbnail(tif, scale=1e-4) == data  # drawn from the location's own 10 m GeoTIFF, reproducibly
        for k, season in enumerate(sorted(s["season"] for s in item["properties"]["seco:seasons"])):
            _assert_jpeg_close(picture[:, :, 132 * k:132 * (k + 1)], _halved_stretch(_season_rgb(tif, season) * 1e-4))
    report = verify_catalog(demo_catalog)
    assert report.ok and report.checked == 5 * 4  # three GeoTIFFs and the quicklook per location


# -- `catalog thumbnails` ---------------------------------------------------------------------------


def _strip(root: Path) -> None:
    """Make ``root`` look like a catalog sampled with ``thumbnails: false``: no quicklook, none recorded."""
    for p in root.rglob("*_thumb.jpg"):
        p.unlink()
    db = sqlite3.connect(root / "ledger.sqlite")
    with db:
        for idx, files in db.execute("SELECT idx, files FROM candidates WHERE files IS NOT NULL").fetchall():
            kept = [f for f in json.loads(files) if f.get("role") != "thumbnail"]
            db.execute("UPDATE candidates SET files = ?, version = version + 1 WHERE idx = ?", (json.dumps(kept), idx))
    db.close()
    finalize(root)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix in (".json", ".jpg", ".tif") and ".seco" not in p.parts}


@pytest.fixture()
def stripped(demo_catalog, tmp_path):
    out = tmp_path / "demo"
    shutil.copytree(demo_catalog, out)
    _strip(out)
    assert not list(out.rglob("*.jpg"))
    assert all("thumbnail" not in i["assets"] for i in index_items(out))
    return out


def test_cli_restores_thumbnails_idempotently(demo_catalog, stripped, schemas):
    from seco_data.catalog.validate import validate_catalog

    want = _files(demo_catalog)
    r = CliRunner().invoke(main, ["catalog", "thumbnails", str(stripped)])
    assert r.exit_code == 0, r.output
    assert "written 5, already present 0, failed 0" in r.output
    assert _files(stripped) == want  # the same quicklooks and collection, byte for byte, as a fresh sample
    assert pq.read_table(stripped / "items.parquet").equals(pq.read_table(demo_catalog / "items.parquet"))
    assert verify_catalog(stripped).ok and validate_catalog(stripped, schemas)[1] == []
    # the ledger carries them too: `catalog rebuild` keeps the assets in the index
    assert CliRunner().invoke(main, ["catalog", "rebuild", str(stripped)]).exit_code == 0
    assert pq.read_table(stripped / "items.parquet").equals(pq.read_table(demo_catalog / "items.parquet"))
    # idempotent
    r = CliRunner().invoke(main, ["catalog", "thumbnails", str(stripped), "--workers", "1"])
    assert r.exit_code == 0 and "written 0, already present 5, failed 0" in r.output, r.output
    assert _files(stripped) == want
    r = CliRunner().invoke(main, ["catalog", "thumbnails", str(stripped), "--overwrite", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output[r.output.index("{"):])
    assert (d["items"], d["written"], d["present"], d["failed"]) == (5, 5, 0, {})
    assert _files(stripped) == want


def test_interrupted_run_finishes_on_rerun(demo_catalog, stripped):
    want = _files(demo_catalog)
    # what an interruption leaves: some quicklooks written, not yet recorded, and a partial temp file
    for p in sorted(demo_catalog.glob("0000/*_thumb.jpg"))[:2]:
        shutil.copy(p, stripped / "0000" / p.name)
    (stripped / "0000" / ".demo-0000004_thumb.jpg.tmp99").write_bytes(b"partial")
    r = add_thumbnails(stripped, workers=2)
    assert (r.items, r.written, r.present, r.ok) == (5, 3, 2, True)
    assert _files(stripped) == want
    assert pq.read_table(stripped / "items.parquet").equals(pq.read_table(demo_catalog / "items.parquet"))


def test_cli_reports_a_corrupt_geotiff(stripped):
    item = index_items(stripped)[3]
    tif = (stripped / item["assets"]["data_10m"]["href"]).resolve()
    data = tif.read_bytes()
    tif.write_bytes(data[:1000] + bytes(len(data) - 3000) + data[-2000:])  # tiles zeroed: header and IFD intact
    r = CliRunner().invoke(main, ["catalog", "thumbnails", str(stripped)])
    assert r.exit_code == 4, r.output
    assert "Traceback" not in r.output and "written 4, already present 0, failed 1 (unreadable_geotiff 1)" in r.output
    assert f"FAIL unreadable_geotiff: cannot read {tif}" in r.output and "1 of 5 thumbnails failed" in r.output
    assert sum("thumbnail" in i["assets"] for i in index_items(stripped)) == 4  # the others are indexed
    tif.unlink()
    r = CliRunner().invoke(main, ["catalog", "thumbnails", str(stripped)])
    assert r.exit_code == 4 and f"FAIL missing_geotiff: {tif}: missing" in r.output, r.output
    assert "written 0, already present 4, failed 1 (missing_geotiff 1)" in r.output


def test_cli_refuses_a_folder_that_is_no_catalog(tmp_path):
    r = CliRunner().invoke(main, ["catalog", "thumbnails", str(tmp_path)])
    assert r.exit_code == 4 and "is not a seco catalog" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("layout", ["compact", "per-patch"])
def test_imported_8bit_catalog_gets_thumbnails(tmp_path, schemas, layout):
    from released_layouts import make_seco_layout
    from seco_data.importers.run import import_dataset
    from seco_data.catalog.index import CatalogIndex
    from seco_data.catalog.validate import validate_catalog

    src = make_seco_layout(tmp_path / "src", 2, seed=4)
    out = tmp_path / "imported"
    import_dataset("seco", src, out, layout=layout, thumbnails=False)
    before = pq.read_table(out / "items.parquet")
    coll = json.loads((out / "collection.json").read_text())
    r = add_thumbnails(out)
    n = 2 if layout == "compact" else 10
    assert (r.items, r.written, r.ok) == (n, n, True)
    after = pq.read_table(out / "items.parquet")
    assert after.drop_columns(["assets"]).equals(before.drop_columns(["assets"]))
    for old, new in zip(before.column("assets").to_pylist(), after.column("assets").to_pylist()):
        assert {k: v for k, v in new.items() if k != "thumbnail" and v is not None} == \
            {k: v for k, v in old.items() if v is not None}
        assert new["thumbnail"]["href"].endswith("_thumb.jpg")
    new_coll = json.loads((out / "collection.json").read_text())
    assert {k: v for k, v in new_coll.items() if k != "seco:software"} == \
        {k: v for k, v in coll.items() if k != "seco:software"}
    assert verify_catalog(out).ok and validate_catalog(out, schemas)[1] == []
    assert CatalogIndex(out).n_items == n
    # the picture is the stretch of the 8-bit DN / 255
    item = index_items(out)[0]
    picture = _decode((out / item["assets"]["thumbnail"]["href"]).read_bytes())
    with rasterio.open(out / item["assets"]["data_10m"]["href"]) as ds:
        names = [d.split(":")[-1] for d in ds.descriptions[:ds.count // (5 if layout == "compact" else 1)]]
        px = ds.read([names.index(b) + 1 for b in ("B04", "B03", "B02")]).astype(np.float64)
    _assert_jpeg_close(picture[:, :, :132], _halved_stretch(px / 255))


# -- real data --------------------------------------------------------------------------------------


def test_real_oscd_city_thumbnail_has_texture_and_is_north_up(shared, tmp_path):
    """Paris (OSCD), sampled through a local STAC catalog: the thumbnail matches the city's preview."""
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    from seco_data.sample.run import sample
    from seco_data.sources.local_catalog import make_local_catalog
    from seco_data.recipe import load_recipe
    from seco_data.sample.select import RetryPolicy

    images = (shared / "data" / "oscd" / "Onera Satellite Change Detection dataset - Images").resolve()
    (tmp_path / "scenes").mkdir()
    (tmp_path / "scenes" / "paris").symlink_to(images / "paris", target_is_directory=True)
    cat = make_local_catalog(tmp_path / "scenes", tmp_path / "stac", name="oscd")
    scene = json.loads(next((tmp_path / "stac").glob("*/paris_imgs_1.json")).read_text())
    w, s, e, n = scene["bbox"]
    (tmp_path / "points.csv").write_text(f"lon,lat,id\n{(w + e) / 2},{(s + n) / 2},paris\n")
    recipe = load_recipe("demo", {
        "source": "stac", "product": "L1C", "n": 1, "bands": ["B02", "B03", "B04", "B08"],
        "seasons.anchors": ["2016-11-30"], "seasons.window_days": 30, "seasons.shift_days": 0,
        "locations.sampler": "points", "locations.path": str(tmp_path / "points.csv"), "locations.land_only": False,
        "filters.scene_cloud_max": 100, "filters.patch_cloud_max": 1.0, "filters.coverage_min": 0.95,
        "source_options": {"url": str(cat)},
    })
    out = tmp_path / "out"
    assert sample(recipe, out, retry=RetryPolicy(base_s=0.01)).patches == 1
    item, = index_items(out)
    thumb = _decode((out / item["assets"]["thumbnail"]["href"]).read_bytes())
    assert thumb.shape == (3, 132, 132) and min(thumb[c].std() for c in range(3)) > 5  # real texture
    # the city's own preview (same grid as its GeoTIFFs), warped onto the patch: same picture, same way up
    with rasterio.open(next((images / "paris" / "imgs_1").glob("*_B04.tif"))) as b04:
        src_transform, src_crs = b04.transform, b04.crs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(images / "paris" / "pair" / "img1.png") as ds:
            preview = ds.read().astype(np.float32)
    with rasterio.open(out / item["assets"]["data_10m"]["href"]) as ds:
        dst_transform, dst_crs = ds.transform, ds.crs
    warped = np.zeros((3, 264, 264), np.float32)
    reproject(preview, warped, src_transform=src_transform, src_crs=src_crs, dst_transform=dst_transform,
              dst_crs=dst_crs, resampling=Resampling.bilinear)
    grey, ref = thumb.astype(np.float64).mean(axis=0), warped.mean(axis=0).reshape(132, 2, 132, 2).mean(axis=(1, 3))

    def corr(a):
        return np.corrcoef(a.ravel(), ref.ravel())[0, 1]

    assert corr(grey) > 0.9, corr(grey)
    assert max(corr(grey[::-1]), corr(grey[:, ::-1]), corr(grey.T)) < 0.3


def test_index_of_items_with_and_without_thumbnails_streams_in_chunks(demo_catalog, tmp_path):
    """A catalog sampled before thumbnails and resumed after (or with failed thumbnails) mixes both."""
    from seco_data.catalog.index import CatalogIndex
    from seco_data.catalog.index import write_index as write_parquet

    items = index_items(demo_catalog)  # as stored: hrefs relative to the root
    for k, item in enumerate(items):
        if k < 1 or k >= 3:  # in chunks of 2: a mixed chunk, a chunk with, one without
            del item["assets"]["thumbnail"]
    out = tmp_path / "demo"
    shutil.copytree(demo_catalog, out)
    assert write_parquet(iter(items), out / "items.parquet", chunk=2) == 5
    index = CatalogIndex(out)
    has = [any(a.key == "thumbnail" for a in loc.patches[0].assets) for loc in index.locations()]
    assert has == ["thumbnail" in i["assets"] for i in items] == [False, True, True, False, False]
    assert [i["assets"] for i in index_items(out)] == [i["assets"] for i in items]
    assert verify_catalog(out).checked == 5 * 3 + 2
