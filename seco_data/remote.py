"""Outputs on object storage: the local staging folder of a remote output, and its snapshots.

A command writing to ``s3://bucket/prefix`` (any :mod:`seco_data.storage` URL) keeps its bookkeeping
in a local staging folder (:func:`seco_data.storage.staging_dir`): the output's identity and lock,
the SQLite ledger, index parts, export plans. Data files go straight to the bucket from the workers.
At checkpoints and at the end, :meth:`RemoteOutput.publish` uploads what changed: the catalog's JSON,
``items.parquet``, the index parts, and an atomic snapshot of the ledger (SQLite's online backup to a
temporary file, uploaded whole). On another machine, or after the staging folder is lost,
:meth:`RemoteOutput.fetch` brings the snapshot back before the command resumes: the same command
with the same ``--out`` continues where the last snapshot left off (locations collected after it are
simply collected again: a worker's files are rewritten identically).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from pathlib import Path
from typing import Iterator

from .errors import OutputError, UsageError
from .outputs import STATE, Claim, claim_output, read_state, write_json
from .storage import Store, is_url, staging_dir, store_for

log = logging.getLogger(__name__)

PUBLISHED = ".seco/published.json"


class RemoteOutput:
    """A remote output folder and its local staging folder."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.store: Store = store_for(self.url)
        self.staging = staging_dir(self.url)
        self.staging.mkdir(parents=True, exist_ok=True)

    def fetch(self, names: list[str]) -> list[str]:
        """Download ``names`` (paths relative to the output) that the staging folder lacks and the
        output has; return those fetched."""
        got = []
        for rel in names:
            local = self.staging / rel
            if not local.exists() and self.store.download(rel, local):
                got.append(rel)
        if got:
            log.info("resuming %s from its snapshot: %s", self.url, ", ".join(got))
        return got

    def publish(self, names: list[str], *, ledger_path: Path | None = None, snapshot_as: str | None = None) -> int:
        """Upload the staged files ``names`` that changed since they were last uploaded (and, with
        ``ledger_path``, a consistent snapshot of that SQLite database as ``snapshot_as``)."""
        record_path = self.staging / PUBLISHED
        try:
            record = json.loads(record_path.read_text("utf-8"))
        except (OSError, ValueError):
            record = {}
        n = 0
        for rel in names:
            local = self.staging / rel
            try:
                st = local.stat()
            except OSError:
                continue
            stamp = [st.st_mtime_ns, st.st_size]
            if record.get(rel) == stamp:
                continue
            self.store.put(rel, local.read_bytes())
            record[rel] = stamp
            n += 1
        if ledger_path is not None and snapshot_as:
            snap = self.staging / ".seco" / "ledger.snapshot"
            snap.parent.mkdir(parents=True, exist_ok=True)
            snap.unlink(missing_ok=True)
            src = sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True)
            dst = sqlite3.connect(snap)
            try:
                src.backup(dst)  # a consistent copy, even while the run writes
            finally:
                dst.close()
                src.close()
            self.store.upload(snap, snapshot_as)
            n += 1
        record_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(record_path, record, indent=None)
        return n


def writable(out, overwrite: bool, what: str) -> None:
    """Refuse what object storage cannot do: write over http(s), or ``--overwrite`` (``what``: the
    command's output, for the hint)."""
    if str(out).startswith(("http://", "https://")):
        raise UsageError(f"--out {out}: http(s) is read-only", hint="write to s3://, gs:// or az://, or a folder")
    if overwrite:
        raise UsageError(f"--overwrite is not available for object storage ({out})",
                         hint=f"write {what} under another prefix, or delete the old one with your storage's own tools")


@contextlib.contextmanager
def claim_remote(remote: RemoteOutput, out: str, *, kind: str, identity: dict, holds_data: bool) -> Iterator[Claim]:
    """:func:`seco_data.outputs.claim_output` for the output ``out`` on object storage whose record
    (``.seco.json``) lives in ``remote``: the record on the store is the truth (fetched afresh, so a
    run elsewhere is seen); the same output resumes; another one is refused naming what differs; a
    prefix that holds data (``holds_data``) but no record is refused. The record is published at
    once, before any data is written, so that an interrupted run is resumed, never refused. The
    staging folder keeps the local lock (one run per machine)."""
    from .config import differences

    if not remote.store.download(STATE, remote.staging / STATE):
        (remote.staging / STATE).unlink(missing_ok=True)  # the staging folder of an output since deleted
    stored = read_state(remote.staging)
    if stored is None and holds_data:
        raise OutputError(f"{out} is not empty and holds no seco {kind} output",
                          hint="choose an empty or new prefix with --out")
    if stored is not None and (stored.get("kind") != kind or stored.get("identity") != identity):
        what = (f"a seco {stored.get('kind')} output, not {kind}" if stored.get("kind") != kind else
                f"a {kind} output made with other settings ("
                + (", ".join(differences(stored.get("identity") or {}, identity)[:5]) or "identity") + " differ)")
        raise OutputError(f"{out} holds {what}",
                          hint="rerun with the original arguments to resume, or choose another --out (object storage "
                               "has no --overwrite: delete the old output with your storage's own tools)")
    with claim_output(remote.staging, kind=kind, identity=identity, ignore=lambda name: True) as claim:
        remote.publish([STATE])
        yield claim


def remote_catalog(out, layout: str, overwrite: bool) -> RemoteOutput | None:
    """The remote output of the catalog ``out`` (``sample``, ``import``) when it is object storage
    (compact catalogs only), else None."""
    if not is_url(str(out)):
        return None
    if layout != "compact":
        raise UsageError(f"--out {out}: object storage holds compact catalogs only",
                         hint="use --layout compact (the default), or a local or shared folder for per-patch")
    writable(out, overwrite, "the new catalog")
    return RemoteOutput(str(out))


def catalog_files(staging: Path) -> list[str]:
    """A catalog's files besides its data: identity, JSON, index, recipe, and the index parts."""
    from .catalog.layout import CATALOG, COLLECTION, INDEX, RECIPE
    from .catalog.rebuild import PARTS, PARTS_STATE

    names = [STATE, CATALOG, COLLECTION, INDEX, RECIPE, f"{PARTS}/{PARTS_STATE}"]
    parts = staging / PARTS
    if parts.is_dir():
        names += sorted(f"{PARTS}/{p.name}" for p in parts.glob("*.parquet"))
    return names


def fetch_catalog(remote: RemoteOutput) -> None:
    """Bring a remote catalog's snapshot (identity, ledger, index state and parts) into staging."""
    from .catalog.layout import LEDGER
    from .catalog.rebuild import PARTS, PARTS_STATE

    remote.fetch([STATE, LEDGER, f"{PARTS}/{PARTS_STATE}"])
    remote.fetch([rel for rel, _ in remote.store.list(f"{PARTS}/") if rel.endswith(".parquet")])


def publish_catalog(remote: RemoteOutput) -> int:
    """Upload a catalog's changed files and a snapshot of its ledger."""
    from .catalog.layout import LEDGER

    return remote.publish(catalog_files(remote.staging), ledger_path=remote.staging / LEDGER, snapshot_as=LEDGER)


__all__ = ["RemoteOutput", "catalog_files", "claim_remote", "fetch_catalog", "publish_catalog", "remote_catalog",
           "writable"]
