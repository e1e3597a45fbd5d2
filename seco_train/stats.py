"""Per-band statistics of a shard set, in reflectance units (DN * scale), for ``stretch="stats"``.

Pixels are counted exactly in a histogram of DN values per band (65,536 bins for uint16), so the mean,
the standard deviation and the quantiles (NumPy's default linear interpolation) are those of every
pixel, every season, of the sampled locations, on each band's native grid.
"""

from __future__ import annotations

import collections
import logging

import numpy as np

from seco_data.bands import DN_SCALE, canonical
from seco_data.errors import ShardError, UsageError
from seco_data.export.reader import expand_urls, iter_shard

log = logging.getLogger(__name__)

QUANTILES = {"q02": 0.02, "q98": 0.98}


class _Histogram:
    """Counts of each stored value of one band, per scale."""

    def __init__(self):
        self.counts: dict[tuple[float, str], np.ndarray] = {}  # (scale, dtype) -> counts by DN
        self.other: list[tuple[np.ndarray, np.ndarray]] = []  # (reflectance values, counts), other dtypes

    def add(self, dn: np.ndarray, scale: float) -> None:
        if dn.dtype in (np.uint8, np.uint16):
            key = (scale, dn.dtype.name)
            c = np.bincount(dn.ravel(), minlength=np.iinfo(dn.dtype).max + 1)
            self.counts[key] = c if key not in self.counts else self.counts[key] + c
        else:
            v, c = np.unique(dn.astype(np.float64) * scale, return_counts=True)
            self.other.append((v, c))

    def values_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted distinct reflectance values and their counts."""
        parts = [(np.nonzero(c)[0] * scale, c[c > 0]) for (scale, _), c in self.counts.items()] + self.other
        v = np.concatenate([p[0] for p in parts]).astype(np.float64)
        c = np.concatenate([p[1] for p in parts]).astype(np.int64)
        v, inverse = np.unique(v, return_inverse=True)
        return v, np.bincount(inverse, weights=c).astype(np.int64)

    def summary(self) -> dict:
        v, c = self.values_counts()
        n = int(c.sum())
        mean = float((v * c).sum() / n)
        std = float(np.sqrt(((v - mean) ** 2 * c).sum() / n))
        out = {"mean": mean, "std": std}
        cum = np.cumsum(c)
        for name, q in QUANTILES.items():
            pos = q * (n - 1)  # NumPy's default ("linear") quantile
            k = int(np.floor(pos))
            lo = v[np.searchsorted(cum, k, side="right")]
            hi = v[np.searchsorted(cum, min(k + 1, n - 1), side="right")]
            out[name] = float(lo + (hi - lo) * (pos - k))
        out["pixels"] = n
        return out


def compute_stats(urls, bands=None, max_samples: int = 2000, seed: int = 0) -> dict:
    """Per band ``{"mean", "std", "q02", "q98", "pixels"}`` in reflectance units (DN * scale).

    The locations are the first ``max_samples`` usable samples of the shards read in an order
    permuted with ``seed`` (the export already shuffled locations into shards). ``bands=None``: every
    band of the first sample. Samples lacking a band are skipped and counted.
    """
    if max_samples < 1:
        raise UsageError(f"max_samples must be >= 1, not {max_samples}")
    shards = expand_urls(urls)
    if not shards:
        raise ShardError(f"no shards in {urls}")
    try:
        wanted = tuple(canonical(b) for b in bands) if bands else None
    except KeyError as e:
        raise UsageError(f"unknown band {e.args[0]!r}") from None
    hists: dict[str, _Histogram] = {}
    samples = 0
    skipped: collections.Counter = collections.Counter()
    for i in np.random.default_rng(seed).permutation(len(shards)):
        for sample in iter_shard(shards[i]):
            arrays = sample["json"].get("arrays", {})
            where = {b: (name, row, float(a.get("scale", DN_SCALE)))
                     for name, a in arrays.items() for row, b in enumerate(a.get("bands", ()))}
            if wanted is None:
                wanted = tuple(where)
            if any(b not in where or where[b][0] not in sample for b in wanted):
                skipped["missing_band"] += 1
                continue
            for b in wanted:
                name, row, scale = where[b]
                hists.setdefault(b, _Histogram()).add(sample[name][:, row], scale)
            samples += 1
            if samples >= max_samples:
                break
        if samples >= max_samples:
            break
    if skipped:
        log.warning("statistics: skipped %s", dict(skipped))
    if not samples:
        raise UsageError(f"no sample of {urls} holds the bands {', '.join(wanted or ())}")
    log.info("statistics of %d bands from %d samples", len(wanted), samples)
    return {b: {**hists[b].summary(), "samples": samples} for b in wanted}
