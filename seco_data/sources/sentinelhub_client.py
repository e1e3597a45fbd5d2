"""HTTP plumbing of the Sentinel Hub source: tokens, one bounded request loop, error mapping.

sentinelhub-py builds the requests (``SentinelHubRequest``, ``DownloadRequest``) and sends them with
its ``SentinelHubDownloadClient``; this module narrows what that client does on failure:

- every request is sent once: a 429 (with the server's ``Retry-After``, milliseconds on the wire,
  seconds here), a 5xx, a timeout, a dropped connection or a truncated body raises
  :class:`SourceUnavailable` at once, counted by kind, and the collector's retry policy (the one
  retry layer) tries again; sentinelhub-py's own retry loops (its 429 loop is endless unless
  ``max_retries`` is set) never run;
- 401 once renews the token and tries again, then (like 403) raises :class:`CredentialsError`;
  other 4xx raise :class:`SourceError` with the server's ``error.message``.

Tokens are fetched with a plain form POST (not requests-oauthlib, which logs the request body, secret
included, at DEBUG level) and cached process-wide per (token URL, client id, secret digest); a lock
guards every session so that threads and instances share one token and refresh it once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections import Counter
from typing import Any

from ..errors import CredentialsError, SourceError, SourceUnavailable
from .http import retry_after, session

log = logging.getLogger(__name__)

CREDENTIALS_HINT = "set SH_CLIENT_ID and SH_CLIENT_SECRET to an OAuth client of your Sentinel Hub account"
REJECTED = "Sentinel Hub rejected the client id/secret: set SH_CLIENT_ID and SH_CLIENT_SECRET"

_SESSIONS: dict[tuple[str, str, str], Any] = {}
_SESSIONS_LOCK = threading.Lock()


def clear_sessions() -> None:
    """Forget every cached token (tests; after rotating a secret in a long-lived process)."""
    with _SESSIONS_LOCK:
        _SESSIONS.clear()


def require_secure(token_url: str) -> None:
    """Refuse to send a client secret over plain http, as oauthlib does (same escape hatch)."""
    if token_url.lower().startswith("http://") and not os.environ.get("OAUTHLIB_INSECURE_TRANSPORT"):
        raise SourceError(
            f"refusing to send the Sentinel Hub client secret over plain http to {token_url}",
            hint="use an https token URL (OAUTHLIB_INSECURE_TRANSPORT=1 is meant for local test servers only)",
        )


def server_message(response) -> str:
    """The ``error.message`` of a Sentinel Hub JSON error, else a short excerpt of the body."""
    try:
        err = response.json()
        if isinstance(err, dict):
            e = err.get("error", err)
            if isinstance(e, dict):
                msg = e.get("message") or e.get("reason") or e.get("error_description") or e.get("error")
                if msg:
                    return " ".join(str(msg).split())
            elif isinstance(e, str):
                return " ".join((err.get("error_description") or e).split())
    except ValueError:
        pass
    text = " ".join((response.text or "").split())
    return text[:200] or response.reason or "no message"


def retry_after_s(response) -> float | None:
    """Sentinel Hub's ``Retry-After`` is in MILLISECONDS."""
    return retry_after(response.headers.get("Retry-After"), unit=1e-3)


def session_for(config, timeout: float) -> Any:
    """The shared, thread-safe session of ``config``'s credentials (fetches a token when new)."""
    digest = hashlib.sha256(config.sh_client_secret.encode()).hexdigest()[:16]
    key = (config.sh_token_url, config.sh_client_id, digest)
    with _SESSIONS_LOCK:
        session = _SESSIONS.get(key)
        if session is None:  # under the lock: concurrent first calls fetch one token, not many
            session = _SESSIONS[key] = _session_class()(config, timeout)
        return session


def drop_session(session) -> None:
    with _SESSIONS_LOCK:
        for k, v in list(_SESSIONS.items()):
            if v is session:
                del _SESSIONS[k]


_CLASSES: dict[str, type] = {}


def _session_class() -> type:
    """``SentinelHubSession`` subclass (built on first use: sentinelhub is imported lazily)."""
    if "session" in _CLASSES:
        return _CLASSES["session"]
    import requests
    from sentinelhub import SentinelHubSession
    from sentinelhub.constants import SHConstants

    class Session(SentinelHubSession):
        def __init__(self, config, timeout: float):
            self._lock = threading.RLock()
            self._timeout = timeout
            super().__init__(config=config)

        @property
        def token(self) -> dict:
            with self._lock:  # one refresh, whatever the number of threads
                return SentinelHubSession.token.fget(self)

        def _collect_new_token(self) -> dict:
            url = self.config.sh_token_url
            require_secure(url)
            form = {
                "grant_type": "client_credentials",
                "client_id": self.config.sh_client_id,
                "client_secret": self.config.sh_client_secret,
            }
            try:
                r = requests.post(url, data=form, timeout=self._timeout, headers={
                    "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json",
                    **SHConstants.HEADERS})
            except requests.Timeout:
                raise SourceUnavailable(f"Sentinel Hub token endpoint {url} timed out") from None
            except requests.RequestException as e:
                raise SourceUnavailable(
                    f"Sentinel Hub token endpoint {url} is unreachable ({type(e).__name__})") from None
            if r.status_code == 429 or r.status_code >= 500:
                raise SourceUnavailable(f"Sentinel Hub token endpoint {url} answered {r.status_code}",
                                        retry_after=retry_after_s(r))
            if r.status_code >= 400:
                raise CredentialsError(f"{REJECTED} (token endpoint {url} answered {r.status_code}: "
                                       f"{server_message(r)})", hint=CREDENTIALS_HINT)
            try:
                token = r.json()
                token["access_token"].split(".")[1]
                token["expires_at"] = time.time() + float(token.get("expires_in", 3600))
            except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                raise SourceUnavailable(f"Sentinel Hub token endpoint {url} sent an unreadable token") from None
            log.debug("new Sentinel Hub token for client %s... from %s", self.config.sh_client_id[:4], url)
            return token

    _CLASSES["session"] = Session
    return Session


