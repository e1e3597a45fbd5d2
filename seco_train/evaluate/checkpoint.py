"""Epoch checkpoints of the long evaluation protocols, so that an interrupted ``seco-train eval`` resumes.

``finetune`` and the reference EuroSAT recipe (``linear`` with the backbone in train mode) run the
backbone on every training batch of every epoch: their 100 epochs take hours on a CPU. After an epoch
(at most once every ``interval`` seconds, and after the last one) the whole training state is written
atomically beside the report: the weights that move (the head; the backbone's BatchNorm statistics, or
the whole model when fine-tuning), the optimiser, the shuffling and augmentation generators, torch's
global random state (dropout), the step, the history and the seconds spent so far. Run again with the
same settings, the evaluation starts at the next epoch and ends with the numbers an uninterrupted run
gives (bit for bit on the same device and software: ``tests/test_eval_resume.py``).

The checkpoint carries a fingerprint of everything that decides the result (benchmark, protocol and
preset, the resolved recipe, the weights' sha256, the data lists and the training subset; not the
device or the number of loader workers). One made with other settings is refused, never mixed in:
``--restart`` discards it. ``seco-train eval`` deletes it once the report is written.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from seco_data.errors import UsageError
from seco_data.outputs import atomic_file

log = logging.getLogger(__name__)

#: seconds between two checkpoints (the last epoch is always saved)
INTERVAL = 30.0
FORMAT = 1


class EpochCheckpoint:
    """The training state of one evaluation at the end of its last finished epoch, in ``path``."""

    def __init__(self, path: str | Path, fingerprint: str, *, interval: float = INTERVAL):
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.interval = interval
        self._saved_at = time.monotonic()
        self._started = time.monotonic()
        #: seconds spent by earlier sittings (from a loaded checkpoint)
        self.elapsed_before = 0.0
        #: the epoch a loaded checkpoint ended (None: started from scratch)
        self.resumed_from: int | None = None

    def load(self) -> dict | None:
        """The saved state, or None when there is none. Refuses a state of other settings or an unreadable file."""
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            ok = isinstance(state, dict) and state.get("format") == FORMAT and "epoch" in state
        except Exception as e:  # noqa: BLE001 - any unreadable file: one message
            raise UsageError(f"evaluation checkpoint {self.path} is unreadable ({type(e).__name__}: {e})",
                             hint="pass --restart to discard it and start this evaluation again") from None
        if not ok:
            raise UsageError(f"{self.path} is not an evaluation checkpoint of this version",
                             hint="pass --restart to discard it and start this evaluation again")
        if state.get("fingerprint") != self.fingerprint:
            raise UsageError(f"{self.path} holds an interrupted evaluation with other settings (weights, data, "
                             f"protocol or recipe; it stopped after epoch {state['epoch']})",
                             hint="run it again with the same options to resume it, pass --restart to discard "
                                  "it, or write this report elsewhere (--out)")
        self.elapsed_before = float(state.get("elapsed", 0.0))
        self.resumed_from = int(state["epoch"])
        log.info("resuming the evaluation from %s after epoch %d", self.path, state["epoch"])
        return state

    def save(self, epoch: int, make_state: Callable[[], dict], *, last: bool = False) -> bool:
        """Write the state after ``epoch`` (1-based) unless one was written less than ``interval`` s ago."""
        now = time.monotonic()
        if not last and now - self._saved_at < self.interval:
            return False
        state = make_state()
        state.update(format=FORMAT, fingerprint=self.fingerprint, epoch=epoch, elapsed=self.elapsed())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(self.path) as f:
            torch.save(state, f)
        self._saved_at = time.monotonic()
        return True

    def elapsed(self) -> float:
        """Seconds of training so far, earlier sittings included."""
        return self.elapsed_before + time.monotonic() - self._started

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def rng_state(device: str) -> dict:
    """torch's global random state (CPU, and the device's when it is CUDA)."""
    state = {"cpu": torch.get_rng_state()}
    if str(device).startswith("cuda"):
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: str) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and str(device).startswith("cuda"):
        torch.cuda.set_rng_state(state["cuda"], device)


def buffers(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's buffers (BatchNorm's running statistics and counters), on the CPU."""
    return {k: v.detach().cpu().clone() for k, v in module.named_buffers()}


def load_buffers(module: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    own = dict(module.named_buffers())
    if set(own) != set(saved):
        raise UsageError("the checkpoint's BatchNorm statistics do not match this backbone",
                         hint="pass --restart to discard the checkpoint")
    with torch.no_grad():
        for k, v in saved.items():
            own[k].copy_(v)
