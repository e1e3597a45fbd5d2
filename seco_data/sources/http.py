"""HTTP helpers shared by the remote sources: one pooled session per client, ``Retry-After``,
short messages, and the mapping of HTTP statuses onto seco's errors.

No helper here retries: the collector's :class:`~seco_data.sample.select.RetryPolicy` is the one
retry layer (bounded, with backoff and the server's ``Retry-After``), so a failing request is tried
exactly as many times as the README says.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import os

from ..errors import CredentialsError, SourceError, SourceUnavailable

#: statuses worth trying again later (with backoff): timeouts, too early, rate limits, server errors
TRANSIENT = frozenset({408, 425, 429})


def is_transient(status: int | None) -> bool:
    """No status (a network failure), 408/425/429 or any 5xx."""
    return status is None or status in TRANSIENT or status >= 500


def retry_after(value, *, unit: float = 1.0, cap: float = 3600.0) -> float | None:
    """Seconds from a ``Retry-After`` header: a number of ``unit`` seconds (Sentinel Hub sends
    milliseconds: ``unit=1e-3``) or an HTTP date; None when absent or unreadable; within [0, cap]."""
    if value is None or value == "":
        return None
    try:
        s = float(value) * unit
    except (TypeError, ValueError):
        try:
            when = email.utils.parsedate_to_datetime(str(value))
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        s = (when - dt.datetime.now(dt.timezone.utc)).total_seconds()
    if s != s:  # NaN
        return None
    return min(max(s, 0.0), cap)


def short(text, limit: int = 300) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    t = " ".join(str(text).split())
    return t if len(t) <= limit else t[: limit - 3] + "..."


def http_error(status: int | None, what: str, *, retry_after_s: float | None = None, detail: str = "",
               credentials_hint: str | None = None, hint: str | None = None) -> SourceError:
    """The seco error for an HTTP answer: 401/403 credentials, transient statuses (and no status: a
    network failure) :class:`SourceUnavailable` with the server's ``Retry-After``, else permanent."""
    detail = short(detail, 200)
    msg = f"{what}: HTTP {status}" + (f" ({detail})" if detail else "") if status is not None else \
        f"{what} failed" + (f" ({detail})" if detail else "")
    if status in (401, 403):
        return CredentialsError(msg, hint=credentials_hint)
    if is_transient(status):
        return SourceUnavailable(msg, retry_after=retry_after_s)
    return SourceError(msg, hint=hint)


def session(url: str, pool_size: int = 10):
    """A ``requests`` session for the service at ``url``, with pooled keep-alive connections and no
    retries of its own; proxies (for that URL) and the CA bundle are read from the environment once,
    not on every request."""
    import requests
    from requests.adapters import HTTPAdapter

    s = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(1, pool_size), max_retries=0)
    s.mount("https://", adapter)
    s.mount("http://", adapter)
    s.proxies = requests.utils.get_environ_proxies(url)
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    s.verify = bundle or requests.utils.extract_zipped_paths(requests.utils.DEFAULT_CA_BUNDLE_PATH)
    s.trust_env = False
    return s