def make_client(config, counters: Counter, *, timeout: float):
    """A ``SentinelHubDownloadClient`` that sends each request once (see the module docstring)."""
    return _client_class()(config=config, counters=counters, timeout=timeout)


class _Transient(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class _Expired(Exception):
    """401 from the API: the token expired or was revoked."""


def _client_class() -> type:
    if "client" in _CLASSES:
        return _CLASSES["client"]
    import requests
    from sentinelhub import SentinelHubDownloadClient
    from sentinelhub.download.models import DownloadResponse

    class Client(SentinelHubDownloadClient):
        def __init__(self, *, config, counters: Counter, timeout: float):
            super().__init__(config=config)
            self.counters = counters
            self.timeout = timeout
            self._http = None  # requests.Session, made on first use

        def get_session(self):
            return session_for(self.config, self.timeout)

        def _do_download(self, request):
            """As the stock client, but over one pooled HTTP session (keep-alive: no TCP and TLS
            handshake per request, no proxy lookup in the environment each time). A source, hence
            this client, is used by one thread at a time."""
            if request.url is None:
                raise ValueError(f"Faulty request {request}, no URL specified.")
            if self._http is None:
                self._http = session(request.url)
            return self._http.request(request.request_type.value, url=request.url, json=request.post_values,
                                      headers=self._prepare_headers(request),
                                      timeout=self.config.download_timeout_seconds)

        def _execute_download(self, request) -> DownloadResponse:  # replaces the stock retry decorators
            renewed = False
            while True:
                try:
                    return self._attempt(request)
                except _Transient as e:
                    self.counters[e.kind] += 1
                    raise SourceUnavailable(str(e)) from None
                except _Expired:
                    if renewed:
                        raise CredentialsError(f"{REJECTED} ({request.url} answered 401 with a fresh token)",
                                               hint=CREDENTIALS_HINT) from None
                    renewed = True  # the token expired or was revoked early: fetch a new one, once
                    drop_session(self.get_session())

        def _attempt(self, request) -> DownloadResponse:
            self.counters["requests"] += 1
            where = request.url
            try:
                r = self._do_download(request)
            except requests.Timeout:
                raise _Transient("timeouts", f"{where} timed out after {self.timeout:g}s") from None
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as e:
                raise _Transient("connection_errors", f"connection to {where} failed ({type(e).__name__})") from None
            except requests.RequestException as e:
                raise SourceError(f"cannot send a request to {where}: {type(e).__name__}") from None
            status = r.status_code
            if status == 429:
                self.counters["rate_limited"] += 1
                wait = retry_after_s(r)
                raise SourceUnavailable(
                    f"Sentinel Hub rate limit hit at {where}" + (f" (retry after {wait:g}s)" if wait is not None else ""),
                    retry_after=wait)
            if status >= 500:
                raise _Transient("server_errors", f"{where} answered {status}: {server_message(r)}")
            if status == 401:
                raise _Expired()
            if status == 403:
                raise CredentialsError(f"{REJECTED} ({where} answered 403: {server_message(r)})",
                                       hint=CREDENTIALS_HINT + "; check its permissions and processing-unit quota")
            if status >= 400:
                raise SourceError(f"Sentinel Hub refused the request to {where} ({status}): {server_message(r)}")
            pu = r.headers.get("x-processingunits-spent")
            if pu is not None:
                try:
                    self.counters["processing_units"] += float(pu)
                except ValueError:
                    pass
            self.counters["bytes"] += len(r.content)
            return DownloadResponse.from_response(r, request)

    _CLASSES["client"] = Client
    return Client


def post_json(client, url: str, payload: dict, *, accept: str = "application/json") -> Any:
    """POST ``payload`` through ``client`` (Bearer token from the shared session); the raw response."""
    from sentinelhub.constants import MimeType, RequestType
    from sentinelhub.download.models import DownloadRequest

    req = DownloadRequest(url=url, request_type=RequestType.POST, post_values=payload, use_session=True,
                          data_type=MimeType.RAW,
                          headers={"Content-Type": "application/json", "Accept": accept})
    return download(client, req)


def download(client, request) -> Any:
    """One ``DownloadRequest`` through ``client``, undecoded (a ``DownloadResponse``).

    Calls our bounded loop directly: the library's ``download`` starts a thread pool for every
    call, which costs more CPU than the request itself on a fast network.
    """
    return client._execute_download(request)


def decode_json(response, what: str) -> Any:
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        raise SourceUnavailable(f"Sentinel Hub sent an unreadable {what} answer (not JSON)") from None
