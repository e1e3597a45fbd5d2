"""Every error class of the project, and one process exit code per meaning.

Every error carries a ``hint`` (what the user should do next) and an ``exit_code``, so the CLI turns
any of them into a one-line message and a distinct process status. The table :data:`EXIT_CODES` is
the one the README shows; the CLI adds 70 (internal error: a bug), 130 (interrupted) and 141 (the
reader of our output went away, e.g. ``| head``).
"""

from __future__ import annotations

import re

#: exit code -> meaning (README "CLI reference")
EXIT_CODES = {
    0: "success",
    1: "other seco error",
    2: "bad arguments, recipe or configuration (usage)",
    3: "output folder: unwritable, full, locked, or holding another output",
    4: "catalog missing, unreadable or invalid",
    5: "source failed permanently",
    6: "source unavailable (transient; rerun later to resume)",
    7: "source credentials missing, expired or refused",
    8: "fewer locations than asked for passed the filters",
    9: "shard missing, truncated or unreadable",
    10: "`verify` found mismatches",
    70: "internal error (a bug: rerun with -vv and report it)",
    130: "interrupted (rerun to resume)",
    141: "output pipe closed by its reader",
}
INTERNAL_ERROR = 70
INTERRUPTED = 130
BROKEN_PIPE = 141


class SecoError(Exception):
    """Base class of every error raised on purpose by seco."""

    exit_code = 1
    hint = ""

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    def one_line(self) -> str:
        msg = " ".join(original_message(str(self)).split())
        return redact(f"{msg} (hint: {self.hint})" if self.hint else msg)


_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s'\"]+@")


def redact(text: str) -> str:
    """``text`` with the user and password of every URL in it replaced by ``***``
    (``https://u:pw@host/x`` -> ``https://***@host/x``): for anything printed, logged or stored."""
    return _USERINFO.sub(lambda m: m.group("scheme") + "***@", text)


def original_message(text: str) -> str:
    """The message of an error re-raised from a worker process with the worker's traceback in it
    (PyTorch's DataLoader does this): its last line, without the exception's class name."""
    if "Original Traceback" not in text:
        return text
    lines = [line for line in text.splitlines() if line.strip()]
    last = lines[-1].strip() if lines else text
    name, sep, rest = last.partition(": ")
    return rest if sep and re.fullmatch(r"[\w.]+", name) else last


class UsageError(SecoError, ValueError):
    """Arguments that cannot work together."""

    exit_code = 2


class RecipeError(UsageError):
    """A recipe or an override is invalid: names the key at fault."""

    hint = "check the recipe against catalogs/README.md or `seco-data recipe show`"


class ConfigError(UsageError):
    """A run or evaluation configuration is invalid: names the key at fault."""

    hint = "see `seco-train run --help` and the defaults in seco_train/config.py"


class OutputError(SecoError, OSError):
    """The output folder cannot be used (unwritable, full, belongs to another run, locked)."""

    exit_code = 3


class DiskFullError(OutputError):
    """No space left (or quota exceeded) while writing: names the path."""

    hint = "free space on that disk (or choose another --out), then rerun the same command to resume"


class LedgerError(OutputError):
    """The ledger is unreadable or does not match this run."""

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


class Interrupted(SecoError):
    """Ctrl-C (SIGINT) or SIGTERM: what was finished is kept."""

    exit_code = INTERRUPTED
    hint = "rerun the same command to resume"


class WorkerDied(SecoError):
    """A worker process was killed from outside (out of memory, SIGKILL): nothing it half wrote is kept."""

    exit_code = 1
    hint = ("a worker process was killed (often by the system for lack of memory): rerun the same command "
            "to resume, with fewer --workers if memory is short")


def disk_full(path, e: BaseException) -> DiskFullError:
    """The error for ``ENOSPC`` / ``EDQUOT`` while writing ``path``."""
    why = getattr(e, "strerror", None) or " ".join(str(e).split()) or "no space left"
    return DiskFullError(f"no space left on the device while writing {path} ({why})")


_FULL = ("no space left on device", "database or disk is full", "disk quota exceeded")


def is_disk_full(e: BaseException) -> bool:
    """ENOSPC/EDQUOT, however the library that met it says so (OSError, SQLite, pyarrow)."""
    import errno
    import sqlite3

    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(e, (OSError, sqlite3.Error)) and any(m in str(e).lower() for m in _FULL)


def no_space_left(folder) -> bool:
    """Whether the file system holding ``folder`` is (nearly) full: for writers whose errors do not
    say why they failed (torch.save: "file write failed")."""
    import os

    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 1 << 20
