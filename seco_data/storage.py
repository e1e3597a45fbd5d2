"""Where outputs live: a local folder, or object storage (``s3://``, ``gs://``, ``az://``; ``http(s)://``
read-only), behind one small interface, :class:`Store`.

Object storage goes through `obstore <https://developmentseed.org/obstore>`_ (Rust's
``object_store``): one dependency for S3, GCS, Azure and HTTP, with retries and backoff on 5xx,
timeouts and throttling built in, multipart uploads, range reads, and credentials and endpoint read
from the standard environment variables (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_ALLOW_HTTP`` for a plain-HTTP endpoint;
``GOOGLE_SERVICE_ACCOUNT`` / ``GOOGLE_APPLICATION_CREDENTIALS`` for ``gs://``), as the AWS and Google
tools read them. Nothing here stores or prints a credential. A request is retried up to
``SECO_STORAGE_RETRIES`` times (default 6, exponential backoff from 0.1 s to 15 s) and times out after
``SECO_STORAGE_TIMEOUT_S`` seconds (default 120).

An object is written whole in one request (or one multipart upload, completed last): readers never
see half an object, the object-storage counterpart of :mod:`seco_data.outputs`' atomic rename,
which the local store uses.

The commands keep their bookkeeping (the ledger, index parts, export plans, the lock) in a local
*staging* folder (:func:`staging_dir`), snapshotted to the output as they go, so a run resumes on
this machine from the staging folder and on another one from the snapshot.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import posixpath
import re
from pathlib import Path
from typing import BinaryIO, Iterator

from .errors import OutputError, SourceUnavailable, UsageError, is_disk_full

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
SCHEMES = ("s3", "gs", "az", "abfs", "http", "https", "memory")


def is_url(location) -> bool:
    """Whether ``location`` names object storage (or HTTP), not a local path."""
    if not isinstance(location, str):
        return False
    m = _SCHEME.match(location)
    return bool(m) and m.group(1).lower() != "file"


def join(location: str | Path, *parts: str) -> str | Path:
    """``location`` / parts, for a local path or a URL."""
    if is_url(location):
        return posixpath.join(str(location).rstrip("/"), *[p.strip("/") for p in parts if p])
    return Path(location).joinpath(*parts)


def _staging_base() -> Path:
    return Path(os.environ.get("SECO_STAGING") or Path(os.environ.get("SECO_CACHE_DIR")
                                                       or Path.home() / ".cache" / "seco") / "staging")


def _local_name(url: str) -> str:
    name = re.sub(r"[^A-Za-z0-9]+", "-", url.split("://", 1)[-1]).strip("-")[-60:]
    return f"{name}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def staging_dir(url: str) -> Path:
    """The local folder that keeps a remote output's bookkeeping (``SECO_STAGING`` or the cache)."""
    return _staging_base() / _local_name(url)


def mirror_dir(url: str) -> Path:
    """The local folder where ``catalog serve`` keeps its copy of a remote catalog's root files
    (beside the staging folders, never one of them: a run writing that catalog keeps its own)."""
    return _staging_base() / "serve" / _local_name(url)


class Store:
    """A root folder of files: ``rel`` paths are ``/``-separated, relative to it."""

    url: str
    is_local: bool

    def location(self, rel: str = "") -> str | Path:
        return join(self.url, rel) if rel else self.url

    # writing
    def put(self, rel: str, data: bytes) -> None: ...
    def put_many(self, folder: str, files: dict[str, bytes]) -> None: ...
    def upload(self, local: Path, rel: str) -> None: ...
    def delete(self, rels: list[str]) -> None: ...
    # reading
    def get(self, rel: str) -> bytes: ...
    def size(self, rel: str) -> int | None: ...
    def list(self, prefix: str = "") -> list[tuple[str, int]]: ...
    def walk(self, folder: str = "", *, after: str | None = None) -> list[tuple[str, int]]: ...
    def has_any(self) -> bool: ...
    def open(self, rel: str) -> BinaryIO: ...

    def download(self, rel: str, local: Path) -> bool:
        """Copy ``rel`` to the local file ``local`` (atomically); False when there is no such file."""
        from .outputs import write_atomic

        if self.size(rel) is None:
            return False
        local.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(local, self.get(rel))
        return True


