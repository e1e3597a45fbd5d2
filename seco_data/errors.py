"""One error hierarchy for the whole project.

Every error carries a ``hint`` (what the user should do next) and an ``exit_code`` so the CLI can
turn any of them into a one-line message and a distinct process status.
"""

from __future__ import annotations


class SecoError(Exception):
    """Base class of every error raised on purpose by seco."""

    exit_code = 1
    hint = ""

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    def one_line(self) -> str:
        msg = " ".join(str(self).split())
        return f"{msg} (hint: {self.hint})" if self.hint else msg


class RecipeError(SecoError, ValueError):
    """A recipe or an override is invalid: names the key at fault."""

    exit_code = 2
    hint = "check the recipe against catalogs/README.md or `seco-data recipe show`"


class UsageError(SecoError, ValueError):
    """Arguments that cannot work together."""

    exit_code = 2


class OutputError(SecoError, OSError):
    """The output folder cannot be used (unwritable, belongs to another run, locked)."""

    exit_code = 3


class LedgerError(SecoError):
    """The ledger is unreadable or does not match this run."""

    exit_code = 3
    hint = "move the output folder aside or pass a new --out; nothing in it was changed"


class CatalogError(SecoError):
    """A STAC catalog is missing, unreadable or invalid."""

    exit_code = 4


class SourceError(SecoError):
    """A source failed for a reason that retrying will not fix."""

    exit_code = 5


class SourceUnavailable(SourceError, ConnectionError):
    """A transient failure (network, 5xx, 429): worth retrying with backoff.

    ``retry_after`` (seconds) is the server's own advice (429/503 ``Retry-After``), when it gave one.
    """

    exit_code = 6
    hint = "the service is unreachable or overloaded; rerun the same command later to resume"

    def __init__(self, message: str, *, hint: str | None = None, retry_after: float | None = None):
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class CredentialsError(SourceError, PermissionError):
    """Missing or expired credentials."""

    exit_code = 7


class IncompleteError(SecoError):
    """The run ended with fewer locations than asked for."""

    exit_code = 8


class ShardError(SecoError, IOError):
    """A shard is missing, truncated or holds a sample that does not decode: names shard and sample."""

    exit_code = 9
    hint = "check the shard set with `seco-data verify SHARDS_DIR`; re-export with `seco-data export`"


class VerifyError(SecoError):
    """`seco-data verify` found mismatches (the files at fault are listed before this message)."""

    exit_code = 10
