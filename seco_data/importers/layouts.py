"""The released SeCo and SSL4EO-S12 folder layouts: recognising SRC, its locations and scenes.

    SeCo        ROOT/<loc:06d>/<scene id>/<band>.tif + metadata.json   uint8, JPEG, 5 scenes per location
    SSL4EO-S12  ROOT/{s2c,s2a}/<loc:07d>/<scene id>/<band>.tif + ...   uint16 DN, uncompressed, 4 scenes

Band files are named ``B1`` .. ``B12``, ``B8A`` (one band each, 264/132/44 px at 10/20/60 m), in
``+proj=latlong``; ``metadata.json`` holds the Earth Engine image properties of the scene.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..bands import DN_SCALE, PRODUCT_BANDS, UINT8_SCALE, canonical
from ..errors import UsageError

log = logging.getLogger(__name__)

KINDS = ("seco", "ssl4eo")
#: SSL4EO-S12 product folders (Sentinel-1 ``s1`` is out of scope)
PRODUCTS = {"s2c": "L1C", "s2a": "L2A"}
#: folders the SeCo zips extract to -> dataset name
SECO_FOLDERS = {"seasonal_contrast_100k": "seco-100k", "seasonal_contrast_1m": "seco-1m"}
_SCENE_TIME = re.compile(r"^(\d{8}T\d{6})")
_PRODUCT_SAT = re.compile(r"^S2([ABCD])_")


@dataclass(frozen=True)
class Layout:
    """A recognised source folder: where its locations are and what its files hold."""

    kind: str  # seco | ssl4eo
    root: Path  # the folder whose children are the location folders
    name: str  # collection id and item id prefix
    source: str  # seco:source of the items
    product: str  # L1C | L2A
    seasons: int
    dtype: str
    scale: float  # raster:scale (value -> reflectance)
    nodata: int | None

    @property
    def bands(self) -> tuple[str, ...]:
        return PRODUCT_BANDS[self.product]

    @property
    def layout(self) -> str:
        return "seco" if self.kind == "seco" else f"ssl4eo-s12/{'s2c' if self.product == 'L1C' else 's2a'}"


class Skip(Exception):
    """A location that cannot be imported (counted by ``reason``, never fatal)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def _first_scene(root: Path, tries: int = 20) -> Path | None:
    """A scene folder (with at least one .tif) under the first location folders found, or None."""
    try:
        with os.scandir(root) as it:
            for n, e in enumerate(e for e in it if e.name.isdigit() and e.is_dir()):
                if n >= tries:
                    break
                with os.scandir(e.path) as scenes:
                    for s in scenes:
                        if s.is_dir() and any(f.lower().endswith(".tif") for f in os.listdir(s.path)):
                            return Path(s.path)
    except OSError:
        return None
    return None


def _dtype_of(scene: Path) -> str | None:
    import rasterio

    for f in sorted(scene.glob("*.tif")):
        try:
            with rasterio.open(f) as ds:
                return ds.dtypes[0]
        except Exception:  # noqa: BLE001 - an unreadable file decides nothing
            continue
    return None


def find_layout(kind: str, src: str | Path, product: str | None = None) -> Layout:
    """Recognise ``src`` as a released ``kind`` layout; raise :class:`UsageError` saying what was expected."""
    if kind not in KINDS:
        raise UsageError(f"unknown layout {kind!r}: use one of {', '.join(KINDS)}")
    src = Path(src).expanduser()
    if not src.exists():
        raise UsageError(f"{src} does not exist", hint="pass the folder of the downloaded (extracted) dataset")
    if not src.is_dir():
        raise UsageError(f"{src} is not a folder", hint="extract the dataset's zip and pass the folder")
    return _seco_layout(src, product) if kind == "seco" else _ssl4eo_layout(src, product)


def _seco_layout(src: Path, product: str | None) -> Layout:
    if product is not None:
        raise UsageError("--product applies to ssl4eo only (SeCo is L2A)")
    expected = (f"expected {src}/<location:06d>/<scene id>/B1.tif ... with metadata.json, or the "
                f"{' / '.join(SECO_FOLDERS)} folder inside it")
    root = src
    if _first_scene(src) is None:
        inside = [src / n for n in SECO_FOLDERS if (src / n).is_dir()]
        if len(inside) > 1:
            raise UsageError(f"{src} holds both {inside[0].name} and {inside[1].name}", hint="pass one of them")
        if not inside:
            if src.name in ("s1", *PRODUCTS) or any((src / p).is_dir() for p in ("s1", *PRODUCTS)):
                raise UsageError(f"{src} is an SSL4EO-S12 download, not SeCo", hint="use `seco-data import ssl4eo`")
            raise UsageError(f"{src} is not a SeCo download: {expected}",
                             hint="pass the folder the SeCo zip extracts to, or its parent")
        root = inside[0]
    scene = _first_scene(root)
    if scene is None:
        raise UsageError(f"{root} holds no SeCo locations: {expected}", hint="is the download complete?")
    if _dtype_of(scene) == "uint16":
        raise UsageError(f"{root} holds uint16 files: an SSL4EO-S12 layout, not SeCo (uint8)",
                         hint="use `seco-data import ssl4eo`")
    return Layout("seco", root, SECO_FOLDERS.get(root.name, "seco"), SECO_FOLDERS.get(root.name, "seco"),
                  "L2A", 5, "uint8", UINT8_SCALE, None)


