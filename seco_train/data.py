"""An infinite, reproducible stream of training views from WebDataset shards.

Every DataLoader worker of every rank draws shards WITH replacement from its own RNG (webdataset's
``resampled=True``), so no rank ever runs dry and DDP never waits at an epoch end: the trainer counts
steps. Shard ``d`` of worker ``w`` on rank ``r`` is a pure function of ``(seed, r, w, d)``; samples
are read in order inside a shard (the export shuffled locations), and sample number ``n`` of the
worker gets its views from a ``torch.Generator`` seeded with ``(seed, r, w, n)``. The stream is
therefore a pure function of ``(seed, rank, worker)``, and ``start`` resumes it exactly: whole
shards are skipped by their manifest ``nsamples`` without being read. Only the shard members holding
the view bands are read (``iter_shard(bands=...)``).

Where the views are made (``augment_on``):

- ``"device"`` (default): workers ship packed samples (:func:`seco_train.batched.pack_sample`: the
  drawn seasons as uint8 after the seco stretch, plus each view's random parameters), and
  :class:`seco_train.batched.BatchViews` makes the views of the whole batch on the training device;
- ``"workers"``: workers make each sample's views (:func:`seco_train.views.make_views`) and ship them
  as float32.

Both draw the same random parameters from the same generators, so they give the same views (within
float rounding: tests/test_batched.py). :class:`DeviceBatches` puts the batches on the device, on CUDA
one batch ahead on a side stream.
"""

from __future__ import annotations

import collections
import json
import logging
import os
from typing import Iterator

import numpy as np
import torch

from seco_data import storage
from seco_data.errors import ShardError, UsageError
from seco_data.export.reader import current_split, expand_urls, iter_shard
from seco_data.export.webdataset import MANIFEST

from .batched import collate, pack_sample
from .config import AUGMENT_ON
from .views import SeasonImages, SkipSample, ViewConfig, check_sample, make_views

log = logging.getLogger(__name__)

_DRAW, _VIEWS = 1, 2  # seed-sequence domains: shard draws, view generators
#: this many unusable samples in a row (or twice the largest shard) stop the stream with an error
MAX_UNUSABLE_IN_A_ROW = 1000


def shard_sizes(urls: list[str]) -> dict[str, int]:
    """``nsamples`` of every shard listed in the ``shards.json`` beside it (local or object storage)."""
    sizes: dict[str, int] = {}
    manifests: dict[str, dict[str, int]] = {}
    for url in urls:
        if url.startswith(("http://", "https://")):
            continue
        folder, name = storage.split(url)
        if folder not in manifests:
            manifests[folder] = {}
            path = storage.join(folder, MANIFEST)
            if storage.size_of(path) is not None:
                try:
                    m = json.loads(storage.read_bytes(path).decode("utf-8"))
                    manifests[folder] = {s["url"].rsplit("/", 1)[-1]: int(s["nsamples"]) for s in m["shardlist"]}
                except (OSError, ValueError, KeyError, TypeError) as e:
                    log.warning("cannot read the shard manifest %s (%s): shards will be counted", path, e)
        n = manifests[folder].get(name)
        if n is not None:
            sizes[url] = n
    return sizes


def dataset_size(urls) -> int:
    """Samples in the shard set (from shards.json when present, else counting)."""
    expanded = expand_urls(urls)
    sizes = shard_sizes(expanded)
    return sum(sizes[u] if u in sizes else sum(1 for _ in iter_shard(u, decode=False, bands=())) for u in expanded)


def _seed(domain: int, *words: int) -> int:
    return int(np.random.SeedSequence([domain, *words]).generate_state(1, np.uint64)[0]) & (2**63 - 1)


class SeasonalViews(torch.utils.data.IterableDataset):
    """An infinite stream of view tuples ``(q, [k...])`` for one rank (see the module docstring), or of
    packed samples (``packed=True``: :func:`seco_train.batched.pack_sample`).

    ``start`` is the number of samples each worker of this rank has already consumed (yielded).
    Rank and world size default to torch.distributed when initialised, else RANK / WORLD_SIZE.
    Unusable samples (a requested band missing, no season) are skipped and counted in ``skipped``.
    """

    def __init__(self, urls, cfg: ViewConfig, *, seed: int = 0, rank: int | None = None,
                 world_size: int | None = None, start: int = 0, packed: bool = False):
        super().__init__()
        self.packed = packed
        self.urls = expand_urls(urls)
        if not self.urls:
            raise ShardError(f"no shards in {urls}")
        split = current_split()
        self.rank = split.rank if rank is None else int(rank)
        self.world_size = split.world_size if world_size is None else int(world_size)
        if not 0 <= self.rank < self.world_size:
            raise UsageError(f"rank {self.rank} is not in [0, world size {self.world_size})")
        if start < 0:
            raise UsageError(f"start must be >= 0, not {start}")
        self.cfg = cfg
        self.seed = int(seed)
        self.start = int(start)
        self.sizes = shard_sizes(self.urls)
        self.skipped: collections.Counter = collections.Counter()
        # set by make_loader for a resumed DataLoader: per-worker starts and the worker rotation
        self._worker_starts: list[int] | None = None
        self._worker_shift = 0

    def _resume_at(self, step: int, batch_size: int, workers: int) -> None:
        """Position each DataLoader worker as after ``step`` batches of ``batch_size`` (batch b comes
        from worker b % workers; the fresh loader's worker 0 plays the worker of batch ``step``)."""
        n = max(workers, 1)
        self._worker_shift = step % n
        self._worker_starts = [-(-(step - w) // n) * batch_size if step > w else 0 for w in range(n)]

    def _identity(self) -> tuple[int, int]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        worker = (worker + self._worker_shift) % workers
        start = self.start if self._worker_starts is None else self._worker_starts[worker]
        return worker, start

    def shard_of(self, worker: int, draw: int) -> str:
        """The shard of draw number ``draw`` of ``worker`` on this rank."""
        rng = np.random.default_rng(_seed(_DRAW, self.seed, self.rank, worker, draw))
        return self.urls[int(rng.integers(len(self.urls)))]

    def generator(self, worker: int, sample: int) -> torch.Generator:
        """The generator of the views of sample number ``sample`` of ``worker`` on this rank."""
        return torch.Generator().manual_seed(_seed(_VIEWS, self.seed, self.rank, worker, sample))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, list[torch.Tensor]]]:
        worker, start = self._identity()
        n = 0  # samples yielded (or skipped over by start)
        unusable = 0
        limit = max([MAX_UNUSABLE_IN_A_ROW, *(2 * s for s in self.sizes.values())])
        draw = 0
        while True:
            url = self.shard_of(worker, draw)
            draw += 1
            size = self.sizes.get(url)
            if size is not None and n + size <= start:
                n += size  # the whole shard lies before the resume point: not read
                continue
            skipped = collections.Counter()
            for sample in iter_shard(url, bands=self.cfg.bands):
                try:
                    if n < start:
                        check_sample(sample, self.cfg)
                        n += 1
                        continue
                    images = SeasonImages(sample, self.cfg)
                except SkipSample as e:
                    skipped[e.reason] += 1
                    unusable += 1
                    if unusable >= limit:
                        raise UsageError(f"{unusable} samples in a row give no views, the last: {e}",
                                         hint="export the shards with the bands the views need") from None
                    continue
                unusable = 0
                generator = self.generator(worker, n)
                n += 1
                if self.packed:
                    yield pack_sample(images, self.cfg, generator)
                else:
                    views = make_views(images, self.cfg, generator)
                    yield views[0], views[1:]
            if skipped:
                self.skipped.update(skipped)
                log.warning("shard %s: skipped %s (rank %d worker %d; %s so far)", url, dict(skipped),
                            self.rank, worker, dict(self.skipped))


