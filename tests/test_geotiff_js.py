"""geotiff.js 2.x (what OpenLayers 10 and STAC Browser 4 bundle) reads our GeoTIFFs in headless
Chromium, from `seco-data catalog serve` on another origin (CORS, range requests), pixel for pixel as
rasterio reads them; a zstd file is what it cannot read (why deflate is the default).

geotiff.js comes from npm: tests/js/package.json + package-lock.json, installed once per lock with
`npm ci` into $SECO_CACHE_DIR/npm-<lock digest>/ (`make test` installs node and npm with apt when
missing, as it does Chromium).
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from seco_data.geotiff import encode_raster
from seco_data.serve.server import start_server
from test_viewer import driver  # noqa: F401 - the shared headless Chromium (selenium) fixture

JS = Path(__file__).parent / "js"

PAGE = """<!doctype html><meta charset=utf-8><script src="geotiff.js"></script>
<script>
window.readTiff = async (url) => {
  try {
    const tiff = await GeoTIFF.fromUrl(url, {allowFullFile: false});
    const image = await tiff.getImage();
    const bands = await image.readRasters();
    return {width: image.getWidth(), height: image.getHeight(), bits: image.getBitsPerSample(),
            bands: Array.from(bands, b => Array.from(b))};
  } catch (e) {
    return {error: String(e && e.message || e)};
  }
};
</script>"""


@pytest.fixture(scope="module")
def geotiff_js() -> Path:
    """geotiff.js 2.x's browser bundle, installed from npm with the lock in tests/js."""
    npm = shutil.which("npm")
    if not npm:
        pytest.fail("the geotiff.js test needs node and npm: run `make browser`", pytrace=False)
    lock = (JS / "package-lock.json").read_bytes()
    cache = Path(os.environ.get("SECO_CACHE_DIR") or Path.home() / ".cache" / "seco")
    where = cache / f"npm-{hashlib.sha256(lock).hexdigest()[:16]}"
    bundle = where / "node_modules" / "geotiff" / "dist-browser" / "geotiff.js"
    if not bundle.is_file():
        where.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(JS / name, where / name)
        r = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                           cwd=where, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0 and bundle.is_file(), r.stderr[-2000:]
    return bundle


@pytest.fixture(scope="module")
def page(geotiff_js, tmp_path_factory):
    """The test page and geotiff.js, served by a plain static server (another origin than the catalog's)."""
    root = tmp_path_factory.mktemp("geotiff-js")
    shutil.copy(geotiff_js, root / "geotiff.js")
    (root / "index.html").write_text(PAGE)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/index.html", root
    server.shutdown()
    server.server_close()


def read_in_browser(driver, page_url: str, tif_url: str) -> dict:
    # (on a loaded machine the test page may come back as the browser's error page, once: loaded again)
    for _ in range(3):
        driver.get(page_url)
        if driver.execute_script("return typeof window.readTiff === 'function'"):
            break
    else:
        pytest.fail(f"the test page did not load: {driver.title!r} {driver.page_source[:300]!r}")
    driver.set_script_timeout(60)
    return driver.execute_async_script("window.readTiff(arguments[0]).then(arguments[1]);", tif_url)


def test_geotiff_js_reads_served_patches_as_rasterio_does(driver, page, demo_catalog, tmp_path):
    page_url, _ = page
    root = tmp_path / "demo"
    shutil.copytree(demo_catalog, root)
    tif = sorted(root.glob("0000/*_20m.tif"))[0]  # a multi-band (every season's bands) default file
    with rasterio.open(tif) as src:
        want = src.read()
        assert src.compression.name.lower() == "deflate"  # the default codec
    # each codec on the same pixels, served beside it (the allow-list serves .tif under a part folder)
    pixels = want[:2]
    for codec in ("deflate", "lzw", "zstd"):
        e = encode_raster(pixels, "EPSG:32633", Affine(20.0, 0.0, 5e5, 0.0, -20.0, 5e6), 20, ("a", "b"),
                          compress=codec)
        (root / "0000" / f"codec-{codec}.tif").write_bytes(e.data)
    server, url = start_server(root)
    try:
        got = read_in_browser(driver, page_url, f"{url}/{tif.relative_to(root).as_posix()}")
        assert "error" not in got, got
        assert (got["width"], got["height"], len(got["bands"])) == (want.shape[2], want.shape[1], want.shape[0])
        assert np.array_equal(np.array(got["bands"], dtype=np.uint16).reshape(want.shape), want)
        for codec in ("deflate", "lzw", "zstd"):  # predictor 2 everywhere
            got = read_in_browser(driver, page_url, f"{url}/0000/codec-{codec}.tif")
            if codec == "zstd":
                assert got == {"error": "Unknown compression method identifier: 50000"}
            else:
                assert "error" not in got, (codec, got)
                assert np.array_equal(np.array(got["bands"], dtype=np.uint16).reshape(pixels.shape), pixels), codec
    finally:
        server.shutdown()
        server.server_close()