def _ssl4eo_layout(src: Path, product: str | None) -> Layout:
    if product == "s1" or src.name == "s1":
        raise UsageError("Sentinel-1 (s1) is out of scope: seco imports Sentinel-2 only",
                         hint="pass the s2c (L1C) or s2a (L2A) folder, or ROOT with --product s2c|s2a")
    if product is not None and product not in PRODUCTS:
        raise UsageError(f"unknown SSL4EO-S12 product {product!r}: use s2c (L1C) or s2a (L2A)")
    expected = f"expected {src}/<s2c|s2a>/<location:07d>/<scene id>/B1.tif ... with metadata.json, or one of those folders"
    if src.name in PRODUCTS:
        if product is not None and product != src.name:
            raise UsageError(f"--product {product} does not match the folder {src}",
                             hint=f"pass {src.parent / product} or drop --product")
        root, product = src, src.name
    elif any((src / p).is_dir() for p in PRODUCTS):
        product = product or "s2c"
        root = src / product
        if not root.is_dir():
            raise UsageError(f"{src} has no {product} folder", hint="choose the other one with --product")
    elif (scene := _first_scene(src)) is not None:  # a product folder under another name: B10 only in L1C
        root = src
        found = "s2c" if (scene / "B10.tif").exists() else "s2a"
        if product is not None and product != found:
            raise UsageError(f"{src} holds {PRODUCTS[found]} scenes ({'with' if found == 's2c' else 'without'} B10), "
                             f"not {product}", hint=f"pass --product {found}")
        product = found
    elif any((src / n).is_dir() for n in SECO_FOLDERS):
        raise UsageError(f"{src} is a SeCo download, not SSL4EO-S12", hint="use `seco-data import seco`")
    else:
        raise UsageError(f"{src} is not an SSL4EO-S12 download: {expected}",
                         hint="pass the s2c or s2a folder of the download, or its parent with --product")
    scene = _first_scene(root)
    if scene is None:
        raise UsageError(f"{root} holds no SSL4EO-S12 locations: {expected}", hint="is the download complete?")
    if _dtype_of(scene) == "uint8":
        raise UsageError(f"{root} holds uint8 files: a SeCo layout, not SSL4EO-S12 (uint16)",
                         hint="use `seco-data import seco`")
    level = PRODUCTS[product]
    return Layout("ssl4eo", root, f"ssl4eo-s12-{level.lower()}", "ssl4eo-s12", level, 4, "uint16", DN_SCALE, 0)


def list_locations(root: Path) -> list[tuple[int, str]]:
    """(location number, folder name) of every all-digit folder under ``root``, by number."""
    with os.scandir(root) as it:
        return sorted((int(e.name), e.name) for e in it if e.name.isdigit() and e.is_dir())


@dataclass(frozen=True)
class Scene:
    scene_id: str
    folder: Path
    datetime: dt.datetime
    platform: str | None
    cloud: float | None  # CLOUDY_PIXEL_PERCENTAGE
    files: dict  # canonical band -> file


def read_metadata(folder: Path) -> dict | None:
    """The Earth Engine properties of a scene folder, or None (missing or unreadable: logged)."""
    path = folder / "metadata.json"
    try:
        meta = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.warning("ignoring unreadable %s: %s", path, e)
        return None
    if isinstance(meta, dict) and isinstance(meta.get("properties"), dict):  # a whole image info dict
        meta = meta["properties"]
    return meta if isinstance(meta, dict) else None


def scene_of(folder: Path) -> Scene:
    """A scene folder: its band files, time (``system:time_start``, else the scene id), platform, cloud."""
    meta = read_metadata(folder) or {}
    sid = folder.name  # the scripts name the folder after ``system:index``
    when = None
    t = meta.get("system:time_start")
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        when = dt.datetime.fromtimestamp(t / 1000, tz=dt.timezone.utc)
    else:
        m = _SCENE_TIME.match(folder.name)
        if m:
            when = dt.datetime.strptime(m.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=dt.timezone.utc)
    if when is None:
        raise Skip("no_date", f"{folder.parent.name}/{folder.name}: no metadata.json time and no date in the name")
    platform = None
    craft = meta.get("SPACECRAFT_NAME")
    if isinstance(craft, str) and craft.lower().startswith("sentinel-2"):
        platform = craft.lower()
    elif isinstance(meta.get("PRODUCT_ID"), str) and _PRODUCT_SAT.match(meta["PRODUCT_ID"]):
        platform = "sentinel-2" + _PRODUCT_SAT.match(meta["PRODUCT_ID"]).group(1).lower()
    cloud = meta.get("CLOUDY_PIXEL_PERCENTAGE")
    cloud = min(100.0, max(0.0, float(cloud))) if isinstance(cloud, (int, float)) and not isinstance(cloud, bool) else None
    files = {}
    for f in folder.iterdir():
        if f.suffix.lower() == ".tif":
            try:
                files[canonical(f.stem)] = f
            except KeyError:
                continue
    return Scene(sid, folder, when, platform, cloud, files)