class LocalStore(Store):
    is_local = True

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.url = str(self.root)

    def location(self, rel: str = "") -> Path:
        return self.root / rel if rel else self.root

    def put(self, rel: str, data: bytes) -> None:
        from .outputs import write_atomic

        (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.root / rel, data)

    def put_many(self, folder: str, files: dict[str, bytes]) -> None:
        from .outputs import write_many

        (self.root / folder).mkdir(parents=True, exist_ok=True)
        write_many(self.root / folder, files)

    def upload(self, local: Path, rel: str) -> None:
        from .outputs import commit

        commit(local, self.root / rel)

    def delete(self, rels: list[str]) -> None:
        for rel in rels:
            (self.root / rel).unlink(missing_ok=True)

    def get(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def size(self, rel: str) -> int | None:
        try:
            return (self.root / rel).stat().st_size
        except OSError:
            return None

    def list(self, prefix: str = "") -> list[tuple[str, int]]:
        folder, _, start = prefix.rpartition("/")
        base = self.root / folder
        if not base.is_dir():
            return []
        return sorted((f"{folder}/{e.name}" if folder else e.name, e.stat().st_size) for e in os.scandir(base)
                      if e.is_file() and e.name.startswith(start))

    def walk(self, folder: str = "", *, after: str | None = None) -> list[tuple[str, int]]:
        """Every file under ``folder`` (recursively), as (path relative to the root, size); with
        ``after``, only the paths that sort after it."""
        base = self.root / folder if folder else self.root
        found = ((p.relative_to(self.root).as_posix(), p) for p in base.rglob("*") if p.is_file())
        return sorted((rel, p.stat().st_size) for rel, p in found if after is None or rel > after)

    def has_any(self) -> bool:
        """Whether anything is stored here."""
        return self.root.is_dir() and next(self.root.iterdir(), None) is not None

    def open(self, rel: str) -> BinaryIO:
        return open(self.root / rel, "rb", buffering=1 << 20)


class ObjectStore(Store):
    """A prefix of a bucket (or an HTTP folder, read-only), through obstore."""

    is_local = False

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self._store = _obstore(self.url)

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FileNotFoundError:
            raise
        except Exception as e:  # noqa: BLE001 - obstore raises its own error types per service
            text = " ".join(str(e).split())[:300]
            # (status codes as whole numbers: a message's timings, "in 455.004013ms", hold "401" too)
            if "NotFound" in type(e).__name__ or "not found" in text.lower() or re.search(r"\b404\b", text):
                raise FileNotFoundError(f"{self.url}: {what}: {text}") from None
            if re.search(r"\b(401|403)\b|AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch", text):
                raise OutputError(f"{self.url} refused {what}: {text}",
                                  hint="check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the Google/Azure "
                                       "equivalents) and the bucket's permissions") from None
            raise SourceUnavailable(f"{self.url}: {what} failed: {text}",
                                    hint="object storage unreachable or overloaded (retried); rerun the same "
                                         "command to resume") from None

    def put(self, rel: str, data: bytes) -> None:
        import obstore

        self._call(f"writing {rel}", obstore.put, self._store, rel, data)

    def put_many(self, folder: str, files: dict[str, bytes]) -> None:
        # one object per file, each whole: a reader sees an object complete or not at all
        for name, data in files.items():
            self.put(f"{folder}/{name}" if folder else name, data)

    def upload(self, local: Path, rel: str) -> None:
        import obstore

        with open(local, "rb") as f:  # multipart above a few MB, completed last
            self._call(f"writing {rel}", obstore.put, self._store, rel, f)
        Path(local).unlink(missing_ok=True)

    def delete(self, rels: list[str]) -> None:
        import obstore

        if rels:
            self._call("deleting", obstore.delete, self._store, list(rels))

    def get(self, rel: str) -> bytes:
        import obstore

        return bytes(self._call(f"reading {rel}", lambda: obstore.get(self._store, rel).bytes()))

    def download(self, rel: str, local: Path) -> bool:
        """Copy ``rel`` to the local file ``local`` (atomically, streamed); False when there is no such object."""
        import shutil

        from .outputs import atomic_file

        try:
            reader = self.stream(rel)
        except FileNotFoundError:
            return False
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            with reader, atomic_file(local) as f:
                shutil.copyfileobj(reader, f, 4 << 20)
        except SourceUnavailable:
            raise
        except OSError as e:  # the body broke off (retries exhausted)
            if is_disk_full(e):
                raise
            raise SourceUnavailable(f"{self.url}: reading {rel} failed: {e}",
                                    hint="object storage unreachable or overloaded (retried); rerun the same "
                                         "command") from None
        return True

    def size(self, rel: str) -> int | None:
        import obstore

        try:
            return int(self._call(f"reading {rel}", obstore.head, self._store, rel)["size"])
        except FileNotFoundError:
            return None

    def list(self, prefix: str = "") -> list[tuple[str, int]]:
        import obstore

        folder, _, start = prefix.rpartition("/")
        out = []
        for batch in self._call("listing", lambda: list(obstore.list(self._store, folder or None))):
            for o in (batch if isinstance(batch, list) else [batch]):
                path = o["path"]
                if path.rpartition("/")[0] == folder and path.rpartition("/")[2].startswith(start):
                    out.append((path, int(o["size"])))
        return sorted(out)

    def walk(self, folder: str = "", *, after: str | None = None) -> list[tuple[str, int]]:
        """Every object under ``folder`` (recursively: one listing, paged), as (path, size); with
        ``after``, only the paths that sort after it (the listing starts there: S3's StartAfter)."""
        import obstore

        out = []
        for batch in self._call("listing", lambda: list(obstore.list(self._store, folder.strip("/") or None,
                                                                     offset=after))):
            for o in (batch if isinstance(batch, list) else [batch]):
                out.append((o["path"], int(o["size"])))
        return sorted(out)

    def has_any(self) -> bool:
        """Whether anything is stored under this prefix (the first page of a listing, one object long)."""
        import obstore

        return self._call("listing", lambda: bool(next(iter(obstore.list(self._store, None, chunk_size=1)), None)))

    def head(self, rel: str) -> dict | None:
        """``rel``'s size, ETag and modification time (``size``, ``e_tag``, ``last_modified``), or None
        when there is no such object."""
        import obstore

        try:
            return dict(self._call(f"reading {rel}", obstore.head, self._store, rel))
        except FileNotFoundError:
            return None

    def read_range(self, rel: str, first: int, length: int) -> BinaryIO:
        """A forward reader of bytes ``first .. first + length - 1`` of ``rel`` (one ranged request,
        read as it arrives)."""
        import obstore

        result = self._call(f"reading {rel}", obstore.get, self._store, rel,
                            options={"range": (first, first + length)})
        return io.BufferedReader(_ChunkReader(result.stream(min_chunk_size=256 << 10)), buffer_size=256 << 10)

    def open(self, rel: str) -> BinaryIO:
        """A seekable reader of ``rel`` (range requests, buffered): for Parquet footers and columns."""
        import obstore

        reader = self._call(f"reading {rel}", obstore.open_reader, self._store, rel, buffer_size=1 << 20)
        return io.BufferedReader(_SeekableReader(reader), buffer_size=1 << 20)

    def stream(self, rel: str) -> BinaryIO:
        """A forward-only reader of ``rel`` (for tar streams): chunks as they arrive."""
        import obstore

        result = self._call(f"reading {rel}", obstore.get, self._store, rel)
        return io.BufferedReader(_ChunkReader(result.stream(min_chunk_size=1 << 20)), buffer_size=1 << 20)


class _SeekableReader(io.RawIOBase):
    """obstore's reader as a standard raw file (bytes out, seek, tell)."""

    def __init__(self, reader):
        self._r = reader

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self._r.read(len(b))
        n = len(data)
        b[:n] = bytes(data)
        return n

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._r.seek(offset, whence)

    def tell(self) -> int:
        return self._r.tell()


class _ChunkReader(io.RawIOBase):
    def __init__(self, chunks: Iterator):
        self._chunks = iter(chunks)
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf:
            try:
                chunk = next(self._chunks, None)
            except Exception as e:  # noqa: BLE001 - obstore's errors (retries exhausted mid-body) as I/O errors
                raise OSError(" ".join(str(e).split())[:300]) from None
            if chunk is None:
                return 0
            self._buf = bytes(chunk)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


_RUNTIME = {"started": False}


def runtime_started() -> bool:
    """Whether this process has opened object storage (whose I/O runtime does not survive a fork)."""
    return _RUNTIME["started"]


def _obstore(url: str):
    _RUNTIME["started"] = True
    try:
        from obstore.store import from_url
    except ImportError:
        raise UsageError(f"{url}: object storage needs obstore", hint="pip install 'seco[cloud]'") from None
    scheme = url.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise UsageError(f"{url}: unknown storage scheme {scheme}://", hint=f"use one of {', '.join(SCHEMES)}")
    from datetime import timedelta

    timeout = float(os.environ.get("SECO_STORAGE_TIMEOUT_S", 120))
    retries = int(os.environ.get("SECO_STORAGE_RETRIES", 6))
    try:
        client = {"timeout": f"{timeout:g}s", "connect_timeout": f"{min(timeout, 10):g}s"}
        if os.environ.get("AWS_ALLOW_HTTP", "").lower() in ("1", "true", "yes"):  # (client options replace the env's)
            client["allow_http"] = True
        return from_url(url, client_options=client,
                        retry_config={"max_retries": retries, "retry_timeout": timedelta(seconds=max(60.0, 3 * timeout)),
                                      "backoff": {"init_backoff": timedelta(milliseconds=100),
                                                  "max_backoff": timedelta(seconds=15), "base": 2.0}})
    except Exception as e:  # noqa: BLE001 - a malformed URL or missing configuration
        raise UsageError(f"cannot open {url}: {' '.join(str(e).split())[:300]}",
                         hint="check the URL and the storage environment variables (AWS_ENDPOINT_URL ...)") from None


@functools.lru_cache(maxsize=32)
def _cached(url: str, _config: tuple) -> ObjectStore:
    return ObjectStore(url)


def _config() -> tuple:
    """The environment a store is configured from (a store is reused only while it is the same)."""
    return tuple(os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_REGION", "AWS_ALLOW_HTTP",
                                             "SECO_STORAGE_TIMEOUT_S", "SECO_STORAGE_RETRIES"))


