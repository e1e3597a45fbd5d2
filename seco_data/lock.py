"""The lock on an output folder: one writer at a time (sample, import), across processes."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from .errors import OutputError

LOCK = ".seco.lock"


def lock_output(out: Path, wait_s: float = 30.0) -> int:
    """The exclusive lock on OUT, shared by every seco-data command that writes a catalog; waits a
    little for the workers of a killed run to notice and exit. Returns the descriptor to close."""
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise OutputError(
                    f"another seco-data process is writing to {out}",
                    hint="wait for it to finish, or stop it; then rerun to resume",
                ) from None
            time.sleep(0.2)
