"""The STAC Item builders, used by sampling and by imports (through the ledger, :mod:`.rebuild`).

An :class:`ItemSpec` describes one per-patch item (one location observed in one season) and its
files; a :class:`LocationSpec` one compact item (one location, every season: its GeoTIFFs hold the
seasons' bands one after the other, each band entry saying its season). :func:`build_item` turns
either into a STAC 1.1 Item with the eo 2.0, projection 2.0, raster 2.0 and file 2.1 extensions.
seco's own fields use the ``seco:`` prefix. Hrefs are relative to the folder the item's files are in,
and links point to the catalog tree of :mod:`seco_data.catalog.layout`. Same input, same JSON.

A compact item has no single acquisition time: ``datetime`` is null and ``start_datetime`` /
``end_datetime`` span its seasons; each season's time, scene, cloud and coverage are in
``seco:seasons``; ``eo:cloud_cover`` and ``seco:cloud_fraction`` are those of its cloudiest season,
``seco:valid_fraction`` that of its least covered one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from ..bands import BANDS, DN_SCALE
from .layout import CATALOG, COLLECTION, EXTENSIONS, GEOJSON, GEOTIFF, JPEG, JSON, PNG, STAC_VERSION, THUMBNAIL, data_key


@dataclass(frozen=True)
class RasterFile:
    """One GeoTIFF of an item: the bands of one resolution group."""

    href: str  # relative to the item's folder
    resolution: int  # metres
    bands: tuple[str, ...]
    sha256: str
    size: int
    crs: str  # proj:code, e.g. EPSG:32633
    shape: tuple[int, int]
    transform: tuple[float, ...]  # 6 numbers
    bbox: tuple[float, float, float, float]  # in the raster's CRS
    dtype: str = "uint16"
    nodata: int | None = 0
    scale: float = DN_SCALE  # raster:scale: reflectance = DN x scale
    #: compact layout: the season of each band (bands are season-major: s0 B02 B03 ..., s1 B02 ...)
    band_seasons: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ThumbnailFile:
    href: str  # relative to the item's folder
    sha256: str
    size: int


@dataclass(frozen=True)
class ItemSpec:
    """Everything an item says about one location in one season."""

    collection: str
    item_id: str
    location: int
    season: int
    datetime: str | dt.datetime
    ring: list  # closed lon/lat ring of the footprint
    crs: str  # proj:code of the patch grid
    rasters: tuple[RasterFile, ...]
    source: dict  # {name, product, synthetic, ...}
    scene_id: str
    valid_fraction: float
    point: tuple[float, float]  # lon, lat of the location
    thumbnail: ThumbnailFile | None = None
    platform: str | None = None  # unknown (imports without metadata): left out
    scene_cloud: float | None = None  # percent; unknown: left out
    cloud_fraction: float | None = None  # patch cloud + shadow; unknown: null
    window: tuple[str, str] | None = None
    origin: str | None = None
    extra: dict = field(default_factory=dict)  # further seco:* properties (imports: where they came from)


def iso(t: str | dt.datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` of an aware datetime or its ISO text."""
    if isinstance(t, str):
        t = dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def band_objects(bands) -> list[dict]:
    """STAC 1.1 ``bands`` entries (name, description, eo common name and wavelengths)."""
    return [{"name": b, "description": BANDS[b].description, "eo:common_name": BANDS[b].common_name,
             "eo:center_wavelength": BANDS[b].center_wavelength,
             "eo:full_width_half_max": BANDS[b].full_width_half_max} for b in bands]


def raster_asset(r: RasterFile) -> dict:
    if r.band_seasons is None:
        title = f"{r.resolution} m bands: {' '.join(r.bands)}"
        bands = band_objects(r.bands)
    else:
        per = len(r.bands) // max(1, len(set(r.band_seasons)))
        title = f"{r.resolution} m bands: {' '.join(r.bands[:per])}, for each of {len(set(r.band_seasons))} seasons"
        bands = [{**b, "seco:season": s} for b, s in zip(band_objects(r.bands), r.band_seasons)]
    asset = {
        "href": "./" + r.href,
        "type": GEOTIFF,
        "title": title,
        "roles": ["data"],
        "gsd": float(r.resolution),
        "data_type": r.dtype,
    }
    if r.nodata is not None:
        asset["nodata"] = r.nodata
    asset.update({
        "proj:code": r.crs,
        "proj:shape": list(r.shape),
        "proj:transform": [float(v) for v in r.transform[:6]],
        "proj:bbox": [float(v) for v in r.bbox],
        "raster:scale": r.scale,
        "raster:offset": 0.0,
        "raster:spatial_resolution": float(r.resolution),
        "file:checksum": "1220" + r.sha256,
        "file:size": r.size,
        "bands": bands,
    })
    return asset


def thumbnail_asset(href: str, sha256: str, size: int, seasons: int = 1) -> dict:
    """The STAC asset of an item's quicklook (``href`` relative to the item, like its data assets)."""
    return {
        "href": href,
        "type": PNG if href.endswith(".png") else JPEG,
        "title": "True-colour quicklook (B04, B03, B02)" + (f", {seasons} seasons side by side" if seasons > 1 else ""),
        "roles": [THUMBNAIL],
        "file:checksum": "1220" + sha256,
        "file:size": size,
    }


def item_links(depth: int = 2) -> list[dict]:
    """root, parent and collection links of an item whose files are ``depth`` folders below the
    catalog root: a per-patch item's parent is its part's sub-catalog, a compact item's the collection."""
    up = "../" * depth
    parent = f"../{CATALOG}" if depth > 1 else f"{up}{COLLECTION}"
    return [
        {"rel": "root", "href": f"{up}{CATALOG}", "type": JSON},
        {"rel": "parent", "href": parent, "type": JSON},
        {"rel": "collection", "href": f"{up}{COLLECTION}", "type": JSON},
    ]


