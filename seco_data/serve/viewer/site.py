"""The viewer as a set of files: served from memory (:class:`Site`) or written out (:func:`build_site`).

Pages are static HTML/CSS/JS from ``static/`` (vanilla JavaScript, nothing fetched from elsewhere);
the data are JavaScript files under ``data/`` that hand one JSON payload each to the page
(``secoData("map", {...})``): ``meta.js``, ``map.js`` and ``patches.js`` (packed typed arrays,
:mod:`.pack`) and ``loc/<k>.js`` (the details of 128 locations). Script files rather than ``.json``
or binary files fetched by XHR: browsers refuse ``fetch`` from ``file://`` pages, and the static site
must work opened from disk as well as from any web server. Links to catalog files (thumbnails,
GeoTIFFs, item JSON) are ``asset_base`` + the href in ``items.parquet`` (relative to the catalog
root): ``/`` under ``seco-data catalog serve``, and the relative path from the site folder to the
catalog in a static site. Where a STAC API serves the catalog (``api_base``, e.g. ``/api/``), the
location page links each item there too: the compact layout has no item JSON files.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from importlib import resources
from pathlib import Path
from typing import Iterator

from ...catalog.layout import COLLECTION, INDEX
from ...errors import CatalogError, OutputError, UsageError
from ...outputs import replace_folder, write_atomic
from . import basemap
from .data import CatalogData

log = logging.getLogger(__name__)

MARKER = ".seco-viewer"  # marks a folder written by build_site (only such a folder is replaced)
LAND = "data/land.png"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
_MAX_CACHED_CHUNKS = 64


def _static_files() -> dict[str, bytes]:
    """The pages, styles and scripts shipped in ``seco_data/viewer/static``."""
    folder = resources.files(__package__).joinpath("static")
    return {f.name: f.read_bytes() for f in folder.iterdir()
            if f.is_file() and not f.name.startswith(".") and Path(f.name).suffix in _TYPES}


def _script(name: str, payload: dict) -> bytes:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return f'secoData("{name}",{body});\n'.encode("utf-8")


def _content_type(path: str) -> str:
    return _TYPES.get(os.path.splitext(path)[1], "application/octet-stream")


class Site:
    """The viewer pages of the catalog in ``root``, served from memory.

    ``site.get(path)`` answers a path relative to the viewer's mount point (``""`` is
    ``index.html``) with ``(body, content_type)``, or None for an unknown path. The data are read
    from ``items.parquet`` on first use and read again when the index or the collection changes.
    ``api_base``: where the catalog's STAC API answers (``/api/`` under ``seco-data catalog serve``),
    for links to the items; None for none.
    """

    def __init__(self, root: str | Path, asset_base: str = "/", api_base: str | None = None):
        self.root = Path(root)
        if not (self.root / COLLECTION).is_file() or not (self.root / INDEX).is_file():
            raise CatalogError(f"{self.root} is not a seco catalog (no {COLLECTION} or {INDEX})",
                               hint="point at the --out folder of `seco-data sample` or `seco-data import`")
        self.asset_base = asset_base if asset_base.endswith("/") else asset_base + "/"
        self.api_base = None if api_base is None else api_base.rstrip("/") + "/"
        self._static = _static_files()
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._data: CatalogData | None = None
        self._cache: dict[str, bytes] = {}

    # -- serving -------------------------------------------------------------------------------
    def get(self, path: str) -> tuple[bytes, str] | None:
        path = path.split("?", 1)[0].split("#", 1)[0].lstrip("/")
        if path == "":
            path = "index.html"
        if path in self._static:
            return self._static[path], _content_type(path)
        if path == LAND:
            return basemap.land_png(), "image/png"
        if not path.startswith("data/") or ".." in path or "\\" in path:
            return None
        body = self._data_file(path[len("data/"):])
        return None if body is None else (body, _content_type(path))

    def _data_file(self, name: str) -> bytes | None:
        with self._lock:
            data = self._current()
            if name in self._cache:
                return self._cache[name]
            if name == "meta.js":
                body = _script("meta", data.meta(self.asset_base, self.api_base))
            elif name == "map.js":
                body = _script("map", data.map())
            elif name == "patches.js":
                body = _script("patches", data.patches())
            elif name.startswith("loc/") and name.endswith(".js") and name[4:-3].isdigit():
                chunk = data.chunk(int(name[4:-3]))
                if chunk is None:
                    return None
                body = _script(f"loc/{int(name[4:-3])}", chunk)
                if sum(k.startswith("loc/") for k in self._cache) >= _MAX_CACHED_CHUNKS:
                    for k in [k for k in self._cache if k.startswith("loc/")][: _MAX_CACHED_CHUNKS // 2]:
                        del self._cache[k]
            else:
                return None
            self._cache[name] = body
            return body

    def _current(self) -> CatalogData:
        """The catalog's data, read again when items.parquet or collection.json changed (called locked)."""
        stamp = tuple((st.st_mtime_ns, st.st_size) for st in
                      (os.stat(self.root / INDEX), os.stat(self.root / COLLECTION)))
        if self._data is None or stamp != self._stamp:
            if self._data is not None:
                log.info("the catalog in %s changed: reading its index again", self.root)
            self._data = CatalogData(self.root)
            self._stamp = stamp
            self._cache = {}
        return self._data

    # -- every file ----------------------------------------------------------------------------
    def files(self) -> Iterator[tuple[str, bytes]]:
        """Every file of the site as ``(relative path, bytes)``: pages, basemap, data, all chunks."""
        yield from sorted(self._static.items())
        yield LAND, basemap.land_png()
        with self._lock:
            data = self._current()
        yield "data/meta.js", _script("meta", data.meta(self.asset_base, self.api_base))
        yield "data/map.js", _script("map", data.map())
        yield "data/patches.js", _script("patches", data.patches())
        for k in data.chunk_ids():
            yield f"data/loc/{k}.js", _script(f"loc/{k}", data.chunk(k))


def build_site(root: str | Path, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write the viewer of the catalog in ``root`` as a static site in ``out``; return ``out``.

    The site links to the catalog's files by relative paths, so it works opened from disk or from
    any static web server as long as the catalog stays where it is relative to the site. Written to
    a temporary folder, then renamed into place; an existing ``out`` is replaced only with
    ``overwrite`` and only if it is a site written here before.
    """
    root, out = Path(root).resolve(), Path(out).resolve()
    if out == root or root.is_relative_to(out):
        raise UsageError(f"--out {out} would hold the catalog {root} itself",
                         hint="pick a folder outside the catalog, e.g. site/")
    if out.exists():
        if not overwrite:
            raise OutputError(f"{out} already exists", hint="pass --overwrite to replace it, or pick another --out")
        if not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file()):
            raise OutputError(f"{out} exists and is not a site written by `seco-data catalog html`",
                              hint="refusing to delete it: pick another --out")
    site = Site(root, asset_base=os.path.relpath(root, out).replace(os.sep, "/") + "/")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        n = 0
        for rel, body in site.files():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, body)
            n += 1
        write_atomic(tmp / MARKER, f"seco viewer of {root}\n")
        replace_folder(tmp, out)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and not isinstance(e, OutputError):
            raise OutputError(f"cannot write the site to {out}: {e}",
                              hint="check the folder's permissions and free space") from None
        raise
    log.info("wrote %d files of the viewer of %s to %s", n, root, out)
    return out
