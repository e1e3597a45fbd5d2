"""A static STAC catalog over a folder of Sentinel-2 scene GeoTIFFs, for the ``stac`` source.

No pixel is copied: every item's assets point at the existing GeoTIFFs. The ``stac`` source then
samples from the folder like from any catalog (``--source stac --set source_options.url=...``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
from pathlib import Path

from ..bands import BANDS
from ..catalog.layout import CATALOG
from ..errors import CatalogError, UsageError
from ..outputs import write_atomic

log = logging.getLogger(__name__)

STAC_VERSION = "1.0.0"
EXTENSIONS = ["https://stac-extensions.github.io/eo/v1.1.0/schema.json",
              "https://stac-extensions.github.io/projection/v2.0.0/schema.json"]
_BAND_FILE = re.compile(r"^(?P<prefix>.*?)(?:^|[_\-.])?(?P<band>B(?:0?[1-9]|1[0-2]|8A))\.tiff?$", re.IGNORECASE)
_DATE = re.compile(r"(?<!\d)(20\d\d)(\d\d)(\d\d)(?:T(\d\d)(\d\d)(\d\d))?(?!\d)")
_DATES_LINE = re.compile(r"^\s*date_?(\d+)\s*[:=]\s*(\d{8})\s*$", re.IGNORECASE)


def make_local_catalog(root: str | Path, out: str | Path | None = None, *, name: str | None = None) -> Path:
    """Write a static STAC catalog over the scene GeoTIFFs under ``root``; return its ``catalog.json``.

    A scene is a folder (or a group of files sharing a name prefix) of single-band GeoTIFFs named
    after their band (``T31UDQ_20171107T105229_B02.tif``, ``..._B8A.tif``, ``B02.tif``), or one
    multi-band GeoTIFF whose band descriptions are band names. Each scene's datetime comes from a
    ``dates.txt`` in the parent folder (OSCD: ``date_1: 20161130`` for ``imgs_1``), else from a date
    (``YYYYMMDD[THHMMSS]``) in the folder or file name; a scene with neither raises
    :class:`CatalogError` naming the folder.

    Items (``<out>/<item id>/<item id>.json``) carry bbox/geometry from the rasters, ``proj:code``
    and per-asset ``proj:shape`` / ``proj:transform``, one asset per band with ``eo:bands`` (name and
    common name) and ``eo:cloud_cover`` 0 (unknown). Asset hrefs are relative when the GeoTIFFs lie
    under ``out``, absolute otherwise (e.g. a catalog written beside a read-only data folder).

    ``out`` defaults to ``root`` itself; ``name`` (the catalog id) to the folder's name. Rerunning
    rewrites the catalog. Read-only ``root`` folders are never written to when ``out`` is elsewhere.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UsageError(f"{root} is not a folder of GeoTIFFs", hint="pass the folder that holds the scenes")
    out = Path(out).expanduser() if out is not None else root
    scenes = _find_scenes(root)
    if not scenes:
        raise CatalogError(f"no Sentinel-2 band GeoTIFFs (*_B02.tif ...) under {root}",
                           hint="name single-band files after their band, or give multi-band files band descriptions")
    out.mkdir(parents=True, exist_ok=True)
    cat_id = name or root.resolve().name or "local"
    links = [{"rel": "root", "href": f"./{CATALOG}", "type": "application/json"}]
    ids: set[str] = set()
    for key, files in sorted(scenes.items()):
        shared = sum(k[0] == key[0] for k in scenes) > 1
        item = _item(root, key, files, out, shared)
        if item["id"] in ids:
            raise CatalogError(f"two scenes would share the item id {item['id']}", hint="rename one of the folders")
        ids.add(item["id"])
        path = out / item["id"] / f"{item['id']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        item["links"] = [{"rel": "root", "href": f"../{CATALOG}", "type": "application/json"},
                         {"rel": "parent", "href": f"../{CATALOG}", "type": "application/json"}]
        _write(path, item)
        links.append({"rel": "item", "href": f"./{item['id']}/{item['id']}.json", "type": "application/geo+json"})
    catalog = {"type": "Catalog", "stac_version": STAC_VERSION, "id": cat_id,
               "description": f"Local Sentinel-2 scenes under {root.resolve()} ({len(ids)} items), made by seco-data",
               "links": links}
    _write(out / CATALOG, catalog)
    log.info("wrote %s: %d items", out / CATALOG, len(ids))
    return out / CATALOG


def _write(path: Path, obj: dict) -> None:
    write_atomic(path, json.dumps(obj, indent=1).encode())


