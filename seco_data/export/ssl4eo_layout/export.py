"""Export a catalog to the SSL4EO-S12 folder layout, read unchanged by torchgeo's ``SSL4EOS12``::

    OUT/<split>/<i:07d>/<YYYYMMDDTHHMMSS>_<scene>/<band>.tif   one single-band uint16 GeoTIFF per band
    OUT/<split>/<i:07d>/<YYYYMMDDTHHMMSS>_<scene>/metadata.json
    .OUT.seco/index.csv, .OUT.seco/ssl4eo_layout.json          (beside OUT) as for the SeCo layout

``split`` is ``s2c`` (Level-1C: the 13 bands, B10 included) or ``s2a`` (Level-2A: 12 bands, no B10),
chosen from the bands the catalog holds; torchgeo opens every band of its split, so every one must be
there. ``i`` runs 0..N-1 in catalog order (torchgeo opens ``f'{index:07}'``); a scene folder starts
with the acquisition time (torchgeo's ``filename_regex`` ``^(?P<date>\\d{8}T\\d{6})``). Files keep
the catalog's native sizes (10/20/60 m: 264/132/44 px for SeCo-size patches) and DN (the SSL4EO-S12
release stores uint16 DN too); torchgeo resamples each band to 264 x 264 as it reads. torchgeo's
``SSL4EOS12.__len__`` is the release's 251,079: use :class:`seco_train.torchgeo.SSL4EOS12Export`
(its length is the number of exported locations), or index within ``len(index.csv)``.

Writes like the SeCo layout (:mod:`..seco_layout`): a location is written into
``.<OUT name>.seco/partial/`` and renamed into place; a rerun with the same settings resumes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ... import __version__, jobs
from ...bands import BANDS
from ...catalog.index import CatalogIndex, Location, Patch
from ...errors import CatalogError, UsageError
from ...outputs import claim_output, lock, replace_folder, sha256_file, write_json, write_many
from ...storage import is_url
from ..seco_layout.export import _settings, export_locations
from ..seco_layout.files import _band, _tif, count_files, meta_dir, partial_dir, scene_metadata, seco_band_name

log = logging.getLogger(__name__)

#: torchgeo's splits and the bands each opens (SSL4EOS12.metadata, canonical names)
SPLITS = {"s2c": BANDS, "s2a": tuple(b for b in BANDS if b != "B10")}
COMPRESSIONS = ("deflate", "zstd", "lzw", "none")
LAYOUT_FILE = "ssl4eo_layout.json"
INDEX_FILE = "index.csv"
LAYOUT_VERSION = 1


@dataclass(frozen=True)
class Ssl4eoLayoutReport:
    out: Path
    split: str
    locations: int
    scenes: int
    files: int
    bytes: int
    seconds: float
    skipped: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {**asdict(self), "out": str(self.out)}


def season_folder(patch: Patch) -> str:
    """``<YYYYMMDDTHHMMSS>_<scene id>`` (filesystem-safe): torchgeo reads the time from the name."""
    t = dt.datetime.fromisoformat(patch.datetime.replace("Z", "+00:00"))
    if t.tzinfo is not None:
        t = t.astimezone(dt.timezone.utc)
    scene = re.sub(r"[^A-Za-z0-9_-]+", "_", patch.scene_id or patch.item_id).strip("_")[:120]
    return f"{t:%Y%m%dT%H%M%S}_{scene}_s{patch.season}"


def _split(held: set[str]) -> str:
    for split in ("s2c", "s2a"):
        if set(SPLITS[split]) <= held:
            return split
    missing = sorted(set(SPLITS["s2a"]) - held)
    raise UsageError(f"the SSL4EO-S12 layout needs every Sentinel-2 band (B10 optional); the catalog lacks "
                     f"{' '.join(seco_band_name(b) for b in missing)}",
                     hint="collect with all 12 or 13 bands, or use --format seco (any bands)")


def export_ssl4eo_layout(catalog, out, *, compress="deflate", workers=1, overwrite=False,
                         progress: jobs.ProgressFn | None = None) -> Ssl4eoLayoutReport:
    """Export ``catalog`` to the SSL4EO-S12 layout in ``out`` (see the module docstring)."""
    jobs.check_workers(workers)
    if is_url(str(out)):
        raise UsageError(f"--out {out}: the SSL4EO-S12 layout is written to a folder only",
                         hint="export to a local or shared folder and copy it to object storage, or use "
                              "--format seco or webdataset, which write to object storage")
    if compress not in COMPRESSIONS:
        raise UsageError(f"unknown compression {compress!r}", hint=f"use one of {', '.join(COMPRESSIONS)}")
    with lock(Path(catalog), shared=True, wait_s=0.0, what="writing to"):
        t0 = time.monotonic()
        index = CatalogIndex(catalog)
        base = _settings(index, 16, None, compress, False)  # uint16 DN, every band held
        split = _split(set(base.bands))
        settings = {"split": split, "bands": [seco_band_name(b) for b in SPLITS[split]], "compress": compress}
        identity = {"format": "ssl4eo", "layout_version": LAYOUT_VERSION, "settings": settings,
                    "catalog": {"path": str(index.root), "collection": index.name,
                                "items_sha256": sha256_file(index.parquet)}}
        out = Path(out).resolve()
        with claim_output(out, kind="ssl4eo-layout", identity=identity, overwrite=overwrite,
                          state_dir=meta_dir(out), ours=lambda name: name in SPLITS):
            partial = partial_dir(out)
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            (out / split).mkdir(exist_ok=True)
            layout = {**identity, "software": {"name": "seco", "version": __version__}}
            write_json(meta_dir(out) / LAYOUT_FILE, {**layout, "complete": False})
            totals, n, skipped = _run(index, out, split, compress, workers, progress)
            counts = {"locations": n, "scenes": totals[0], "files": totals[1], "bytes": totals[2]}
            write_json(meta_dir(out) / LAYOUT_FILE, {**layout, "complete": True, "counts": counts})
            shutil.rmtree(partial, ignore_errors=True)
    report = Ssl4eoLayoutReport(out, split, n, totals[0], totals[1], totals[2], time.monotonic() - t0,
                                {"finished": skipped} if skipped else {})
    log.info("SSL4EO-S12 layout (%s): %d locations, %d scenes, %d files, %d bytes in %.1f s",
             split, n, totals[0], totals[1], totals[2], report.seconds)
    return report


def _run(index, out: Path, split: str, compress: str, workers: int, progress):
    def finished(i, loc):
        folder = out / split / f"{i:07d}"
        return count_files(folder) if folder.is_dir() else None

    return export_locations(index, meta_dir(out) / INDEX_FILE, write_location, workers, progress,
                            finished=finished, key=lambda i: f"{i:07d}",
                            folders=lambda loc: [season_folder(p) for p in loc.patches],
                            task=lambda i, loc: (i, loc, str(out), split, compress))


def write_location(i: int, location: Location, out: str, split: str, compress: str) -> tuple[int, int, int]:
    """Write location ``i`` into a temporary folder and rename it to ``OUT/<split>/<i:07d>``."""
    out_p = Path(out)
    tmp = partial_dir(out_p) / f"{i:07d}.{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for patch in location.patches:
        scene = tmp / season_folder(patch)
        scene.mkdir()
        files: dict[str, bytes] = {}
        cache: dict = {}
        for band in SPLITS[split]:
            pixels, asset = _band(patch, band, cache)
            if pixels.dtype != np.uint16:
                raise CatalogError(f"{asset.path} holds {pixels.dtype} pixels: the SSL4EO-S12 layout stores uint16 DN",
                                   hint="use --format seco --bits 8 for 8-bit catalogs")
            name = seco_band_name(band)
            files[f"{name}.tif"] = _tif(pixels[None], asset.crs, asset.transform, compress, [name])
        files["metadata.json"] = (json.dumps(scene_metadata(patch), ensure_ascii=False) + "\n").encode()
        write_many(scene, files)
    counts = count_files(tmp)
    replace_folder(tmp, out_p / split / f"{i:07d}")
    return counts
