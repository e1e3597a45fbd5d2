"""GeoTIFF codecs for the catalog's patches (issue 17): write speed, size, read speed and which
readers open each, measured side by side in one run on real Sentinel-2 pixels.

Patches: 264 x 264 crops of the four 10 m bands (B02 B03 B04 B08, uint16 L1C) of the OSCD scenes in
``../shared/data/oscd`` (real imagery: the simulator's pixels compress differently), encoded exactly as
``seco-data sample`` does (:func:`seco_data.geotiff.encode_raster`: tiled, band-interleaved, predictor
2, the codec's level 1), then decoded with rasterio (GDAL) and compared pixel for pixel.

Reader support is taken from the readers themselves: GDAL from ``rasterio``'s driver build
(``GDAL_VERSION``) decoding each file here; geotiff.js 2.x from the decoders it registers
(``src/compression/index.js`` of geotiff 2.1.3, the last 2.x, bundled by OpenLayers 10 and STAC
Browser 4: 1, 5 LZW, 6/7 JPEG, 8/32946 deflate, 32773 packbits, 34887 LERC, 50001 WebP; no 50000
zstd, hence "Unknown compression method identifier: 50000"), and checked in headless Chromium by
tests/test_geotiff_js.py where that test runs. torchgeo reads through rasterio (GDAL).

Usage: python bench/bench_geotiff.py [--patches 48] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import time
from pathlib import Path

import numpy as np

GEOTIFF_JS_2 = {1, 5, 6, 7, 8, 32946, 32773, 34887, 50001}  # geotiff 2.1.3 addDecoder() codes
TIFF_CODE = {"none": 1, "lzw": 5, "deflate": 8, "zstd": 50000}


def patches(shared: Path, n: int, size: int = 264) -> list[np.ndarray]:
    import rasterio

    out = []
    scenes = sorted(glob.glob(str(shared / "data/oscd/*Images/*/imgs_1")))
    for scene in scenes:
        bands = []
        for b in ("B02", "B03", "B04", "B08"):
            (path,) = glob.glob(f"{scene}/*_{b}.tif")
            with rasterio.open(path) as src:
                bands.append(src.read(1))
        stack = np.stack(bands).astype(np.uint16)
        h, w = stack.shape[1:]
        for y in range(0, h - size + 1, size):
            for x in range(0, w - size + 1, size):
                out.append(np.ascontiguousarray(stack[:, y:y + size, x:x + size]))
                if len(out) >= n:
                    return out
    if not out:
        raise SystemExit(f"no OSCD scenes under {shared / 'data/oscd'}: pass --shared")
    return out


def measure(codec: str, crops: list[np.ndarray]) -> dict:
    import rasterio
    from rasterio.io import MemoryFile
    from rasterio.transform import from_origin

    from seco_data.geotiff import encode_raster

    transform = from_origin(600000, 5000000, 10, 10)
    t0 = time.perf_counter()
    encoded = [encode_raster(c, "EPSG:32632", transform, 10, ("B02", "B03", "B04", "B08"), compress=codec)
               for c in crops]
    t_write = time.perf_counter() - t0
    t0 = time.perf_counter()
    same = True
    for c, e in zip(crops, encoded):
        with MemoryFile(e.data) as mem, mem.open() as src:
            same &= bool(np.array_equal(src.read(), c))
    t_read = time.perf_counter() - t0
    raw = sum(c.nbytes for c in crops)
    size = sum(e.size for e in encoded)
    return {"codec": codec, "write_ms": 1e3 * t_write / len(crops), "read_ms": 1e3 * t_read / len(crops),
            "kB": size / len(crops) / 1e3, "ratio": raw / size, "lossless": same,
            "gdal": same, "geotiff_js_2": TIFF_CODE[codec] in GEOTIFF_JS_2,
            "gdal_version": rasterio.__gdal_version__}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patches", type=int, default=48)
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("SECO_SHARED", "../shared")))
    args = ap.parse_args()
    crops = patches(args.shared, args.patches)
    codecs = ("zstd", "deflate", "lzw", "none")
    for codec in codecs:  # warm-up: imports, GDAL driver load
        measure(codec, crops[:2])
    rows = [measure(codec, crops) for codec in codecs]
    print(f"{len(crops)} patches of 4 x 264 x 264 uint16 (OSCD L1C, B02 B03 B04 B08), "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, GDAL {rows[0]['gdal_version']}")
    print(f"{'codec':8} {'write ms':>9} {'read ms':>8} {'kB/patch':>9} {'ratio':>6}  GDAL/rasterio/torchgeo  geotiff.js 2.x")
    for r in rows:
        print(f"{r['codec']:8} {r['write_ms']:9.2f} {r['read_ms']:8.2f} {r['kB']:9.1f} {r['ratio']:6.2f}  "
              f"{'yes' if r['gdal'] else 'NO':23}  {'yes' if r['geotiff_js_2'] else 'NO (50000 unknown)'}")


if __name__ == "__main__":
    main()
