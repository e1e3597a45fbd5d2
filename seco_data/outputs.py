"""The one output-folder protocol: durable atomic writes, the lock, and what a folder holds.

Every file the project writes goes through :func:`write_atomic` or :func:`atomic_file`: a
temporary name in the same folder, ``fsync``, ``os.replace``, then an ``fsync`` of the folder, so
after a crash or a power loss a file is either its old self or complete, never a renamed empty file.
A full disk is a :class:`~seco_data.errors.DiskFullError` naming the path (exit 3), and the
temporary file is removed.

Every command that writes a folder claims it with :func:`claim_output`: it creates the folder,
takes its exclusive lock (one writer at a time, across processes; forked workers share it), and
compares what the folder holds (``.seco.json``: the command and its identity, e.g. the recipe's
fingerprint) with what the command would write:

- an empty or new folder is claimed;
- the same output is resumed;
- another output (other settings, another catalog) is refused, naming the keys that differ, unless
  ``overwrite``: then the earlier output, and only files it recognises as its own, are removed;
- a folder holding anything else is refused, ``overwrite`` or not.

``SECO_FSYNC=0`` in the environment skips every ``fsync`` (renames stay atomic, a power loss may
lose the last writes): for benchmarks of seco's own work, and scratch data on disks whose sync is
slow; never for data you keep.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from . import __version__
from .errors import OutputError, disk_full, is_disk_full, no_space_left

#: whether writes are synced to disk (``SECO_FSYNC=0`` turns it off, see the module docstring)
FSYNC = os.environ.get("SECO_FSYNC", "1").strip().lower() not in ("0", "false", "no", "off")

LOCK = ".seco.lock"
STATE = ".seco.json"
_TMP = ".tmp"


# -- durable writes -----------------------------------------------------------------------------


def temp_name(path: Path) -> Path:
    """The temporary name ``path`` is written under before its rename: hidden, unique to this process."""
    return path.with_name(f".{path.name}{_TMP}{os.getpid()}")


def is_temp(name: str) -> bool:
    """Whether a file name is one of :func:`temp_name`'s (a leftover of a killed writer)."""
    return name.startswith(".") and _TMP in name


def fsync(fd: int) -> None:
    """``os.fsync(fd)``, unless :data:`FSYNC` is off."""
    if FSYNC:
        os.fsync(fd)


def fsync_dir(folder: str | Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where directories cannot be opened)."""
    if not FSYNC:
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def commit(tmp: str | Path, path: str | Path, *, durable: bool = True) -> None:
    """Make the finished temporary file ``tmp`` durable and rename it to ``path`` (same folder)."""
    try:
        if durable and FSYNC:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if is_disk_full(e):
            raise disk_full(path, e) from None
        raise
    if durable:
        fsync_dir(Path(path).parent)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, durable: bool = True):
    """A temporary path for a writer that takes a file name (pyarrow, torch.save ...); on a clean exit
    the file there is made durable and renamed to ``path``; on an error it is removed."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        yield tmp
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if is_disk_full(e) or (isinstance(e, Exception) and no_space_left(path.parent)):
            raise disk_full(path, e) from None
        raise
    commit(tmp, path, durable=durable)


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "wb", *, durable: bool = True, encoding: str | None = None):
    """Open a temporary file for writing; on a clean exit it is made durable and renamed to ``path``.

    On any error the temporary file is removed and ``path`` is left as it was; a full disk raises
    :class:`DiskFullError` naming ``path``.
    """
    with atomic_path(path, durable=durable) as tmp:
        with open(tmp, mode, encoding=encoding if "b" not in mode else None) as f:
            yield f


