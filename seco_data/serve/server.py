"""``seco-data catalog serve``: the catalog's ASGI app (:mod:`.app`) behind uvicorn.

uvicorn (with its pure-Python h11 parser) and starlette replace the standard library's
``http.server``, which listened with a backlog of 5, ran one unbounded thread per connection and
parsed requests loosely. Here:

- the listening socket is bound here (errors are one-line :class:`UsageError`\\ s) with a backlog of
  :data:`BACKLOG`; uvicorn answers 503 beyond :data:`MAX_CONNECTIONS` open connections and closes
  idle keep-alive connections after :data:`KEEP_ALIVE_S`;
- the blocking work (file reads, searches, viewer pages) runs on at most :data:`WORKERS` threads
  (:class:`.app.CatalogApp`), whatever the number of connections;
- h11 refuses malformed requests (a ``Content-Length`` that is no number, bad header lines, a head
  over :data:`MAX_HEAD` bytes) with a 400 before the app sees them;
- links are built from the configured address (``base_url``, else the address listened on), never
  from the request's ``Host`` header; ``X-Forwarded-*`` headers are ignored.

:func:`make_server` gives a :class:`CatalogServer` (``serve_forever`` in the calling thread, as the
CLI does; ``shutdown`` from another), :func:`start_server` one running in a daemon thread (tests,
screenshots, benchmarks).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

from ..catalog.layout import CATALOG, COLLECTION, INDEX
from ..errors import CatalogError, UsageError
from ..storage import is_url
from .files import Forbidden, parse_range, safe_segments  # noqa: F401 - re-exported (tests, callers)

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
#: pending connections the kernel queues before accept (http.server had 5: 93 of 400 requests from
#: 200 concurrent clients were refused)
BACKLOG = 1024
#: open connections at once; more are answered 503 (uvicorn's ``limit_concurrency``)
MAX_CONNECTIONS = 1000
#: threads doing blocking work (file reads, searches, viewer pages) for all connections together
WORKERS = 16
#: seconds an idle keep-alive connection is kept
KEEP_ALIVE_S = 15
#: largest request line + headers (h11): a GET search with a GeoJSON ``intersects`` fits
MAX_HEAD = 64 * 1024
#: seconds given to requests in flight at shutdown
GRACEFUL_S = 5


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _listen(host: str, port: int) -> socket.socket:
    """A bound, listening socket, or :class:`UsageError` naming the address."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}",
                         hint="check --host (e.g. 127.0.0.1) and --port") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as e:
        sock.close()
        if e.errno in (errno.EADDRINUSE, 48, 10048):  # Linux, macOS, Windows
            raise UsageError(f"port {port} on {host} is already in use",
                             hint="pass another --port, or --port 0 for any free one") from None
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}",
                         hint="check --host (e.g. 127.0.0.1) and --port") from None
    sock.setblocking(False)
    return sock


def _base_url(sock: socket.socket, base_url: str | None) -> str:
    if base_url:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise UsageError(f"--base-url {base_url!r} is not an http(s) URL",
                             hint="e.g. https://example.org/catalog (the address clients reach this server at)")
        return base_url.rstrip("/")
    host, port = sock.getsockname()[:2]
    shown = "127.0.0.1" if host == "0.0.0.0" else ("::1" if host == "::" else host)
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


class CatalogServer:
    """uvicorn serving :class:`.app.CatalogApp` on a socket bound at construction.

    ``url``: the base URL every link is built from (no trailing slash).
    """

    def __init__(self, root: Path, sock: socket.socket, base_url: str | None = None, remote=None):
        import uvicorn

        from .app import CatalogApp

        self.root = root
        self.socket = sock
        self.server_address = sock.getsockname()
        self.url = _base_url(sock, base_url)
        self.app = CatalogApp(root, self.url, workers=WORKERS, remote=remote)
        config = uvicorn.Config(
            self.app, http="h11", ws="none", lifespan="off", interface="asgi3", loop="asyncio",
            log_config=None, access_log=False, server_header=False, proxy_headers=False,
            backlog=BACKLOG, limit_concurrency=MAX_CONNECTIONS, timeout_keep_alive=KEEP_ALIVE_S,
            timeout_graceful_shutdown=GRACEFUL_S, h11_max_incomplete_event_size=MAX_HEAD,
        )
        self._server = uvicorn.Server(config)
        self._stopped = threading.Event()
        self._stopped.set()

    @property
    def server_port(self) -> int:
        return self.server_address[1]

    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown` (from another thread) or Ctrl-C (in the main thread, where it
        raises ``KeyboardInterrupt`` once the requests in flight are answered)."""
        self._stopped.clear()
        try:
            asyncio.run(self._server.serve(sockets=[self.socket]))
        finally:
            self._stopped.set()

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop serving and wait until :meth:`serve_forever` has returned."""
        self._server.should_exit = True
        self._stopped.wait(timeout)

    def server_close(self) -> None:
        self.socket.close()
        self.app.close()


def make_server(root: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                base_url: str | None = None) -> CatalogServer:
    """A (not yet serving) :class:`CatalogServer` for the catalog in ``root``, listening already.

    ``root``: a folder, or a catalog on object storage (``s3://bucket/prefix``, :mod:`.remote`: its
    root files are fetched into a local mirror first). ``base_url``: the address clients reach it at
    (behind a proxy, or on another name); default ``http://<host>:<port>``. Raises
    :class:`CatalogError` when ``root`` holds no catalog and :class:`UsageError` when the address
    cannot be bound (port in use, unknown host).
    """
    remote = None
    if is_url(str(root)):
        from .remote import RemoteCatalog

        if str(root).startswith(("http://", "https://")):
            raise UsageError(f"{root}: serve a catalog on object storage (s3://, gs://, az://) or in a folder",
                             hint="an http(s) catalog is served already: point clients at it")
        remote = RemoteCatalog(str(root))
        root = remote.folder
    root = Path(root)
    if not (root / CATALOG).is_file() or not (root / COLLECTION).is_file():
        raise CatalogError(f"{root} is not a seco catalog (no {CATALOG} or {COLLECTION})",
                           hint="point at the --out folder of `seco-data sample` or `seco-data import`")
    if not (root / INDEX).is_file():
        raise CatalogError(f"{root} has no {INDEX} index",
                           hint="restore it with `seco-data catalog rebuild`")
    sock = _listen(host, port)
    try:
        return CatalogServer(root.resolve(), sock, base_url, remote=remote)
    except BaseException:
        sock.close()
        raise


def start_server(root: str | Path, host: str = DEFAULT_HOST, port: int = 0, *,
                 base_url: str | None = None) -> tuple[CatalogServer, str]:
    """Start a server in a daemon thread; return ``(server, url)``. Stop it with ``server.shutdown()``
    then ``server.server_close()``."""
    server = make_server(root, host, port, base_url=base_url)
    started = threading.Event()
    server._stopped.clear()

    def run():
        try:
            asyncio.run(_serve(server, started))
        finally:
            server._stopped.set()
            started.set()

    threading.Thread(target=run, name=f"seco-serve-{server.url}", daemon=True).start()
    started.wait(30)
    return server, server.url


async def _serve(server: CatalogServer, started: threading.Event) -> None:
    async def notify():
        while not server._server.started and not server._server.should_exit:
            await asyncio.sleep(0.01)
        started.set()

    waiter = asyncio.ensure_future(notify())
    try:
        await server._server.serve(sockets=[server.socket])
    finally:
        waiter.cancel()
