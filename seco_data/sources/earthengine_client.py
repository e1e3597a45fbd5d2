"""Earth Engine plumbing: lazy import, credentials, one process-wide initialisation, HTTP transport
with a concurrency cap and a rate limit, and the mapping of every failure onto seco's errors.

``ee.Initialize`` is process-global, so the client is initialised once per process (under a lock)
for one configuration (endpoint, project, credentials, limits); a source built with another
configuration re-initialises it. All HTTP goes through :class:`Transport`, handed to ``ee`` as its
``http_transport``: it holds the process-wide semaphore and token bucket, a timeout on every
request, and records each answer's status and ``Retry-After`` (per thread) so that an
``ee.EEException``, which keeps only the message, can still be classified. googleapiclient's own
retries are switched off (``ee.data.setMaxRetries(0)``): the collector's bounded ``RetryPolicy`` is
the single retry layer.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..errors import CredentialsError, SourceError, SourceUnavailable
from .http import retry_after as parse_retry_after
from .http import session, short
from .quota import concurrency_limit, rate_share

log = logging.getLogger(__name__)

STANDARD_URL = "https://earthengine.googleapis.com"
HIGH_VOLUME_URL = "https://earthengine-highvolume.googleapis.com"
PROJECT_ENV = ("EE_PROJECT", "GOOGLE_CLOUD_PROJECT")
INSTALL_HINT = "pip install 'seco[earthengine]'"
CREDENTIALS_HINT = ("set GOOGLE_APPLICATION_CREDENTIALS or source_options.credentials to a service-account "
                    "JSON key, or run `gcloud auth application-default login`")
#: 4xx messages that mean "slow down / try later" rather than "this request is wrong"
_TRANSIENT_MESSAGE = re.compile(r"quota|rate limit|too many|try again|temporarily|computation timed out|"
                                r"deadline exceeded|resource exhausted", re.I)


def import_ee():
    """``ee``, imported now; a :class:`SourceError` with the install command when it is missing."""
    try:
        import ee
    except ImportError:
        raise SourceError("the earthengine source needs earthengine-api, which is not installed",
                          hint=INSTALL_HINT) from None
    return ee


# -- credentials -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Auth:
    """Resolved project and credentials (the credentials object is never shown or logged)."""

    project: str
    credentials: object | None  # google.auth credentials, or None (anonymous: test servers)
    kind: str  # "service-account", "application-default" or "anonymous"
    key_file: str | None = None


def resolve_auth(project: str | None, credentials: str | os.PathLike | None, url: str | None) -> Auth:
    """Project from the option or ``EE_PROJECT`` / ``GOOGLE_CLOUD_PROJECT``; credentials from a
    service-account key file, else anonymous when ``url`` is given (loopback servers), else ADC."""
    ee = import_ee()
    key_project = None
    creds = None
    if credentials is not None:
        path = Path(credentials).expanduser()
        try:
            info = json.loads(path.read_text())
        except FileNotFoundError:
            raise CredentialsError(f"Earth Engine key file {path} does not exist", hint=CREDENTIALS_HINT) from None
        except (OSError, ValueError) as e:  # never echo the file's content
            raise CredentialsError(f"Earth Engine key file {path} is not a readable JSON key "
                                   f"({type(e).__name__})", hint=CREDENTIALS_HINT) from None
        if not isinstance(info, dict) or info.get("type") != "service_account":
            raise CredentialsError(f"Earth Engine key file {path} is not a service-account key",
                                   hint=CREDENTIALS_HINT)
        key_project = info.get("project_id")
        try:
            creds = ee.ServiceAccountCredentials(None, key_file=str(path))
        except Exception as e:  # noqa: BLE001 - parse errors may quote the key: say only what failed
            raise CredentialsError(f"Earth Engine key file {path} holds an unusable private key "
                                   f"({type(e).__name__})", hint=CREDENTIALS_HINT) from None
    project = project or next((os.environ[v] for v in PROJECT_ENV if os.environ.get(v)), None) or key_project
    if not project:
        raise CredentialsError("no Earth Engine project: pass --ee-project or set EE_PROJECT",
                               hint="source_options.project in a recipe; the project must have Earth Engine enabled")
    if creds is not None:
        return Auth(str(project), creds, "service-account", str(credentials))
    if url:
        return Auth(str(project), None, "anonymous")
    import google.auth
    import google.auth.exceptions

    try:
        creds, _ = google.auth.default(scopes=list(ee.oauth.SCOPES))
    except google.auth.exceptions.DefaultCredentialsError:
        raise CredentialsError("no Google credentials for Earth Engine", hint=CREDENTIALS_HINT) from None
    return Auth(str(project), creds, "application-default")


# -- limits and transport ------------------------------------------------------------------------


class TokenBucket:
    """Thread-safe rate limiter: ``rate`` tokens per second, bursts of ``max(1, rate / 10)``."""

    def __init__(self, rate: float, *, clock=time.monotonic, sleep=time.sleep):
        self.rate = float(rate)
        self.capacity = max(1.0, self.rate / 10)
        self.tokens = self.capacity
        self.clock, self.sleep = clock, sleep
        self.stamp = clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = self.clock()
                self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1 - 1e-9:  # (rounding: a wait of exactly the deficit refills one token)
                    self.tokens = max(0.0, self.tokens - 1)
                    return
                wait = (1 - self.tokens) / self.rate
            self.sleep(wait)


class Garbled(ConnectionError):
    """A 2xx answer whose body cannot be what was asked for (truncated, not JSON, not NPY)."""


_local = threading.local()  # per thread: counters sink, last status and Retry-After


class Transport:
    """An httplib2-like transport on a requests session (what ``ee`` expects as ``http_transport``)."""

    def __init__(self, endpoint: str, timeout: float, max_concurrency: int, requests_per_second: float,
                 quota: str = "earthengine"):
        self.timeout = timeout
        # the caps hold for the whole run: cluster-wide on Dask (sources.quota)
        self.slots = concurrency_limit(quota, max_concurrency)
        self.bucket = TokenBucket(rate_share(requests_per_second))
        self.session = session(endpoint, pool_size=max_concurrency)

    def request(self, uri, method="GET", body=None, headers=None, redirections=None, connection_type=None, **kw):
        import httplib2
        import requests

        _local.status, _local.retry_after = None, None
        sink = getattr(_local, "sink", None)
        self.bucket.acquire()
        with self.slots:
            if sink is not None:
                sink["requests"] += 1
            try:
                r = self.session.request(method, uri, data=body, headers=headers, timeout=self.timeout)
                content = r.content
            except requests.exceptions.Timeout as e:
                raise TimeoutError(f"no answer within {self.timeout:g} s") from e
            except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError,
                    requests.exceptions.ContentDecodingError) as e:
                raise ConnectionError(short(e)) from e
        if sink is not None:
            sink["bytes"] += len(content)
        _local.status, _local.retry_after = r.status_code, r.headers.get("Retry-After")
        if r.status_code < 300 and "json" in r.headers.get("Content-Type", ""):
            try:
                json.loads(content)
            except ValueError:
                raise Garbled(f"malformed JSON answer ({len(content)} bytes)") from None
        resp_headers = dict(r.headers)
        resp_headers["status"] = r.status_code
        return httplib2.Response(resp_headers), content

    def close(self) -> None:
        self.session.close()


# -- the process-wide client ---------------------------------------------------------------------

_init_lock = threading.Lock()
_current: dict = {"key": None, "transport": None}


def initialise(auth: Auth, endpoint: str, timeout: float, max_concurrency: int, requests_per_second: float) -> None:
    """Initialise ``ee`` for this configuration unless it already is (once per process)."""
    key = (endpoint, auth.project, auth.kind, auth.key_file, id(auth.credentials) if auth.kind == "application-default"
           else None, timeout, max_concurrency, requests_per_second)
    if _current["key"] == key:
        return
    ee = import_ee()
    with _init_lock:
        if _current["key"] == key:
            return
        old = _current["transport"]
        if old is not None:  # another configuration in this process (tests, a second run)
            ee.Reset()
            old.close()
            _current.update(key=None, transport=None)
        transport = Transport(endpoint, timeout, max_concurrency, requests_per_second,
                              quota=f"earthengine-{auth.project}-{endpoint}")
        ee.data.setMaxRetries(0)  # the collector's RetryPolicy is the one retry layer
        try:
            ee.Initialize(credentials=auth.credentials, url=endpoint, project=auth.project, http_transport=transport)
        except BaseException:
            transport.close()
            ee.Reset()
            raise
        _current.update(key=key, transport=transport)
        log.info("Earth Engine initialised: endpoint %s, project %s, %s credentials", endpoint, auth.project, auth.kind)


def reset() -> None:
    """Forget the process-wide client (closes its connections); the next call initialises again."""
    with _init_lock:
        if _current["transport"] is not None:
            import_ee().Reset()
            _current["transport"].close()
        _current.update(key=None, transport=None)


def call(fn, counters: Counter, what: str):
    """Run one ``ee`` call, counting requests and bytes into ``counters`` and mapping failures."""
    _local.sink = counters
    _local.status = _local.retry_after = None
    try:
        return fn()
    except SourceError:
        raise
    except Exception as e:  # noqa: BLE001 - classified below, everything else re-raised
        err = classify(e, what)
        if err is None:
            raise
        counters[f"errors_{_kind(err, e)}"] += 1
        raise err from None
    finally:
        _local.sink = None


def classify(e: BaseException, what: str) -> SourceError | None:
    """The seco error for a failure of ``what``, or None when it is not a service failure (a bug)."""
    import google.auth.exceptions
    import googleapiclient.errors

    ee = import_ee()
    status, retry_after = getattr(_local, "status", None), parse_retry_after(getattr(_local, "retry_after", None))
    if isinstance(e, googleapiclient.errors.HttpError):
        status = e.resp.status
        retry_after = parse_retry_after(e.resp.get("retry-after")) if retry_after is None else retry_after
        message = short(e._get_reason())  # noqa: SLF001 - the only way to the server's message
    elif isinstance(e, ee.EEException):
        message = short(e)
    elif isinstance(e, google.auth.exceptions.RefreshError):
        reason = e.args[0] if e.args else type(e).__name__
        return CredentialsError(f"Earth Engine: could not get an access token ({short(reason)})",
                                hint=CREDENTIALS_HINT)
    elif isinstance(e, google.auth.exceptions.DefaultCredentialsError):
        return CredentialsError("no Google credentials for Earth Engine", hint=CREDENTIALS_HINT)
    elif isinstance(e, Garbled):
        return SourceUnavailable(f"Earth Engine {what}: {e}")
    elif isinstance(e, (TimeoutError, socket.timeout)):
        return SourceUnavailable(f"Earth Engine {what} timed out: {short(e)}")
    elif isinstance(e, (ConnectionError, google.auth.exceptions.TransportError)):
        return SourceUnavailable(f"Earth Engine {what}: connection failed ({short(e)})")
    elif isinstance(e, json.JSONDecodeError):
        return SourceUnavailable(f"Earth Engine {what}: malformed JSON answer")
    else:
        return None
    if status in (401, 403):
        return CredentialsError(f"Earth Engine refused {what} (HTTP {status}): {message}",
                                hint=f"check that the credentials are valid and the project has Earth Engine "
                                     f"access; {CREDENTIALS_HINT}")
    transient_4xx = status is not None and status >= 400 and _TRANSIENT_MESSAGE.search(message)
    if status is not None and (status == 429 or status >= 500 or transient_4xx):
        return SourceUnavailable(f"Earth Engine {what}: HTTP {status}: {message}", retry_after=retry_after)
    if status is None and _TRANSIENT_MESSAGE.search(message):
        return SourceUnavailable(f"Earth Engine {what}: {message}", retry_after=retry_after)
    return SourceError(f"Earth Engine rejected {what}" + (f" (HTTP {status})" if status else "") + f": {message}",
                       hint="this request will not succeed by retrying; check bands, dates and the collection")


def _kind(err: SourceError, e: BaseException) -> str:
    if isinstance(err, CredentialsError):
        return "auth"
    if not isinstance(err, SourceUnavailable):
        return "permanent"
    status = getattr(_local, "status", None)
    if isinstance(e, Garbled):
        return "garbled"
    if isinstance(e, (TimeoutError, socket.timeout)):
        return "timeout"
    if isinstance(e, ConnectionError):
        return "connection"
    if status == 429:
        return "rate_limited"
    return "server"
