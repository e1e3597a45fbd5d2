"""A local, read-only HTTP server for one catalog: the viewer, the static STAC tree and a STAC API.

``seco-data catalog serve ROOT`` runs :func:`make_server`. Routes::

    /                 302 -> /viewer/
    /viewer/<path>    the viewer pages (seco_data.serve.viewer.Site)
    /api, /api/...    a minimal STAC API backed by items.parquet (seco_data.serve.api.app)
    /<path>           a file under ROOT: catalog.json, items, GeoTIFFs (Range requests), items.parquet

Safety: binds 127.0.0.1 by default; only GET/HEAD/OPTIONS (and POST on /api/search); no path
outside ROOT is ever served (``..`` in any encoding, backslashes, NUL, symlinks leading out), nor
dot-files (locks, partial writes), nor directory listings. Every response carries CORS headers so
STAC Browser, QGIS and pystac-client can read it from another origin.
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import logging
import re
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

from ..catalog.layout import CATALOG, COLLECTION, INDEX
from ..errors import CatalogError, UsageError

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
CHUNK = 256 * 1024

CONTENT_TYPES = {
    ".json": "application/json",
    ".geojson": "application/geo+json",
    ".tif": "image/tiff; application=geotiff",
    ".tiff": "image/tiff; application=geotiff",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".parquet": "application/vnd.apache.parquet",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".yaml": "application/yaml",
    ".csv": "text/csv; charset=utf-8",
    ".svg": "image/svg+xml",
}

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Content-Range, Content-Length, ETag, Accept-Ranges, Last-Modified",
}
PREFLIGHT = {
    "Access-Control-Allow-Methods": "GET, HEAD, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Range, If-None-Match, If-Modified-Since, If-Range, Accept",
    "Access-Control-Max-Age": "86400",
}
_RANGE = re.compile(r"^bytes=\s*(\d*)\s*-\s*(\d*)\s*$")
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")


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
        dec = unquote(seg, errors="strict")
        if (dec in (".", "..") or "/" in dec or "\\" in dec or "%" in dec
                or any(ord(c) < 32 or ord(c) == 127 for c in dec)):
            raise Forbidden(raw_path)
        out.append(dec)
    return out


def resolve(root: Path, segments: list[str]) -> Path | None:
    """The regular file ``root/segments`` if it exists, is no dot-file, and (symlinks resolved)
    lies inside ``root``; else None. ``root`` must be resolved already."""
    if not segments or any(s.startswith(".") for s in segments):
        return None
    try:
        path = root.joinpath(*segments).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):  # missing, symlink loop, NUL
        return None
    if not path.is_relative_to(root):
        log.warning("refused %s: resolves outside the catalog folder", "/".join(segments))
        return None
    return path if path.is_file() else None


def content_type(path: Path) -> str:
    return CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")


def parse_range(header: str, size: int) -> tuple[int, int] | None | str:
    """``(first, last)`` (inclusive) of a single byte range; None to ignore the header (malformed
    or several ranges: the whole file is sent); ``"unsatisfiable"`` for a 416."""
    m = _RANGE.match(header or "")
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if not first:  # suffix range: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - n), size - 1
    a = int(first)
    b = int(last) if last else size - 1
    if last and b < a:
        return None
    if a >= size:
        return "unsatisfiable"
    return a, min(b, size - 1)


class CatalogServer(ThreadingHTTPServer):
    """A threading HTTP server over one catalog folder; ``url`` is its base URL (no trailing slash)."""

    daemon_threads = True

    def __init__(self, root: Path, address: tuple[str, int]):
        self.root = root
        self._viewer = None
        self._viewer_lock = threading.Lock()
        self._api = None
        self._api_lock = threading.Lock()
        super().__init__(address, Handler)
        host, port = self.server_address[:2]
        shown = "127.0.0.1" if host == "0.0.0.0" else ("::1" if host == "::" else host)
        self.url = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"

    def viewer(self):
        """The viewer site, built once; None when the viewer module is not available."""
        with self._viewer_lock:
            if self._viewer is None:
                try:
                    from .viewer import Site
                except ImportError as e:
                    log.debug("viewer unavailable: %s", e)
                    return None
                self._viewer = Site(self.root, asset_base="/", api_base="/api/")
            return self._viewer

    def api(self):
        """The STAC API over items.parquet, built once."""
        with self._api_lock:
            if self._api is None:
                from .api.app import StacApi

                self._api = StacApi(self.root)
            return self._api


def make_server(root: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> CatalogServer:
    """A (not yet serving) :class:`CatalogServer` for the catalog in ``root``.

    Raises :class:`CatalogError` when ``root`` holds no catalog and :class:`UsageError` when the
    address cannot be bound (port in use, unknown host).
    """
    root = Path(root)
    if not (root / CATALOG).is_file() or not (root / COLLECTION).is_file():
        raise CatalogError(f"{root} is not a seco catalog (no {CATALOG} or {COLLECTION})",
                           hint="point at the --out folder of `seco-data sample` or `seco-data import`")
    if not (root / INDEX).is_file():
        raise CatalogError(f"{root} has no {INDEX} index",
                           hint="restore it with `seco-data catalog rebuild`")
    root = root.resolve()
    cls = CatalogServer
    if ":" in host:
        cls = type("CatalogServer6", (CatalogServer,), {"address_family": socket.AF_INET6})
    try:
        return cls(root, (host, port))
    except OSError as e:
        if getattr(e, "errno", None) in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            raise UsageError(f"port {port} on {host} is already in use",
                             hint="pass another --port, or --port 0 for any free one") from None
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}",
                         hint="check --host (e.g. 127.0.0.1) and --port") from None


def start_server(root: str | Path, host: str = DEFAULT_HOST, port: int = 0) -> tuple[CatalogServer, str]:
    """Start a server in a daemon thread; return ``(server, url)``. Stop it with ``server.shutdown()``
    then ``server.server_close()``."""
    server = make_server(root, host, port)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=f"seco-serve-{server.url}",
                     daemon=True).start()
    return server, server.url


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Handler(BaseHTTPRequestHandler):
    server: CatalogServer
    protocol_version = "HTTP/1.1"
    server_version = "seco"
    timeout = 120  # seconds an idle keep-alive connection holds its thread

    # ------------------------------------------------------------------ plumbing
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        log.debug("%s %s", self.address_string(), format % args)

    def end_headers(self):
        for k, v in CORS.items():
            self.send_header(k, v)
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()

    def send_error(self, code, message=None, explain=None):
        """Errors as small JSON bodies (the stdlib's are HTML), with CORS like every response."""
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = ""
        self._send_json(code, {"code": phrase or str(code), "description": message or phrase})

    def __getattr__(self, name):
        # any method without a do_X (PUT, DELETE, PATCH, ...) is a 405, not the stdlib's 501
        if name.startswith("do_"):
            return self._not_allowed
        raise AttributeError(name)

    def _not_allowed(self):
        self._discard_body()
        allow = "GET, HEAD, POST, OPTIONS" if self._route() == "search" else "GET, HEAD, OPTIONS"
        self._send_json(405, {"code": "MethodNotAllowed",
                              "description": f"{self.command} is not allowed: this server is read-only"},
                        {"Allow": allow})

    def _discard_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if 0 < n <= 1 << 20:
            self.rfile.read(n)
        elif n:
            self.close_connection = True

    def _send(self, code: int, body: bytes, ctype: str, headers: dict | None = None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, code: int, obj, headers: dict | None = None, ctype: str = "application/json"):
        self._send(code, json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode(), ctype, headers)

    def _split(self) -> tuple[str, str]:
        """(raw path, raw query) of the request target (origin-form or absolute-form)."""
        target = self.path.split("#", 1)[0]
        m = re.match(r"^https?://[^/]*", target)
        if m:
            target = target[m.end():] or "/"
        path, _, query = target.partition("?")
        return path, query

    def _route(self) -> str:
        path = self._split()[0]
        if path in ("/api/search", "/api/search/"):
            return "search"
        return "other"

    def base_url(self) -> str:
        """The URL the client used to reach us (Host header), for absolute links."""
        host = self.headers.get("Host", "")
        return f"http://{host}" if _HOST.match(host) else self.server.url

    # ------------------------------------------------------------------ methods
    def do_OPTIONS(self):
        self._discard_body()
        self.send_response(204)
        for k, v in PREFLIGHT.items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self):
        self.do_GET()

    def do_POST(self):
        if self._route() != "search":
            return self._not_allowed()
        self._dispatch()

    def do_GET(self):
        self._dispatch()

    def _dispatch(self):
        try:
            raw, query = self._split()
            if not raw.startswith("/"):
                return self.send_error(400, "the request target must be a path")
            try:
                segs = safe_segments(raw)
            except (Forbidden, UnicodeDecodeError):
                log.warning("refused %r: path outside the catalog folder", self.path)
                return self.send_error(403, "path not allowed")
            if not segs:
                self.send_response(302)
                self.send_header("Location", "/viewer/")
                self.send_header("Content-Length", "0")
                return self.end_headers()
            if segs[0] == "viewer":
                return self._viewer(raw, segs[1:])
            if segs[0] == "api":
                return self._api(segs[1:], query)
            return self._file(segs)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:  # noqa: BLE001 - one bad request must not kill the server
            log.exception("error answering %s %s", self.command, self.path)
            try:
                self.send_error(500, "internal server error")
            except OSError:
                self.close_connection = True

    # ------------------------------------------------------------------ routes
    def _viewer(self, raw: str, segs: list[str]):
        if not segs and not raw.endswith("/"):
            self.send_response(301)
            self.send_header("Location", "/viewer/")
            self.send_header("Content-Length", "0")
            return self.end_headers()
        site = self.server.viewer()
        if any(s.startswith(".") for s in segs):
            site = None
        page = site.get("/".join(segs)) if site is not None else None
        if page is None:
            return self.send_error(404, "no such page")
        body, ctype = page
        self._send(200, body, ctype, {"Cache-Control": "no-cache"})

    def _api(self, segs: list[str], query: str):
        body = b""
        if self.command == "POST":
            n = int(self.headers.get("Content-Length") or 0)
            if n > 1 << 20:
                self.close_connection = True
                return self.send_error(413, "request body too large")
            body = self.rfile.read(n) if n > 0 else b""
        status, obj, ctype, headers = self.server.api().handle(
            self.command, segs, query, body, self.base_url())
        self._send_json(status, obj, headers, ctype)

    def _file(self, segs: list[str]):
        path = resolve(self.server.root, segs)
        if path is None:
            return self.send_error(404, "not found")
        st = path.stat()
        size = st.st_size
        etag = f'"{st.st_mtime_ns:x}-{size:x}"'
        modified = email.utils.formatdate(st.st_mtime, usegmt=True)
        common = {"ETag": etag, "Last-Modified": modified, "Accept-Ranges": "bytes", "Cache-Control": "no-cache"}
        if self._not_modified(etag, st.st_mtime):
            self.send_response(304)
            for k, v in common.items():
                self.send_header(k, v)
            return self.end_headers()
        first, last, code = 0, size - 1, 200
        rng = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if rng and (not if_range or if_range in (etag, modified)):
            r = parse_range(rng, size)
            if r == "unsatisfiable":
                return self._send_json(416, {"code": "RangeNotSatisfiable", "description": f"file has {size} bytes"},
                                       {"Content-Range": f"bytes */{size}", **common})
            if r is not None:
                (first, last), code = r, 206
        length = last - first + 1 if size else 0
        self.send_response(code)
        self.send_header("Content-Type", content_type(path))
        self.send_header("Content-Length", str(length))
        if code == 206:
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        for k, v in common.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "HEAD" or not length:
            return
        with open(path, "rb") as f:
            f.seek(first)
            left = length
            while left > 0:
                chunk = f.read(min(CHUNK, left))
                if not chunk:  # file shrank while we sent it: the client sees a short body
                    self.close_connection = True
                    break
                self.wfile.write(chunk)
                left -= len(chunk)

    def _not_modified(self, etag: str, mtime: float) -> bool:
        inm = self.headers.get("If-None-Match")
        if inm is not None:
            return inm.strip() == "*" or etag in [t.strip() for t in inm.split(",")]
        ims = self.headers.get("If-Modified-Since")
        if ims:
            try:
                return int(mtime) <= email.utils.parsedate_to_datetime(ims).timestamp()
            except (TypeError, ValueError):
                return False
        return False
