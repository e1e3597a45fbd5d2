"""What ``seco-data catalog serve`` serves from the catalog folder, and how: path safety, the
allow-list of files, content types and byte ranges. Pure functions, no HTTP.

Served (the allow-list): ``catalog.json``, ``collection.json`` and ``items.parquet`` at the root, and
under the part folders the STAC JSON files (per-patch items and sub-catalogs), the GeoTIFFs and the
quicklooks. Never: the ledger, the recipe, dot-files and dot-folders (locks, state, partial writes),
any other file, directory listings, or anything a symlink leads to outside the folder.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from urllib.parse import unquote

from ..catalog.layout import CATALOG, COLLECTION, INDEX

log = logging.getLogger(__name__)

#: files served at the catalog root
ROOT_FILES = frozenset({CATALOG, COLLECTION, INDEX})
#: suffixes served below the root: STAC JSON (items, sub-catalogs), GeoTIFFs, quicklooks
DATA_SUFFIXES = frozenset({".json", ".tif", ".tiff", ".jpg", ".jpeg", ".png", ".webp"})

CONTENT_TYPES = {
    ".json": "application/json",
    ".tif": "image/tiff; application=geotiff",
    ".tiff": "image/tiff; application=geotiff",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".parquet": "application/vnd.apache.parquet",
}

#: digits of a byte position taken as a number; longer is "past any file" (Python refuses to parse
#: ints over 4,300 digits: a 500 before)
_MAX_DIGITS = 18
_RANGE = re.compile(r"^bytes=[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)[ \t]*$")
_BEYOND = 1 << 62


class Forbidden(Exception):
    """A request path that tries to leave the catalog folder (answered 403)."""


def safe_segments(raw_path: str) -> list[str]:
    """The decoded path segments of a request path, or :class:`Forbidden`.

    Rejects ``.``/``..`` segments (plain, percent-encoded or double-encoded), backslashes, NUL and
    control characters, and any ``%`` left after one decoding (double encoding). Empty segments
    (``//``) are dropped. Dot-files are not rejected here (they are a 404, see :func:`resolve`).
    """
    out = []
    for seg in raw_path.split("/"):
        if not seg:
            continue
        try:
            dec = unquote(seg, errors="strict")
        except UnicodeDecodeError:
            raise Forbidden(raw_path) from None
        if (dec in (".", "..") or "/" in dec or "\\" in dec or "%" in dec
                or any(ord(c) < 32 or ord(c) == 127 for c in dec)):
            raise Forbidden(raw_path)
        out.append(dec)
    return out


def allowed(segments: list[str]) -> bool:
    """Whether the allow-list admits this path (relative to the catalog root)."""
    if not segments or any(s.startswith(".") for s in segments):
        return False
    if len(segments) == 1:
        return segments[0] in ROOT_FILES
    return Path(segments[-1]).suffix.lower() in DATA_SUFFIXES


def resolve(root: Path, segments: list[str]) -> Path | None:
    """The regular file ``root/segments`` if the allow-list admits it, it exists and (symlinks
    resolved) lies inside ``root``; else None. ``root`` must be resolved already."""
    if not allowed(segments):
        return None
    try:
        path = root.joinpath(*segments).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):  # missing, symlink loop, NUL
        return None
    if not path.is_relative_to(root):
        log.warning("refused %s: resolves outside the catalog folder", "/".join(segments))
        return None
    if not allowed(list(path.relative_to(root).parts)):  # a symlink inside leading to the ledger
        return None
    return path if path.is_file() else None


def content_type(path: Path) -> str:
    return CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")


def _number(digits: str) -> int:
    return int(digits) if len(digits) <= _MAX_DIGITS else _BEYOND


def parse_range(header: str, size: int) -> tuple[int, int] | None | str:
    """``(first, last)`` (inclusive) of a single byte range; None to ignore the header (malformed
    or several ranges: the whole file is sent); ``"unsatisfiable"`` for a 416. Positions of any
    length are accepted: past the file's end is past it, however many digits."""
    m = _RANGE.match(header or "")
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if not first:  # suffix range: the last N bytes
        n = _number(last)
        if n == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - n), size - 1
    a = _number(first)
    b = _number(last) if last else size - 1
    if last and b < a:
        return None
    if a >= size:
        return "unsatisfiable"
    return a, min(b, size - 1)
