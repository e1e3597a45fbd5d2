"""Export a catalog to the SeCo folder layout, read unchanged by torchgeo's ``SeasonalContrastS2``
and by the SeCo reference loaders (ServiceNow/seasonal-contrast ``datasets/seco_dataset.py``)::

    OUT/<i:06d>/<scene>/<band>.tif       one single-band GeoTIFF per band, native size (264/132/44 px)
    OUT/<i:06d>/<scene>/metadata.json    Earth-Engine-like properties (as SeCo's downloader wrote) + seco's
    OUT/<i:06d>/<scene>.tif              with ``preview``: RGB uint8 preview, as in SeCo-100K
    .OUT.seco/index.csv                  (beside OUT) i -> catalog location, season, item id, scene folder
    .OUT.seco/seco_layout.json           (beside OUT) settings, catalog (path, collection, parquet sha256), counts

``i`` runs 0..N-1 in catalog order (torchgeo opens ``f'{index:06}'``). Band files use SeCo's names
(``B1`` ... ``B9``, ``B8A``, ``B10``, ``B11``, ``B12``). ``bits=8`` converts DN as SeCo did
(``rescale_intensity(DN / 10000, in_range=(0, 1), out_range=np.uint8)``: clip, x255, truncate);
``bits=16`` keeps DN. Catalogs of 8-bit data (imported SeCo) are copied unchanged. Files carry the
catalog's exact CRS and transform, where SeCo wrote approximate lon/lat bounds; both readers ignore
georeferencing. OUT holds location folders only (SeCo's loaders take every entry of OUT for a
location); seco's own files live beside it, in ``.<OUT name>.seco/``.

Each location is written into ``.<OUT name>.seco/partial/`` and renamed into place, so a location folder is
complete or absent; a rerun with the same settings and catalog skips finished locations (same
bytes). ``partial`` is removed at the end of a run.

On object storage (``OUT`` = ``s3://bucket/prefix``, also ``gs://``, ``az://``), the same objects:
each written whole, a location's once every one of them is there, so a rerun writes the others
again, to the same bytes. Locations finish out of order; the first one not finished is published
(``done.json``, every ``CHECKPOINT_S`` seconds), so a rerun skips those before it unlisted and lists
only the rest (one listing that starts there: a resume near the end of a million locations lists the
tail, not tens of millions of objects). A rerun of a finished layout lists it whole, to find what
went missing since. seco's files go beside OUT as on disk
(``s3://bucket/.prefix.seco/``), kept in a local staging folder meanwhile: ``.seco.json`` (the
identity, published before any location, so that another command or other settings are refused
there and an interrupted run resumes, here or on another machine), then at the end ``index.csv``
and, last, ``seco_layout.json`` with ``"complete": true``.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ... import __version__, jobs
from ...bands import BANDS, canonical
from ...catalog.index import CatalogIndex
from ...errors import UsageError
from ...outputs import atomic_file, claim_output, lock, sha256_file, write_json
from ...remote import RemoteOutput, claim_remote, writable
from ...storage import is_url, store_for
from .files import (PREVIEW, count_files, counts_of, location_names, meta_dir, partial_dir, scene_folders,
                    seco_band_name, write_location)

log = logging.getLogger(__name__)

#: choices for ``compress``: lossless codecs, and ``jpeg`` (8-bit only, lossy) as in the SeCo release
COMPRESSIONS = ("deflate", "zstd", "lzw", "jpeg", "none")
BITS = (8, 16)
#: seco's own files live beside OUT, in ``.<OUT name>.seco/``, never inside it: SeCo's loaders take
#: every folder of OUT for a location (pathlib's glob("*") matches hidden names too) and
#: SeasonalContrastBasic opens every entry of OUT as a folder, so OUT holds location folders only
LAYOUT_FILE = "seco_layout.json"
INDEX_FILE = "index.csv"
LAYOUT_VERSION = 1


@dataclass(frozen=True)
class SecoLayoutReport:
    """Totals of the layout in ``out``; ``skipped`` counts locations already finished by an earlier run."""

    out: Path | str  # a folder, or an object-storage URL
    locations: int
    scenes: int
    files: int
    bytes: int
    seconds: float
    skipped: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["out"] = str(self.out)
        return d


@dataclass(frozen=True)
class _Settings:
    bits: int
    bands: tuple[str, ...]  # canonical
    compress: str
    preview: bool

    def to_dict(self) -> dict:
        return {"bits": self.bits, "bands": [seco_band_name(b) for b in self.bands],
                "compress": self.compress, "preview": self.preview}


# -- the export ----------------------------------------------------------------------------------------


def _settings(index: CatalogIndex, bits, bands, compress, preview) -> _Settings:
    if bits not in BITS:
        raise UsageError(f"bits must be 8 or 16, not {bits!r}")
    if compress not in COMPRESSIONS:
        raise UsageError(f"unknown compression {compress!r}", hint=f"use one of {', '.join(COMPRESSIONS)}")
    if compress == "jpeg" and bits == 16:
        raise UsageError("JPEG compression needs 8-bit output",
                         hint="JPEG is lossy and 8-bit only: use --bits 8, or a lossless --compress with --bits 16")
    first = next(index.patches(batch=64), None)
    held = {b for a in first.assets for b in a.bands} if first else set()
    dtypes = {a.dtype for a in first.data} if first else set()
    if bits == 16 and dtypes - {"uint16"}:
        raise UsageError(f"{index.root} holds {'/'.join(sorted(dtypes))} pixels; 16-bit output needs uint16 DN",
                         hint="use --bits 8 for catalogs of 8-bit data (e.g. imported SeCo)")
    if isinstance(bands, str):
        bands = [b for b in bands.split(",") if b.strip()]
    if bands is None:
        chosen = tuple(b for b in BANDS if b in held)
    else:
        chosen = []
        for b in bands:
            try:
                c = canonical(b)
            except KeyError:
                raise UsageError(f"unknown band {b!r}",
                                 hint="use Sentinel-2 band names: B1 ... B12 (or B01 ... B12), B8A") from None
            if first is not None and c not in held:
                raise UsageError(f"band {b} is not in the catalog {index.name}",
                                 hint=f"it holds {' '.join(seco_band_name(x) for x in BANDS if x in held)}")
            if c not in chosen:
                chosen.append(c)
        chosen = tuple(b for b in BANDS if b in chosen)  # table order: the order given does not matter
        if not chosen:
            raise UsageError("no band selected", hint="pass band names, e.g. --bands B2,B3,B4")
    if preview and first is not None and not set(PREVIEW) <= held:
        raise UsageError("a preview needs B2, B3 and B4, which the catalog lacks", hint="export without --preview")
    return _Settings(bits, chosen, compress, bool(preview))


def _identity(index: CatalogIndex, settings: _Settings) -> dict:
    return {
        "format": "seco",
        "layout_version": LAYOUT_VERSION,
        "settings": settings.to_dict(),
        "catalog": {"path": str(index.root), "collection": index.name, "items_sha256": sha256_file(index.parquet)},
    }


def _ours(entry: str) -> bool:
    return len(entry) == 6 and entry.isdigit()


def export_seco_layout(catalog, out, *, bits=8, bands=None, compress="deflate", preview=False,
                       workers=1, overwrite=False, progress: jobs.ProgressFn | None = None) -> SecoLayoutReport:
    """Export ``catalog`` to the SeCo folder layout in ``out`` (see the module docstring).

    ``bands``: canonical or SeCo names (default every band of the catalog). Rerunning with the same
    settings resumes; other settings or other content in ``out`` raise :class:`OutputError` unless
    ``overwrite`` (which only ever removes a previous export).
    """
    jobs.check_workers(workers)
    if is_url(str(out)):
        writable(out, overwrite, "the export")
    # the catalog stays as it is while it is read: no `sample` or `rebuild` writes it meanwhile (a
    # catalog on object storage has no lock: export it once its `sample` has finished)
    catalog_lock = nullcontext() if is_url(str(catalog)) else lock(Path(catalog), shared=True, wait_s=0.0,
                                                                    what="writing to")
    with catalog_lock:
        return _export(catalog, out, bits, bands, compress, preview, workers, overwrite, progress)


def _export(catalog, out, bits, bands, compress, preview, workers, overwrite, progress) -> SecoLayoutReport:
    t0 = time.monotonic()
    index = CatalogIndex(catalog)
    settings = _settings(index, bits, bands, compress, preview)
    identity = _identity(index, settings)
    layout = {**identity, "software": {"name": "seco", "version": __version__}}
    log.info("exporting %s to %s (%d-bit, %s, %d bands)", index.root, out, settings.bits, settings.compress,
             len(settings.bands))
    if is_url(str(out)):
        out = str(out).rstrip("/")
        totals, n, skipped = _export_remote(index, out, settings, identity, layout, workers, progress)
    else:
        out = Path(out).resolve()
        with claim_output(out, kind="seco-layout", identity=identity, overwrite=overwrite, state_dir=meta_dir(out),
                          ours=_ours):
            partial = partial_dir(out)
            shutil.rmtree(partial, ignore_errors=True)  # left by an interrupted run
            partial.mkdir(parents=True)
            write_json(meta_dir(out) / LAYOUT_FILE, {**layout, "complete": False})
            totals, n, skipped = _run(index, out, settings, workers, progress)
            write_json(meta_dir(out) / LAYOUT_FILE, {**layout, "complete": True, "counts": _counts(totals, n)})
            shutil.rmtree(partial, ignore_errors=True)
    report = SecoLayoutReport(out, n, totals[0], totals[1], totals[2], time.monotonic() - t0,
                              {"finished": skipped} if skipped else {})
    log.info("SeCo layout: %d locations, %d scenes, %d files, %d bytes in %.1f s (%d already finished)",
             n, totals[0], totals[1], totals[2], report.seconds, skipped)
    return report


def _counts(totals: list[int], n: int) -> dict:
    return {"locations": n, "scenes": totals[0], "files": totals[1], "bytes": totals[2]}


def _run(index: CatalogIndex, out: Path, settings: _Settings, workers: int,
         progress: jobs.ProgressFn | None) -> tuple[list[int], int, int]:
    """Write every location not yet in ``out``; stream ``index.csv`` in catalog order."""
    return export_locations(index, meta_dir(out) / INDEX_FILE, write_location, workers, progress,
                            finished=lambda i, loc: (count_files(out / f"{i:06d}") if (out / f"{i:06d}").is_dir()
                                                     else None),
                            key=lambda i: f"{i:06d}", folders=scene_folders,
                            task=lambda i, loc: (i, loc, str(out), settings))


def meta_url(out: str) -> str:
    """Where seco's files of the layout in ``out`` go on object storage: beside it, as on disk
    (``s3://bucket/a/b`` -> ``s3://bucket/a/.b.seco``)."""
    scheme, rest = out.split("://", 1)
    bucket, _, key = rest.strip("/").partition("/")
    if not key:
        raise UsageError(f"--out {out}: the SeCo layout on object storage needs a prefix (s3://bucket/name)",
                         hint="its own files (.name.seco/) go beside the layout, as on disk; e.g. "
                              f"{scheme}://{bucket}/seasonal_contrast_100k")
    parent, _, name = key.rpartition("/")
    return f"{scheme}://{bucket}/" + (f"{parent}/" if parent else "") + f".{name}.seco"


def _export_remote(index: CatalogIndex, out: str, settings: _Settings, identity: dict, layout: dict, workers: int,
                   progress: jobs.ProgressFn | None) -> tuple[list[int], int, int]:
    """The layout on object storage (see the module docstring)."""
    remote = RemoteOutput(meta_url(out))  # seco's files: staged locally, published beside OUT
    store = store_for(out)
    with claim_remote(remote, out, kind="seco-layout", identity=identity, holds_data=store.has_any()):
        # where an interrupted run got to (fetched afresh: it may have run elsewhere); a finished layout
        # is listed whole again, so that a rerun finds what went missing since
        stored = {name: remote.store.get(name) if remote.store.size(name) is not None else None
                  for name in (LAYOUT_FILE, DONE_FILE)}
        complete = stored[LAYOUT_FILE] is not None and json.loads(stored[LAYOUT_FILE]).get("complete") is True
        frontier = _Frontier.load(None if complete else stored[DONE_FILE])
        # the point this run starts from is published before the layout is marked unfinished (a record
        # left by an earlier run must never outlive the listing that replaced it)
        write_json(remote.staging / DONE_FILE, frontier.record(), indent=None)
        write_json(remote.staging / LAYOUT_FILE, {**layout, "complete": False})
        remote.publish([DONE_FILE])
        remote.publish([LAYOUT_FILE])
        # what earlier runs wrote past that point: one listing of the rest, never of the whole layout
        present = dict(store.walk(after=f"{frontier.below:06d}" if frontier.below else None))
        below, before = frontier.below, list(frontier.counts)

        def finished(i, loc):
            if i < below:
                return (0, 0, 0)  # (counted in ``before``)
            sizes = {rel: present.get(f"{i:06d}/{rel}") for rel in location_names(loc, settings)}
            return None if None in sizes.values() else counts_of(sizes)

        def checkpoint(i=None, counts=None):  # (no location: the end of the run)
            if i is not None:
                frontier.done(i, counts)
            if i is None or time.monotonic() - frontier.saved > CHECKPOINT_S:
                write_json(remote.staging / DONE_FILE, frontier.record(), indent=None)
                remote.publish([DONE_FILE])
                frontier.saved = time.monotonic()

        totals, n, skipped = export_locations(index, remote.staging / INDEX_FILE, write_location, workers, progress,
                                              finished=finished, key=lambda i: f"{i:06d}", folders=scene_folders,
                                              task=lambda i, loc: (i, loc, out, settings), on_done=checkpoint)
        totals = [a + b for a, b in zip(totals, before)]
        checkpoint()
        write_json(remote.staging / LAYOUT_FILE, {**layout, "complete": True, "counts": _counts(totals, n)})
        remote.publish([INDEX_FILE, LAYOUT_FILE])  # the layout's record last: complete once it says so
    return totals, n, skipped


#: seconds between two publications of the first location not finished yet (``done.json``)
CHECKPOINT_S = 30.0
DONE_FILE = "done.json"


class _Frontier:
    """The first location ``below`` which every location is finished (locations finish out of order),
    with those locations' (scenes, files, bytes): a resume skips them without listing them."""

    def __init__(self, below: int = 0, counts=(0, 0, 0)):
        self.below, self.counts, self.pending, self.saved = below, list(counts), {}, time.monotonic()

    @classmethod
    def load(cls, data: bytes | None) -> "_Frontier":
        if not data:
            return cls()
        try:
            record = json.loads(data)
            return cls(int(record["below"]), [int(c) for c in record["counts"]])
        except (ValueError, KeyError, TypeError):  # unreadable: list everything, as without it
            log.warning("ignoring an unreadable %s: the whole layout is listed instead", DONE_FILE)
            return cls()

    def done(self, i: int, counts) -> None:
        if i < self.below:
            return
        self.pending[i] = counts
        while self.below in self.pending:
            self.counts = [a + b for a, b in zip(self.counts, self.pending.pop(self.below))]
            self.below += 1

    def record(self) -> dict:
        return {"below": self.below, "counts": self.counts}


def export_locations(index: CatalogIndex, index_csv: Path, write, workers: int, progress: jobs.ProgressFn | None, *,
                     finished, key, folders, task, on_done=None) -> tuple[list[int], int, int]:
    """The loop of the folder layouts (SeCo, SSL4EO-S12): every location ``i`` not finished yet
    (``finished(i, location)``: its (scenes, files, bytes) when its folder is there, else None) goes
    to ``write(*task(i, location))`` on the pool (which returns its (scenes, files, bytes));
    ``index_csv`` lists every patch (``key(i)``, its folder from ``folders(location)``) in catalog
    order; ``on_done(i, counts)``, when given, hears of every location finished or found finished.
    Returns the totals, the number of locations and how many were already there."""
    totals = [0, 0, 0]
    done = skipped = n = 0
    total = index.n_locations

    def finish(counts) -> None:
        nonlocal done
        for k, v in enumerate(counts):
            totals[k] += v
        done += 1
        if progress:
            progress(jobs.Progress(done, total, "location", {"kept": skipped}))

    def todo(rows):
        nonlocal n, skipped
        for i, loc in enumerate(index.locations()):
            n = i + 1
            for p, folder in zip(loc.patches, folders(loc)):
                rows.writerow([key(i), p.location, p.season, p.item_id, p.scene_id, folder])
            counts = finished(i, loc)
            if counts is not None:
                skipped += 1
                finish(counts)
                if on_done:
                    on_done(i, counts)
            else:
                yield (write, i, *task(i, loc))

    with atomic_file(index_csv, "w", encoding="utf-8") as f:
        rows = csv.writer(f, lineterminator="\r\n")
        rows.writerow(["index", "location", "season", "item_id", "scene_id", "folder"])
        with jobs.Pool(jobs.cap_workers(workers, "process", max(1, total)), kind="process") as pool:
            for t, counts in jobs.run(pool, _indexed, todo(rows)):
                finish(counts)
                if on_done:
                    on_done(t[1], counts)
    return totals, n, skipped


def _indexed(write, i: int, *args):
    """``write(*args)`` on a worker (``i``, the location's number, travels with the task)."""
    return write(*args)
