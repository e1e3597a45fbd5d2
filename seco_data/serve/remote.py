"""A catalog on object storage (``s3://bucket/prefix``, also ``gs://``, ``az://``), as ``catalog
serve`` reads it.

The root files the server reads whole (``catalog.json``, ``collection.json``, ``items.parquet``, and
the ledger's snapshot, from which the viewer draws the rejected candidates) are kept in a local
mirror (:func:`seco_data.storage.mirror_dir`): fetched at start, and again when one changed on the
store (its size, ETag or date; checked at most every ``refresh_s`` seconds, on a request). The STAC
API and the viewer read the mirror as they read a local catalog. Everything else the allow-list
admits (GeoTIFFs, quicklooks) is streamed from the store on request, a byte range as one ranged
request, so a viewer or GDAL reading a few tiles of a GeoTIFF moves only those bytes.

A store that stops answering leaves the mirror as it was: the server goes on answering from it,
and a data file's request gets a 502 the client may retry.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import BinaryIO

from ..catalog.layout import CATALOG, COLLECTION, INDEX, LEDGER
from ..errors import CatalogError, SecoError
from ..outputs import write_json
from ..storage import ObjectStore, mirror_dir, store_for

log = logging.getLogger(__name__)

#: the root files kept in the local mirror (the index first: the documents describe it)
MIRRORED = (INDEX, LEDGER, COLLECTION, CATALOG)
#: seconds between two checks of the mirrored files against the store
REFRESH_S = 10.0
#: what the mirror recorded of each file it holds (its stamp on the store)
RECORD = ".mirror.json"
#: data files whose size and ETag are remembered (for ``refresh_s``) between requests
STATS_KEPT = 4096


class RemoteCatalog:
    """The catalog at ``url``: its root files in the local folder :attr:`folder` (:meth:`refresh`),
    its data files from the store (:meth:`stat`, :meth:`open_range`)."""

    def __init__(self, url: str, *, folder: Path | None = None, refresh_s: float = REFRESH_S):
        self.url = url.rstrip("/")
        self.store: ObjectStore = store_for(self.url)
        self.folder = Path(folder) if folder is not None else mirror_dir(self.url)
        self.refresh_s = refresh_s
        self._lock = threading.Lock()  # one refresh at a time
        self._stats_lock = threading.Lock()
        self._checked = float("-inf")
        self._stats: OrderedDict[str, tuple[float, dict | None]] = OrderedDict()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.refresh(force=True)
        if not (self.folder / CATALOG).is_file() or not (self.folder / COLLECTION).is_file():
            raise CatalogError(f"{self.url} is not a seco catalog (no {CATALOG} or {COLLECTION})",
                               hint="point at the --out of `seco-data sample` or `seco-data import`")

    def refresh(self, force: bool = False) -> int:
        """Fetch the mirrored files that changed on the store (at most every ``refresh_s`` seconds,
        unless ``force``); return how many were fetched. Store errors are raised when ``force``, and
        logged otherwise (the mirror stays as it was)."""
        with self._lock:
            if not force and time.monotonic() - self._checked < self.refresh_s:
                return 0
            self._checked = time.monotonic()
            try:
                return self._refresh()
            except SecoError as e:
                if force:
                    raise
                log.warning("could not check %s for changes (serving what was fetched before): %s",
                            self.url, e.one_line())
                return 0

    def _refresh(self) -> int:
        path = self.folder / RECORD
        try:
            record = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            record = {}
        fetched = 0
        for name in MIRRORED:
            meta = self.store.head(name)
            local = self.folder / name
            if meta is None:
                local.unlink(missing_ok=True)
                record.pop(name, None)
                continue
            stamp = [int(meta["size"]), meta.get("e_tag"), str(meta.get("last_modified"))]
            if record.get(name) == stamp and local.is_file():
                continue
            if self.store.download(name, local):
                record[name] = stamp
                fetched += 1
                log.info("fetched %s/%s", self.url, name)
        write_json(path, record, indent=None)
        return fetched

    def stat(self, rel: str) -> dict | None:
        """``rel``'s size, ETag and date on the store (remembered ``refresh_s`` seconds), or None."""
        now = time.monotonic()
        with self._stats_lock:
            kept = self._stats.get(rel)
            if kept is not None and now - kept[0] < self.refresh_s:
                return kept[1]
        meta = self.store.head(rel)
        with self._stats_lock:
            self._stats[rel] = (now, meta)
            self._stats.move_to_end(rel)
            while len(self._stats) > STATS_KEPT:
                self._stats.popitem(last=False)
        return meta

    def open_range(self, rel: str, first: int, length: int) -> BinaryIO:
        """A reader of bytes ``first .. first + length - 1`` of ``rel`` (one ranged request)."""
        return self.store.read_range(rel, first, length)


__all__ = ["MIRRORED", "REFRESH_S", "RemoteCatalog"]