def _feature(p, props: dict, assets: dict, links: list[dict]) -> dict:
    """The Feature of item spec ``p`` (per patch or per location): its provenance closes ``props``."""
    lons = [q[0] for q in p.ring]
    lats = [q[1] for q in p.ring]
    if p.origin is not None:
        props["seco:origin"] = p.origin
    props.update({
        "seco:source": p.source["name"],
        "seco:product": p.source["product"],
        "seco:synthetic": bool(p.source.get("synthetic")),
        **p.extra,
    })
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": EXTENSIONS,
        "id": p.item_id,
        "geometry": {"type": "Polygon", "coordinates": [[[round(x, 7), round(y, 7)] for x, y in p.ring]]},
        "bbox": [round(min(lons), 7), round(min(lats), 7), round(max(lons), 7), round(max(lats), 7)],
        "properties": props,
        "links": links,
        "assets": assets,
        "collection": p.collection,
    }


def build_item(p: ItemSpec) -> dict:
    """The STAC Item of ``p`` as a dict (deterministic: same patch, same JSON)."""
    assets = {data_key(r.resolution): raster_asset(r) for r in p.rasters}
    if p.thumbnail is not None:
        assets[THUMBNAIL] = thumbnail_asset("./" + p.thumbnail.href, p.thumbnail.sha256, p.thumbnail.size)
    props: dict = {"datetime": iso(p.datetime)}
    if p.platform is not None:
        props["platform"] = p.platform
    props.update({"constellation": "sentinel-2", "instruments": ["msi"]})
    if p.scene_cloud is not None:
        props["eo:cloud_cover"] = round(float(p.scene_cloud), 3)
    props.update({
        "proj:code": p.crs,
        "seco:location": p.location,
        "seco:season": p.season,
        "seco:scene_id": p.scene_id,
        "seco:cloud_fraction": None if p.cloud_fraction is None else round(float(p.cloud_fraction), 6),
        "seco:valid_fraction": round(float(p.valid_fraction), 6),
    })
    if p.window is not None:
        props["seco:window"] = [iso(p.window[0]), iso(p.window[1])]
    props["seco:point"] = [round(p.point[0], 7), round(p.point[1], 7)]
    return _feature(p, props, assets, item_links())


@dataclass(frozen=True)
class SeasonSpec:
    """One season of a compact location item."""

    season: int
    datetime: str | dt.datetime
    scene_id: str
    valid_fraction: float
    platform: str | None = None
    scene_cloud: float | None = None
    cloud_fraction: float | None = None
    window: tuple[str, str] | None = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class LocationSpec:
    """Everything a compact item says about one location and its seasons."""

    collection: str
    item_id: str
    location: int
    ring: list
    crs: str
    rasters: tuple[RasterFile, ...]  # multi-season files (``band_seasons`` set)
    seasons: tuple[SeasonSpec, ...]
    source: dict
    point: tuple[float, float]
    thumbnail: ThumbnailFile | None = None
    origin: str | None = None
    extra: dict = field(default_factory=dict)


def _season(s: SeasonSpec) -> dict:
    d: dict = {"season": s.season, "datetime": iso(s.datetime), "scene_id": s.scene_id}
    if s.platform is not None:
        d["platform"] = s.platform
    if s.scene_cloud is not None:
        d["eo:cloud_cover"] = round(float(s.scene_cloud), 3)
    if s.cloud_fraction is not None:
        d["cloud_fraction"] = round(float(s.cloud_fraction), 6)
    d["valid_fraction"] = round(float(s.valid_fraction), 6)
    if s.window is not None:
        d["window"] = [iso(s.window[0]), iso(s.window[1])]
    d.update(s.extra)
    return d


def build_location_item(p: LocationSpec) -> dict:
    """The compact STAC Item of ``p`` as a dict (deterministic: same location, same JSON)."""
    times = sorted(iso(s.datetime) for s in p.seasons)
    assets = {data_key(r.resolution): raster_asset(r) for r in p.rasters}
    if p.thumbnail is not None:
        assets[THUMBNAIL] = thumbnail_asset("./" + p.thumbnail.href, p.thumbnail.sha256, p.thumbnail.size,
                                            seasons=len(p.seasons))
    props: dict = {"datetime": None, "start_datetime": times[0], "end_datetime": times[-1]}
    platforms = {s.platform for s in p.seasons}
    if len(platforms) == 1 and None not in platforms:
        props["platform"] = platforms.pop()
    props.update({"constellation": "sentinel-2", "instruments": ["msi"]})
    clouds = [s.scene_cloud for s in p.seasons]
    if clouds and None not in clouds:
        props["eo:cloud_cover"] = round(float(max(clouds)), 3)
    fractions = [s.cloud_fraction for s in p.seasons]
    props.update({
        "proj:code": p.crs,
        "seco:location": p.location,
        "seco:seasons": [_season(s) for s in p.seasons],
        **({"seco:cloud_fraction": round(float(max(fractions)), 6)} if fractions and None not in fractions else {}),
        "seco:valid_fraction": round(float(min(s.valid_fraction for s in p.seasons)), 6),
        "seco:point": [round(p.point[0], 7), round(p.point[1], 7)],
    })
    return _feature(p, props, assets, item_links(depth=1))


__all__ = ["GEOJSON", "ItemSpec", "LocationSpec", "RasterFile", "SeasonSpec", "ThumbnailFile", "band_objects",
           "build_item", "build_location_item", "iso", "item_links", "raster_asset", "thumbnail_asset"]