def make_loader(urls, cfg: ViewConfig, *, batch_size: int, workers: int, seed: int, rank: int = 0,
                world_size: int = 1, start_step: int = 0, augment_on: str = "workers",
                pin_memory: bool | None = None) -> torch.utils.data.DataLoader:
    """DataLoader over SeasonalViews with `workers` processes (persistent; pinned memory when CUDA is
    available, or as ``pin_memory`` says). Batches: ``augment_on="workers"``: (q, [k0, k1, k2]) of shape
    (B, C, size, size); ``"device"``: collated packed samples for :class:`seco_train.batched.BatchViews`.
    start_step: resume after that many batches of this rank (with DataLoader workers, batch b comes from
    worker b % workers: compute each worker's `start` from it).

    A resume gives the same batches only with the same urls, cfg, batch_size, workers, seed and rank.
    Take one iterator of the loader: each new iterator starts the stream again at ``start_step``."""
    if batch_size < 1 or workers < 0 or start_step < 0:
        raise UsageError(f"batch_size >= 1, workers >= 0 and start_step >= 0 needed, not "
                         f"{batch_size}, {workers}, {start_step}")
    if augment_on not in AUGMENT_ON or augment_on == "auto":
        raise UsageError(f"augment_on must be device or workers, not {augment_on!r}")
    packed = augment_on == "device"
    dataset = SeasonalViews(urls, cfg, seed=seed, rank=rank, world_size=world_size, packed=packed)
    dataset._resume_at(start_step, batch_size, workers)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        collate_fn=collate if packed else None,
    )


def default_workers(local_ranks: int = 1) -> int:
    """Loader workers per rank when the config leaves ``data.workers`` unset: this process's cores
    shared among the ranks of this machine, one core left to each rank's main process, at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, local_ranks) - 1)


class DeviceBatches:
    """The batches of ``loader`` as ``(q, [k...])`` on ``device``: ``transform(batch)`` copies a batch
    there (and, on the device path, makes its views: :class:`seco_train.batched.BatchViews`).

    On CUDA the transform of the next batch runs on a side stream as soon as the current batch is
    handed out, so its host-to-device copy (from pinned memory) and its augmentation overlap the
    training step of the current one; the compute stream waits for it only when it needs it."""

    def __init__(self, loader, transform, device: str | torch.device):
        self.loader = loader
        self.transform = transform
        self.device = torch.device(device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, list[torch.Tensor]]]:
        batches = iter(self.loader)
        if self.device.type != "cuda":
            for batch in batches:
                yield self.transform(batch)
            return
        side = torch.cuda.Stream(self.device)

        def prepare():
            try:
                batch = next(batches)
            except StopIteration:
                return None
            with torch.cuda.stream(side):
                out = self.transform(batch)
                done = torch.cuda.Event()
                done.record(side)
            return out, done

        ready = prepare()
        while ready is not None:
            (q, keys), done = ready
            compute = torch.cuda.current_stream(self.device)
            compute.wait_event(done)
            for t in (q, *keys):
                t.record_stream(compute)  # made on the side stream, used on this one
            ready = prepare()
            yield q, keys


class ToDevice:
    """The transform of view batches made by the workers: copy to ``device`` (non-blocking from pinned
    memory), channels-last when asked."""

    def __init__(self, device: str | torch.device, channels_last: bool = False):
        self.device = torch.device(device)
        self.channels_last = channels_last

    def __call__(self, batch) -> tuple[torch.Tensor, list[torch.Tensor]]:
        q, keys = batch
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        q = q.to(self.device, non_blocking=True).contiguous(memory_format=fmt)
        return q, [k.to(self.device, non_blocking=True).contiguous(memory_format=fmt) for k in keys]
