"""The ASGI application of ``seco-data catalog serve`` (starlette requests and responses). Routes::

    /                 302 -> /viewer/
    /viewer/<path>    the viewer pages (seco_data.serve.viewer.Site)
    /api, /api/...    the STAC API over items.parquet (seco_data.serve.api.app)
    /<path>           a file of the allow-list (seco_data.serve.files): catalog JSON, items.parquet,
                      GeoTIFFs (byte ranges, ETag, conditional requests) and quicklooks

A catalog on object storage (seco_data.serve.remote) is served the same way: the root files from a
local mirror, the data files streamed from the store (a byte range: one ranged request).

Read-only: GET, HEAD and OPTIONS (and POST on /api/search); anything else is a 405. Every response
carries CORS headers (STAC Browser, QGIS and pystac-client read from other origins), errors are small
JSON bodies. Request bodies are bounded (:data:`MAX_BODY`; the JSON's nesting is checked before it is
parsed, :func:`seco_data.serve.api.params.parse_json_body`). Blocking work runs on a bounded set of
threads (``workers``), so no number of connections makes more threads.
"""

from __future__ import annotations

import email.utils
import functools
import json
import logging
import os
import threading
from pathlib import Path

import anyio
from starlette.requests import Request
from starlette.responses import Response

from ..errors import SecoError
from .files import Forbidden, allowed, content_type, parse_range, resolve, safe_segments

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
#: largest request body (POST /api/search); larger is a 413
MAX_BODY = 1 << 20
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Content-Range, Content-Length, ETag, Accept-Ranges, Last-Modified",
    "X-Content-Type-Options": "nosniff",
}
PREFLIGHT = {
    "Access-Control-Allow-Methods": "GET, HEAD, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Range, If-None-Match, If-Modified-Since, If-Range, Accept",
    "Access-Control-Max-Age": "86400",
}
_PHRASES = {400: "BadRequest", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
            413: "PayloadTooLarge", 416: "RangeNotSatisfiable", 500: "InternalServerError", 502: "BadGateway"}


def json_response(status: int, obj, headers: dict | None = None, media_type: str = "application/json") -> Response:
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(body, status, headers=headers, media_type=media_type)


def error(status: int, description: str, headers: dict | None = None) -> Response:
    return json_response(status, {"code": _PHRASES.get(status, str(status)), "description": description}, headers)


def _open_at(path: Path, first: int, length: int):
    f = open(path, "rb")
    f.seek(first)
    return f


class FileResponse(Response):
    """Bytes ``first .. first + length - 1`` of a file, read a chunk at a time on the app's threads
    from ``opener(first, length)`` (a reader at ``first``: a local file, or a ranged request to
    object storage)."""

    def __init__(self, opener, status: int, headers: dict, first: int, length: int, limiter, name: str = ""):
        super().__init__(None, status, headers=headers)
        self.opener, self.first, self.length, self.limiter, self.name = opener, first, length, limiter, name

    async def __call__(self, scope, receive, send):
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if scope["method"] == "HEAD" or not self.length:
            await send({"type": "http.response.body", "body": b""})
            return
        f = await anyio.to_thread.run_sync(self.opener, self.first, self.length, limiter=self.limiter)
        try:
            left = self.length
            while left > 0:
                chunk = await anyio.to_thread.run_sync(f.read, min(CHUNK, left), limiter=self.limiter)
                if not chunk:  # the file shrank while we sent it: the client sees a short body
                    break
                left -= len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": left > 0})
            if left > 0:
                raise OSError(f"{self.name} shrank while it was sent")
        finally:
            f.close()


