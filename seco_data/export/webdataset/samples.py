"""One WebDataset sample per location: its plan (members, shapes, sizes; no pixels read) and its bytes.

A sample holds every selected season of one location::

    <key>.json       location, centre, CRS, transforms, dates, scene ids, cloud/valid fractions, item ids
    <key>.10m.npy    uint16 (seasons, bands, 264, 264)  - one array per resolution group
    <key>.20m.npy    uint16 (seasons, bands, 132, 132)
    <key>.60m.npy    uint16 (seasons, bands, 44, 44)

(``--resample-10m`` gives a single ``10m.npy`` with every band repeated to the 10 m grid; ``--codec
zstd`` stores ``<group>.npy.zst`` members instead; ``--dtype uint8`` SeCo's 8-bit values:
:mod:`seco_data.export.arrays`.) The key is the
location number, ``%07d``: no dots, as WebDataset splits a member name at its first dot. The sizes
planned are those of ``npy`` members (an upper bound for ``zstd``).
"""

from __future__ import annotations

import hashlib
import json
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from ...catalog.index import Location
from ...bands import UINT8_SCALE
from ...errors import CatalogError
from ...storage import read_bytes
from ..arrays import convert_uint8, encode_zstd, member_name, npy_header
from .tar import member_size


def plan_sample(loc: Location, opts, catalog: str) -> tuple[dict, list, int] | str:
    """(sample JSON, read list, tar bytes) for one location, or the reason it is skipped."""
    patches = loc.patches
    if opts.seasons is not None:
        by_season = {p.season: p for p in patches}
        if any(s not in by_season for s in opts.seasons):
            return "missing_season"
        patches = tuple(by_season[s] for s in opts.seasons)
    # band -> (resolution, asset index) from the first patch; every season must match it
    first = patches[0]
    available = {b: a.resolution for a in first.assets for b in a.bands}
    wanted = list(opts.bands) if opts.bands else [b for a in first.assets for b in a.bands]
    if any(b not in available for b in wanted):
        return "missing_band"
    if opts.resample_10m:
        groups = {"10m": (10, wanted)}
    else:
        by_res: dict[int, list[str]] = {}
        for b in wanted:
            by_res.setdefault(available[b], []).append(b)
        groups = {f"{r}m": (r, by_res[r]) for r in sorted(by_res)}
    reads = []  # per season: [(path, band numbers in the file, group, rows in the group array, upsampling)]
    shapes: dict[str, tuple[int, int]] = {}
    transforms: dict[str, list] = {}
    scales: dict[str, float] = {}
    dtype = None
    for p in patches:
        season_reads = []
        index = {b: (a, i) for a in p.assets for i, b in zip(a.band_indexes(), a.bands)}
        for gname, (res, bands) in groups.items():
            per_file: dict[Path, tuple[list[int], list[int], int, tuple]] = {}
            for row, b in enumerate(bands):
                if b not in index:
                    return "missing_band"
                a, i = index[b]
                if len(a.shape) != 2:
                    return "inconsistent_shapes"
                factor = max(1, a.resolution // res) if opts.resample_10m else 1
                shape = (a.shape[0] * factor, a.shape[1] * factor)
                if shapes.setdefault(gname, shape) != shape:
                    return "inconsistent_shapes"
                dtype = dtype or a.dtype
                if a.dtype != dtype:
                    return "inconsistent_dtype"
                scales.setdefault(gname, a.scale)
                if gname not in transforms:
                    t = list(a.transform)
                    if factor != 1 and len(t) == 6:
                        t = [t[0] / factor, t[1], t[2], t[3], t[4] / factor, t[5]]
                    transforms[gname] = t
                idx, rows, _, _ = per_file.setdefault(a.path, ([], [], factor, (a.size, a.sha256)))
                idx.append(i)
                rows.append(row)
            for path, (idx, rows, factor, (size, sha)) in per_file.items():
                season_reads.append([str(path), idx, gname, rows, factor, size, sha])
        reads.append(season_reads)
    arrays = {}
    size = 0
    for gname, (res, bands) in groups.items():
        shape = (len(patches), len(bands), *shapes[gname])
        arrays[gname] = {"bands": bands, "resolution": res, "shape": list(shape), "dtype": dtype,
                         "transform": transforms[gname], "scale": scales[gname], "encoding": opts.codec}
        if opts.dtype == "uint8":
            arrays[gname].update(dtype="uint8", scale=UINT8_SCALE, source_dtype=dtype, source_scale=scales[gname])
        stored = arrays[gname]["dtype"]
        size += member_size(len(npy_header(shape, stored)) + int(np.prod(shape)) * np.dtype(stored).itemsize)
    meta = {
        "key": f"{loc.location:07d}",
        "location": loc.location,
        "catalog": catalog,
        "centre": [round(loc.point[0], 7), round(loc.point[1], 7)],
        "crs": next((a.crs for a in first.data), ""),
        "arrays": arrays,
        "seasons": [p.season for p in patches],
        "dates": [p.datetime for p in patches],
        "scene_ids": [p.scene_id for p in patches],
        "platforms": [p.platform for p in patches],
        "scene_cloud": [p.scene_cloud for p in patches],
        "cloud_fraction": [p.cloud_fraction for p in patches],
        "valid_fraction": [p.valid_fraction for p in patches],
        "item_ids": [p.item_id for p in patches],
        "resampled": "nearest" if opts.resample_10m else None,
    }
    size += member_size(len(_json_bytes(meta)))
    return meta, reads, size


def _json_bytes(meta: dict) -> bytes:
    return json.dumps(meta, separators=(",", ":"), sort_keys=True).encode()


def _checked_bytes(path: str, size: int | None, sha256: str | None) -> bytes:
    """The bytes of a catalog file, checked against the size and checksum its item records (hashing
    what is read anyway costs ~1 ms per MB): a damaged file never reaches a shard."""
    try:
        data = read_bytes(path)  # a local file, or an object (a catalog on object storage)
    except OSError as e:
        raise CatalogError(f"cannot read {path}: {e.strerror or e}", hint=_REPAIR) from None
    if size is not None and len(data) != size:
        raise CatalogError(f"{path} is {len(data)} bytes, its item says {size}: the catalog is damaged", hint=_REPAIR)
    if sha256 and hashlib.sha256(data).hexdigest() != sha256:
        raise CatalogError(f"{path} does not match its file:checksum: the catalog is damaged", hint=_REPAIR)
    return data


_REPAIR = ("`seco-data verify CATALOG` lists every damaged file; rerun the same `seco-data sample` (or `import`) "
           "with --repair full to collect them again, then export again (finished shards are kept)")


def encode_sample(meta: dict, reads: list) -> dict[str, bytes]:
    """Read the pixels of one planned sample and encode its members (key -> bytes).

    Each file is read once per sample, checked against its recorded size and checksum, and decoded
    in memory; a whole group array is decoded in one call when the file holds it in order (a compact
    file: every season's bands of one resolution)."""
    import rasterio

    members = {}
    arrays = {}
    stored = {}  # group -> the member's array, when the pixels read are converted into it
    for g, a in meta["arrays"].items():
        # the member's bytes are allocated once; GDAL decodes straight into them (or into a buffer of
        # the catalog's dtype first, when converted)
        head = npy_header(tuple(a["shape"]), a["dtype"])
        buf = bytearray(len(head) + int(np.prod(a["shape"])) * np.dtype(a["dtype"]).itemsize)
        buf[:len(head)] = head
        members[f"{g}.npy"] = buf
        arrays[g] = np.frombuffer(buf, dtype=a["dtype"], offset=len(head)).reshape(a["shape"])
        if "source_dtype" in a:
            stored[g] = arrays[g]
            arrays[g] = np.empty(a["shape"], a["source_dtype"])
    plan: dict[tuple[str, str, int], list] = {}  # (path, group, factor) -> [(season, rows, indexes)]
    recorded: dict[str, tuple] = {}  # path -> (size, sha256) the catalog records
    for s, season_reads in enumerate(reads):
        for path, idx, gname, rows, factor, *check in season_reads:
            plan.setdefault((path, gname, factor), []).append((s, rows, idx))
            recorded[path] = tuple(check) if check else (None, None)
    with ExitStack() as stack:
        opened: dict[str, object] = {}
        for (path, gname, factor), parts in plan.items():
            src = opened.get(path)
            if src is None:
                data = _checked_bytes(path, *recorded[path])
                src = opened[path] = stack.enter_context(stack.enter_context(rasterio.MemoryFile(data)).open())
            dest = arrays[gname]
            seasons, bands = dest.shape[:2]
            order = [(s, r) for s, rows, _ in parts for r in rows]
            if factor == 1 and order == [(s, r) for s in range(seasons) for r in range(bands)]:
                src.read([i for _, _, idx in parts for i in idx], out=dest.reshape(-1, *dest.shape[2:]))
                continue
            for s, rows, idx in parts:
                if factor == 1 and rows == list(range(rows[0], rows[0] + len(rows))):
                    src.read(idx, out=dest[s, rows[0]:rows[0] + len(rows)])
                    continue
                data = src.read(idx)
                if factor > 1:
                    data = data.repeat(factor, axis=1).repeat(factor, axis=2)
                dest[s, rows] = data
    for g, out in stored.items():
        convert_uint8(arrays[g], meta["arrays"][g]["source_scale"], out)
        arrays[g] = out
    for g, a in meta["arrays"].items():
        if a.get("encoding", "npy") != "npy":
            del members[f"{g}.npy"]
            members[member_name(g, a["encoding"])] = encode_zstd(arrays[g])
    return {"__key__": meta["key"], "json": _json_bytes(meta), **members}