def write_atomic(path: str | Path, data: bytes | str, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically and durably (see :func:`atomic_file`)."""
    with atomic_file(path, "wb", durable=durable) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def write_many(folder: str | Path, files: dict[str, bytes], *, durable: bool = True) -> None:
    """Write several files into ``folder`` atomically and durably at the cost of one folder sync:
    every file goes to its temporary name and is fsync'd, then all are renamed in the order given
    (write the files an index points to before the index), then the folder is fsync'd once."""
    folder = Path(folder)
    done: list[tuple[Path, Path]] = []
    try:
        for name, data in files.items():
            path = folder / name
            tmp = temp_name(path)
            done.append((tmp, path))
            with open(tmp, "wb") as f:
                f.write(data)
                if durable and FSYNC:
                    f.flush()
                    fsync(f.fileno())
        for tmp, path in done:
            os.replace(tmp, path)
    except BaseException as e:
        for tmp, _ in done:
            with contextlib.suppress(OSError):
                tmp.unlink()
        if is_disk_full(e):
            raise disk_full(folder, e) from None
        raise
    if durable:
        fsync_dir(folder)


def write_json(path: str | Path, obj, *, indent: int | None = 1, durable: bool = True) -> None:
    """``obj`` as UTF-8 JSON (compact when ``indent`` is None), atomically."""
    if indent is None:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    else:
        text = json.dumps(obj, indent=indent, ensure_ascii=False)
    write_atomic(path, text + "\n", durable=durable)


def replace_folder(tmp: str | Path, dest: str | Path) -> None:
    """Put the finished folder ``tmp`` in place of ``dest`` (replaced if it exists; restored if the
    swap fails), durably."""
    tmp, dest = Path(tmp), Path(dest)
    old = dest.with_name(f".{dest.name}.old{os.getpid()}")
    if dest.exists():
        os.replace(dest, old)
    try:
        os.replace(tmp, dest)
    except BaseException:
        if old.exists() and not dest.exists():
            os.replace(old, dest)
        raise
    fsync_dir(dest.parent)
    shutil.rmtree(old, ignore_errors=True)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of the file at ``path`` (or object-storage URL, streamed), read in 4 MiB chunks."""
    from .storage import open_stream

    h = hashlib.sha256()
    with open_stream(path) as f:
        while chunk := f.read(4 << 20):
            h.update(chunk)
    return h.hexdigest()


def remove_temps(folder: str | Path) -> int:
    """Delete the temporary files killed writers left directly in ``folder``; return how many."""
    n = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            if is_temp(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    n += 1
    return n


# -- the lock -----------------------------------------------------------------------------------


class Lock:
    """The lock on a folder (``flock`` on ``<folder>/.seco.lock``): exclusive for a writer, ``shared``
    for readers that need it to stay as it is (an export reading a catalog: a ``sample`` growing it
    waits, and an export does not start while one writes).

    Processes forked while it is held share it, so a rerun cannot start while a killed run's worker
    is still writing. ``wait_s`` gives the workers of a killed run time to notice and exit.
    """

    def __init__(self, folder: str | Path, *, wait_s: float = 30.0, what: str = "writing to", shared: bool = False):
        self.folder = Path(folder)
        self.wait_s, self.what, self.shared = wait_s, what, shared
        self.fd: int | None = None

    def acquire(self) -> "Lock":
        if self.shared:
            try:  # a reader never creates the lock file (the folder may be read-only)
                fd = os.open(self.folder / LOCK, os.O_RDONLY)
            except OSError:
                return self  # not a folder seco writes to: nothing to wait for
            return self._wait(fd, fcntl.LOCK_SH)
        try:
            fd = os.open(self.folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            if is_disk_full(e):
                raise disk_full(self.folder / LOCK, e) from None
            raise OutputError(f"cannot write to {self.folder}: {e.strerror or e}",
                              hint="choose a folder you can write to with --out") from None
        return self._wait(fd, fcntl.LOCK_EX)

    def _wait(self, fd: int, mode: int) -> "Lock":
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                self.fd = fd
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise OutputError(f"another seco process is {self.what} {self.folder}",
                                      hint="wait for it to finish, or stop it; then rerun") from None
                time.sleep(0.1)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "Lock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock(folder: str | Path, *, wait_s: float = 30.0, what: str = "using", shared: bool = False) -> Lock:
    """The lock on ``folder``, as a context manager (see :class:`Lock`)."""
    return Lock(folder, wait_s=wait_s, what=what, shared=shared)


# -- the output folder --------------------------------------------------------------------------


@dataclass
class Claim:
    """An output folder claimed by a command (under its lock until the ``with`` block ends)."""

    path: Path
    state_dir: Path
    kind: str
    identity: dict
    #: the folder already held this same output: the command resumes it
    resumed: bool = False
    #: an earlier output with other settings was removed (``overwrite``)
    replaced: bool = False
    lock: Lock | None = None


def _differences(old, new, prefix: str = "") -> list[str]:
    from .config import differences

    return differences(old, new, prefix=prefix)


def read_state(state_dir: str | Path) -> dict | None:
    """The ``.seco.json`` of an output folder (None when absent or unreadable)."""
    try:
        d = json.loads((Path(state_dir) / STATE).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


@contextlib.contextmanager
def claim_output(
    path: str | Path,
    *,
    kind: str,
    identity: dict,
    overwrite: bool = False,
    state_dir: str | Path | None = None,
    ours: Callable[[str], bool] = lambda name: True,
    ignore: Callable[[str], bool] = lambda name: False,
    lock_wait_s: float = 30.0,
) -> Iterator[Claim]:
    """Claim ``path`` for a command writing output ``kind`` with ``identity`` (see the module docstring).

    ``state_dir`` (default ``path``) holds the lock and ``.seco.json``: the SeCo layout keeps them
    beside its folder, which must hold location folders only. ``ours(name)`` says whether an entry
    of ``path`` belongs to an output of this kind (removed by ``overwrite``); ``ignore(name)`` names
    entries that are neither (a lock of an older release, say) and left alone.
    """
    path = Path(path)
    state = Path(state_dir) if state_dir is not None else path
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} is not a folder", hint="choose a folder for --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
        state.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if is_disk_full(e):
            raise disk_full(path, e) from None
        raise OutputError(f"cannot write to {path}: {e.strerror or e}",
                          hint="choose a folder you can write to with --out") from None
    with lock(state, wait_s=lock_wait_s) as held:
        claim = Claim(path, state, kind, identity, lock=held)
        stored = read_state(state)
        own = {LOCK, STATE} if state == path else set()
        entries = sorted(e.name for e in os.scandir(path) if e.name not in own and not ignore(e.name)
                         and not is_temp(e.name))
        if stored is not None and stored.get("kind") == kind and stored.get("identity") == identity:
            claim.resumed = True
        elif stored is None and not entries:
            pass
        elif stored is None:
            raise OutputError(f"{path} is not empty and holds no seco {kind} output "
                              f"({', '.join(entries[:3])}{' ...' if len(entries) > 3 else ''})",
                              hint="choose an empty or new folder with --out")
        elif stored.get("kind") != kind:
            raise OutputError(f"{path} holds a seco {stored.get('kind')} output, not {kind}",
                              hint="choose an empty or new folder with --out")
        else:
            diff = _differences(stored.get("identity") or {}, identity)
            if not overwrite:
                raise OutputError(
                    f"{path} holds a {kind} output made with other settings ({', '.join(diff[:5]) or 'identity'} "
                    "differ)",
                    hint="rerun with the original arguments to resume, pass --overwrite to replace it, "
                         "or choose another --out")
            foreign = [e for e in entries if not ours(e)]
            if foreign:
                raise OutputError(f"{path} holds {', '.join(foreign[:3])}, which is not part of a {kind} output",
                                  hint="choose an empty or new --out; --overwrite only replaces a previous output")
            for name in entries:
                p = path / name
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
            claim.replaced = True
        if not claim.resumed:
            write_json(state / STATE, {"kind": kind, "identity": identity,
                                       "software": {"name": "seco", "version": __version__}})
        yield claim


def refuse_if_locked(folder: str | Path, what: str) -> Lock:
    """Take ``folder``'s lock at once (no wait) for a reader that must not see a half-written output
    (export of a catalog being sampled); raises :class:`OutputError` naming ``what`` is going on."""
    return Lock(folder, wait_s=0.0, what=what).acquire()