class CatalogApp:
    """The ASGI app over the catalog in ``root`` (resolved); ``base_url`` prefixes every link.

    ``remote``: a catalog on object storage (:class:`.remote.RemoteCatalog`); ``root`` is then its
    local mirror of the root files, and the data files come from the store."""

    def __init__(self, root: Path, base_url: str, workers: int = 16, remote=None):
        self.root = root
        self.remote = remote
        self.base = base_url.rstrip("/")
        self.limiter = anyio.CapacityLimiter(workers)
        self._viewer = None
        self._stac = None
        self._lock = threading.Lock()

    def close(self) -> None:
        pass

    # -- the parts, built on first use -----------------------------------------------------------
    def viewer(self):
        """The viewer site, built once; None when the viewer module is not available."""
        with self._lock:
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
        with self._lock:
            if self._stac is None:
                from .api.app import StacApi

                self._stac = StacApi(self.root)
            return self._stac

    # -- ASGI --------------------------------------------------------------------------------------
    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":  # lifespan is off, websockets are not served
            return
        request = Request(scope, receive)
        try:
            response = await self.dispatch(request)
        except Exception:  # noqa: BLE001 - one bad request must not take the server down
            log.exception("error answering %s %s", scope.get("method"), scope.get("path"))
            response = error(500, "internal server error")
        response.headers.update(CORS)
        await response(scope, receive, send)

    async def run(self, fn, *args):
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.limiter)

    async def dispatch(self, request: Request) -> Response:
        method = request.method
        raw = request.scope.get("raw_path", b"").decode("latin-1")
        query = request.scope.get("query_string", b"").decode("latin-1")
        if not raw.startswith("/"):
            return error(400, "the request target must be a path")
        try:
            segs = safe_segments(raw)
        except Forbidden:
            log.warning("refused %r: path outside the catalog folder", raw)
            return error(403, "path not allowed")
        search = segs[:2] == ["api", "search"] and len(segs) == 2
        if method == "OPTIONS":
            return Response(None, 204, headers=PREFLIGHT)
        if self.remote is not None and (len(segs) == 1 or segs[:1] in (["api"], ["viewer"])):
            await self.run(self.remote.refresh)  # the mirrored root files, when they changed on the store
        if method == "POST" and search:
            body = await self._body(request)
            if isinstance(body, Response):
                return body
            return await self._api(request, segs[1:], query, body)
        if method not in ("GET", "HEAD"):
            allow = "GET, HEAD, POST, OPTIONS" if search else "GET, HEAD, OPTIONS"
            headers = {"Allow": allow}
            if _has_body(request):
                headers["Connection"] = "close"  # its body is not read
            return error(405, f"{method} is not allowed: this server is read-only", headers)
        if not segs:
            return Response(None, 302, headers={"Location": "/viewer/"})
        if segs[0] == "viewer":
            if len(segs) == 1 and not raw.endswith("/"):
                return Response(None, 301, headers={"Location": "/viewer/"})
            return await self._viewer_page(segs[1:])
        if segs[0] == "api":
            return await self._api(request, segs[1:], query, b"")
        return await self.run(self._file, request, segs)

    async def _body(self, request: Request) -> bytes | Response:
        """The request body, at most :data:`MAX_BODY` bytes (a 413 beyond, closing the connection)."""
        too_large = error(413, f"the request body exceeds {MAX_BODY} bytes", {"Connection": "close"})
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or len(declared) > 12 or int(declared) > MAX_BODY):
            return too_large if declared.isdigit() else error(400, "bad Content-Length", {"Connection": "close"})
        parts, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                return too_large
            parts.append(chunk)
        return b"".join(parts)

    async def _viewer_page(self, segs: list[str]) -> Response:
        def page():
            site = self.viewer()
            if site is None or any(s.startswith(".") for s in segs):
                return None
            return site.get("/".join(segs))

        found = await self.run(page)
        if found is None:
            return error(404, "no such page")
        body, ctype = found
        return Response(body, 200, headers={"Cache-Control": "no-cache"}, media_type=ctype)

    async def _api(self, request: Request, segs: list[str], query: str, body: bytes) -> Response:
        url = self.base + request.scope.get("raw_path", b"").decode("latin-1") + (f"?{query}" if query else "")
        status, obj, ctype, headers = await self.run(
            lambda: self.api().handle(request.method, segs, query, body, self.base, url))
        if isinstance(obj, (bytes, str)):
            return Response(obj, status, headers=headers, media_type=ctype)
        return json_response(status, obj, headers, ctype)

    def _file(self, request: Request, segs: list[str]) -> Response:
        if self.remote is not None and len(segs) > 1:
            return self._stored_file(request, segs)
        path = resolve(self.root, segs)
        if path is None:
            return error(404, "not found")
        st = os.stat(path)
        return self._send(request, st.st_size, f'"{st.st_mtime_ns:x}-{st.st_size:x}"', st.st_mtime, content_type(path),
                          functools.partial(_open_at, path), str(path))

    def _stored_file(self, request: Request, segs: list[str]) -> Response:
        """A data file of a catalog on object storage (the same allow-list), streamed from the store."""
        if not allowed(segs):
            return error(404, "not found")
        rel = "/".join(segs)
        try:
            meta = self.remote.stat(rel)
        except SecoError as e:
            log.warning("object storage did not answer for %s: %s", rel, e.one_line())
            return error(502, "the catalog's object storage did not answer; retry")
        if meta is None:
            return error(404, "not found")
        size = int(meta["size"])
        when = meta.get("last_modified")
        mtime = when.timestamp() if when is not None else 0.0
        tag = meta.get("e_tag")
        etag = (tag if tag.startswith(('"', 'W/"')) else f'"{tag}"') if tag else f'"{int(mtime * 1e9):x}-{size:x}"'
        return self._send(request, size, etag, mtime, content_type(Path(rel)),
                          functools.partial(_open_stored, self.remote, rel), f"{self.remote.url}/{rel}")

    def _send(self, request: Request, size: int, etag: str, mtime: float, ctype: str, opener, name: str) -> Response:
        """A file's answer: 304, 416, the whole file or one byte range of it."""
        modified = email.utils.formatdate(mtime, usegmt=True)
        common = {"ETag": etag, "Last-Modified": modified, "Accept-Ranges": "bytes", "Cache-Control": "no-cache"}
        if _not_modified(request, etag, mtime):
            return Response(None, 304, headers=common)
        first, last, code = 0, size - 1, 200
        rng = request.headers.get("range")
        if_range = request.headers.get("if-range")
        if rng and (not if_range or if_range in (etag, modified)):
            r = parse_range(rng, size)
            if r == "unsatisfiable":
                return error(416, f"file has {size} bytes", {"Content-Range": f"bytes */{size}", **common})
            if r is not None:
                (first, last), code = r, 206
        length = last - first + 1 if size else 0
        headers = {**common, "Content-Type": ctype, "Content-Length": str(length)}
        if code == 206:
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        return FileResponse(opener, code, headers, first, length, self.limiter, name)


def _open_stored(remote, rel: str, first: int, length: int):
    return remote.open_range(rel, first, length)


def _has_body(request: Request) -> bool:
    n = request.headers.get("content-length")
    return bool(request.headers.get("transfer-encoding")) or (n is not None and n != "0")


def _not_modified(request: Request, etag: str, mtime: float) -> bool:
    inm = request.headers.get("if-none-match")
    if inm is not None:
        return inm.strip() == "*" or etag in [t.strip() for t in inm.split(",")]
    ims = request.headers.get("if-modified-since")
    if ims:
        try:
            return int(mtime) <= email.utils.parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError, OverflowError):
            return False
    return False