def store_for(location: str | Path) -> Store:
    """The store of a root folder: local path or URL (object stores are reused within a process)."""
    if is_url(str(location)):
        return _cached(str(location).rstrip("/"), _config())
    return LocalStore(location)


def resolve(root: str | Path, href: str) -> str | Path:
    """The location of ``href`` (relative, ``./a/b.tif``, or absolute) seen from the folder ``root``."""
    if is_url(href) or href.startswith("/"):
        return href if is_url(href) else Path(href)
    if is_url(str(root)):
        scheme, rest = str(root).split("://", 1)
        return f"{scheme}://" + posixpath.normpath(posixpath.join(rest, href))
    return Path(os.path.normpath(os.path.join(root, href)))


def open_seekable(location: str | Path) -> BinaryIO:
    """A seekable reader of one file, local or remote (range requests on object storage)."""
    if is_url(str(location)):
        base, name = split(str(location))
        return store_for(base).open(name)
    return open(location, "rb", buffering=1 << 20)


def split(location: str) -> tuple[str, str]:
    """``s3://bucket/a/b.tif`` -> (``s3://bucket/a``, ``b.tif``)."""
    base, _, name = str(location).rstrip("/").rpartition("/")
    return base, name


def read_bytes(location: str | Path) -> bytes:
    """The bytes of one file, local or remote."""
    if is_url(str(location)):
        base, name = split(str(location))
        return store_for(base).get(name)
    return Path(location).read_bytes()


def size_of(location: str | Path) -> int | None:
    if is_url(str(location)):
        base, name = split(str(location))
        return store_for(base).size(name)
    try:
        return Path(location).stat().st_size
    except OSError:
        return None


def open_stream(location: str | Path) -> BinaryIO:
    """A forward reader of one file, local or remote (object storage streams as it downloads)."""
    if str(location).startswith(("http://", "https://")):
        import urllib.request

        return urllib.request.urlopen(str(location), timeout=120)  # noqa: S310 - the user's own URLs
    if is_url(str(location)):
        base, name = split(str(location))
        return store_for(base).stream(name)
    return open(location, "rb", buffering=1 << 20)


__all__ = ["LocalStore", "ObjectStore", "Store", "is_url", "join", "mirror_dir", "open_seekable", "open_stream",
           "read_bytes", "resolve", "size_of", "staging_dir", "store_for"]