def _find_scenes(root: Path) -> dict[tuple[str, str], dict[str, tuple[Path, int]]]:
    """(folder relative to root, file prefix) -> {band: (file, band index)}."""
    import rasterio

    scenes: dict[tuple[str, str], dict[str, tuple[Path, int]]] = {}
    for folder, dirs, names in os.walk(root, followlinks=True):
        dirs.sort()
        rel = os.path.relpath(folder, root)
        for fname in sorted(names):
            if not fname.lower().endswith((".tif", ".tiff")):
                continue
            path = Path(folder) / fname
            m = _BAND_FILE.match(fname)
            if m:
                band = m.group("band").upper()
                band = "B8A" if band == "B8A" else f"B{int(band[1:]):02d}"
                scenes.setdefault((rel, m.group("prefix").rstrip("_-.")), {})[band] = (path, 1)
                continue
            with rasterio.open(path) as ds:  # a multi-band file with band names as descriptions
                found = {_band(d): i + 1 for i, d in enumerate(ds.descriptions) if _band(d)}
            if found:
                scenes[(rel, Path(fname).stem)] = {b: (path, i) for b, i in found.items()}
    return scenes


def _band(text) -> str | None:
    m = re.fullmatch(r"B0?(\d{1,2}|8A)", str(text or "").strip().upper())
    if not m:
        return None
    b = "B8A" if m.group(1) == "8A" else f"B{int(m.group(1)):02d}"
    return b if b in BANDS else None


def _when(root: Path, rel: str, prefix: str, files) -> dt.datetime:
    folder = root / rel
    m = re.search(r"(\d+)$", folder.name)
    dates = folder.parent / "dates.txt"
    if m and dates.is_file():
        for line in dates.read_text().splitlines():
            d = _DATES_LINE.match(line)
            if d and int(d.group(1)) == int(m.group(1)):
                return dt.datetime.strptime(d.group(2), "%Y%m%d").replace(tzinfo=dt.timezone.utc)
    for text in (prefix, folder.name, *(p.name for p, _ in files.values())):
        d = _DATE.search(text)
        if d:
            y, mo, da, hh, mm, ss = (int(g) if g else 0 for g in d.groups())
            try:
                return dt.datetime(y, mo, da, hh, mm, ss, tzinfo=dt.timezone.utc)
            except ValueError:
                continue
    first = next(iter(files.values()))[0]
    raise CatalogError(
        f"no acquisition date for the scene of {first}",
        hint=f"put a dates.txt ('date_1: YYYYMMDD' for a folder ending in 1) in {folder.parent}, "
             "or a YYYYMMDD date in the folder or file name")


def _item(root: Path, key: tuple[str, str], files: dict, out: Path, shared: bool) -> dict:
    import rasterio
    from rasterio.warp import transform_bounds

    rel, prefix = key
    when = _when(root, rel, prefix, files)
    parts = [p for p in Path(rel).parts if p not in (".", "")]
    use_prefix = prefix and (shared or not parts)  # several scenes in one folder: tell them apart
    item_id = re.sub(r"[^A-Za-z0-9_\-]+", "_", "_".join(parts + ([prefix] if use_prefix else []))) or "scene"
    assets, boxes, codes = {}, [], set()
    for band in sorted(files, key=list(BANDS).index):
        path, bidx = files[band]
        with rasterio.open(path) as ds:
            code = ds.crs.to_epsg() if ds.crs else None
            if code is None:
                raise CatalogError(f"{path} has no EPSG coordinate reference system")
            codes.add(code)
            boxes.append(transform_bounds(ds.crs, "EPSG:4326", *ds.bounds))
            t = ds.transform
            asset = {"href": _href(path, out / item_id), "type": "image/tiff; application=geotiff", "roles": ["data"],
                     "title": f"{band} ({BANDS[band].description})",
                     "eo:bands": [{"name": band, "common_name": BANDS[band].common_name,
                                   "center_wavelength": BANDS[band].center_wavelength}],
                     "proj:code": f"EPSG:{code}", "proj:shape": [ds.height, ds.width],
                     "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f]}
            if ds.count > 1:
                asset["eo:bands"] = [{"name": b} for b in (_band(d) or f"band{i + 1}" for i, d in enumerate(ds.descriptions))]
        assets[band] = asset
    w, s = min(b[0] for b in boxes), min(b[1] for b in boxes)
    e, n = max(b[2] for b in boxes), max(b[3] for b in boxes)
    names = " ".join([prefix, *(p.name for p, _ in files.values())]).upper()
    platform = next((f"sentinel-2{x.lower()}" for x in ("A", "B", "C") if f"S2{x}" in names), None)
    props = {"datetime": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "eo:cloud_cover": 0.0, "constellation": "sentinel-2"}
    if platform:
        props["platform"] = platform
    if len(codes) == 1:
        props["proj:code"] = f"EPSG:{codes.pop()}"
    return {"type": "Feature", "stac_version": STAC_VERSION, "stac_extensions": EXTENSIONS, "id": item_id,
            "bbox": [w, s, e, n],
            "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
            "properties": props, "links": [], "assets": assets}


def _href(path: Path, item_dir: Path) -> str:
    """Relative to the item when the file lies under the catalog's folder, else absolute."""
    path = Path(os.path.abspath(path))
    base = Path(os.path.abspath(item_dir)).parent
    try:
        path.relative_to(base)
    except ValueError:
        return str(path)
    return os.path.relpath(path, item_dir)
