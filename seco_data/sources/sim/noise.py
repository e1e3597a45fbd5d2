"""Hash-based value noise on absolute coordinates, and its calibrated distribution.

Everything the simulator draws comes from integer hashing (splitmix64 finaliser) of a key and
absolute lattice indices, never from a global random state: the same key and position always give
the same value, whatever grid asks for it and in whatever order.

Value noise is evaluated *separably*: pixel grids are axis-aligned in UTM, so one octave is
``lerp`` along x on the few lattice rows the patch touches, then ``lerp`` along y. Every pixel of
every grid goes through the same floating-point operations on the same inputs, so two overlapping
grids get bit-identical fields on their overlap.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_U_M1, _U_M2 = np.uint64(_M1), np.uint64(_M2)
_U_PX, _U_PY = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F)
_S30, _S27, _S31, _S40 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(40)
_INV24 = np.float32(2.0**-24)


# --------------------------------------------------------------------------- scalar keys
def mix64(z: int) -> int:
    """splitmix64 on a Python int (64-bit wrap-around)."""
    z = (z + _GOLDEN) & _MASK
    z = ((z ^ (z >> 30)) * _M1) & _MASK
    z = ((z ^ (z >> 27)) * _M2) & _MASK
    return z ^ (z >> 31)


def _part(p) -> int:
    if isinstance(p, str):
        return int.from_bytes(hashlib.blake2b(p.encode(), digest_size=8).digest(), "little")
    return int(p) & _MASK


def key(*parts) -> int:
    """A 64-bit key from ints and strings (order matters)."""
    h = 0x5EC0_5EC0_5EC0_5EC0
    for p in parts:
        h = mix64(h ^ _part(p))
    return h


def unit(*parts) -> float:
    """A uniform number in [0, 1) from the key of ``parts``."""
    return (key(*parts) >> 11) * 2.0**-53


# --------------------------------------------------------------------------- array hashing
def _mix_arr(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, in place on a uint64 array (wrap-around is intended)."""
    h ^= h >> _S30
    h *= _U_M1
    h ^= h >> _S27
    h *= _U_M2
    h ^= h >> _S31
    return h


def hash_u64(k, ix, iy) -> np.ndarray:
    """uint64 hash of key ``k`` (int or uint64 array) and int64 lattice indices (broadcast)."""
    hx = np.asarray(ix, dtype=np.int64).astype(np.uint64) * _U_PX
    hy = np.asarray(iy, dtype=np.int64).astype(np.uint64) * _U_PY
    kk = np.uint64(k) if isinstance(k, int) else np.asarray(k, dtype=np.uint64)
    h = _mix_arr(np.array(hx ^ kk, dtype=np.uint64, ndmin=1))
    return _mix_arr(h ^ hy)


def hash_unit(k, ix, iy) -> np.ndarray:
    """float32 uniform in [0, 1) (24 bits) per lattice point."""
    return (hash_u64(k, ix, iy) >> _S40).astype(np.float32) * _INV24


def octave_key(k: int, octave: int) -> int:
    return mix64(k ^ ((octave + 1) * _GOLDEN & _MASK))


def _octave_key_arr(k: np.ndarray, octave: int) -> np.ndarray:
    z = np.asarray(k, dtype=np.uint64) ^ np.uint64((octave + 1) * _GOLDEN & _MASK)
    z = z + np.uint64(_GOLDEN)
    return _mix_arr(z)


# --------------------------------------------------------------------------- value noise
@dataclass(frozen=True)
class Octaves:
    """Lattice spacings (metres, integers) and amplitudes of a fractal value noise."""

    spacings: tuple[int, ...]
    amps: tuple[float, ...]

    def __post_init__(self):
        if len(self.spacings) != len(self.amps) or not self.spacings:
            raise ValueError("Octaves needs one amplitude per spacing")

    @property
    def total(self) -> float:
        return float(sum(self.amps))


def _weights(coord: np.ndarray, offset: int, spacing: int, smooth: bool):
    g = coord + offset
    i0 = g // spacing
    t = (g - i0 * spacing).astype(np.float32) / np.float32(spacing)
    if smooth:
        t = t * t * (np.float32(3.0) - np.float32(2.0) * t)
    return i0, t


class Scratch:
    """Two reusable (H, W) float32 buffers: large temporaries cost page faults on every allocation."""

    def __init__(self, shape: tuple[int, int]):
        self.a = np.empty(shape, dtype=np.float32)
        self.b = np.empty(shape, dtype=np.float32)


def lerp_lattice(values: np.ndarray, ia: np.ndarray, wx: np.ndarray, ja: np.ndarray, wy: np.ndarray,
                 out: np.ndarray, scratch: Scratch | None = None, add: bool = True) -> np.ndarray:
    """Separable interpolation of lattice ``values`` (nj, ni) to pixels, into ``out`` (H, W).

    ``ia``/``ja`` index the lower node of each pixel column/row, ``wx``/``wy`` are the weights of the
    upper node. Adds to ``out`` when ``add``, else overwrites it.
    """
    a = values[:, ia]
    r = a + (values[:, ia + 1] - a) * wx  # (nj, W), small
    d = r[1:] - r[:-1]
    s = scratch or Scratch(out.shape)
    np.take(d, ja, axis=0, out=s.a)
    np.multiply(s.a, wy[:, None], out=s.a)
    np.take(r, ja, axis=0, out=s.b)
    if add:
        np.add(s.a, s.b, out=s.a)
        np.add(out, s.a, out=out)
    else:
        np.add(s.a, s.b, out=out)
    return out


COARSE_STEP = 40  # m: octaves of spacing >= 8 steps are summed on this lattice, then interpolated


def lattice_weights(xs: np.ndarray, ys: np.ndarray, step: int, top: int, left: int):
    """(ia, wx, ja, wy) for :func:`lerp_lattice` from a lattice of ``step`` m whose node columns start
    at index ``left`` (eastwards) and node rows at index ``top`` (southwards)."""
    i0 = xs // step
    wx = (xs - i0 * step).astype(np.float32) / np.float32(step)
    j0 = ys // step
    wy = (ys - j0 * step).astype(np.float32) / np.float32(step)
    return i0 - left, wx, top - (j0 + 1), np.float32(1.0) - wy


def _octaves(k, xs, ys, octaves: Octaves, which, offset, smooth, out, scratch) -> None:
    for n, o in enumerate(which):
        s, amp = octaves.spacings[o], octaves.amps[o]
        i0, wx = _weights(xs, int(offset[0]), int(s), smooth)
        j0, wy = _weights(ys, int(offset[1]), int(s), smooth)
        imin, jmin = int(i0.min()), int(j0.min())
        ni, nj = int(i0.max()) - imin + 2, int(j0.max()) - jmin + 2
        nodes = hash_unit(octave_key(k, o), np.arange(imin, imin + ni)[None, :],
                          np.arange(jmin, jmin + nj)[:, None])
        nodes = nodes * np.float32(2 * amp) - np.float32(amp)
        lerp_lattice(nodes, i0 - imin, wx, j0 - jmin, wy, out, scratch, add=n > 0)


def fbm(k: int, xs: np.ndarray, ys: np.ndarray, octaves: Octaves, offset=(0, 0),
        smooth: bool = True, scratch: Scratch | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Fractal value noise on the pixel grid ``ys`` x ``xs`` (int64 metres, pixel centres).

    Each octave's lattice values are uniform in [-amp, amp]; the result is float32 (H, W). Octaves
    much coarser than :data:`COARSE_STEP` are summed on that absolute lattice first and interpolated
    once (indistinguishable, and several times cheaper).
    """
    xs = np.asarray(xs, dtype=np.int64)
    ys = np.asarray(ys, dtype=np.int64)
    shape = (len(ys), len(xs))
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    scratch = scratch or Scratch(shape)
    pixel = int(abs(xs[1] - xs[0])) if len(xs) > 1 else COARSE_STEP
    coarse = [o for o, s in enumerate(octaves.spacings) if s >= 8 * COARSE_STEP and pixel < COARSE_STEP]
    fine = [o for o in range(len(octaves.spacings)) if o not in coarse]
    if len(coarse) >= 2:
        step = COARSE_STEP
        left, right = int(xs.min()) // step, int(xs.max()) // step + 1
        top, bottom = int(ys.max()) // step + 1, int(ys.min()) // step
        nx = np.arange(left, right + 1, dtype=np.int64) * step
        ny = np.arange(top, bottom - 1, -1, dtype=np.int64) * step
        nodes = np.empty((len(ny), len(nx)), dtype=np.float32)
        _octaves(k, nx, ny, octaves, coarse, offset, smooth, nodes, Scratch(nodes.shape))
        ia, wx, ja, wy = lattice_weights(xs, ys, step, top, left)
        lerp_lattice(nodes, ia, wx, ja, wy, out, scratch, add=False)
        if fine:
            acc = np.empty(shape, dtype=np.float32)
            _octaves(k, xs, ys, octaves, fine, offset, smooth, acc, scratch)
            out += acc
    else:
        _octaves(k, xs, ys, octaves, range(len(octaves.spacings)), offset, smooth, out, scratch)
    return out


def fbm_points(k, x, y, octaves: Octaves, offset=(0, 0), smooth: bool = True) -> np.ndarray:
    """The same noise as :func:`fbm` at scattered points (``k`` may be an array of keys)."""
    x = np.asarray(x, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    x, y = np.broadcast_arrays(x, y)
    shape = x.shape
    x, y = x.reshape(-1), y.reshape(-1)
    out = np.zeros(x.shape, dtype=np.float32)
    for o, (s, amp) in enumerate(zip(octaves.spacings, octaves.amps)):
        ko = octave_key(k, o) if isinstance(k, int) else _octave_key_arr(k, o)
        i0, wx = _weights(x, int(offset[0]), int(s), smooth)
        j0, wy = _weights(y, int(offset[1]), int(s), smooth)
        v00, v10 = hash_unit(ko, i0, j0), hash_unit(ko, i0 + 1, j0)
        v01, v11 = hash_unit(ko, i0, j0 + 1), hash_unit(ko, i0 + 1, j0 + 1)
        a2, a = np.float32(2 * amp), np.float32(amp)
        v00, v10, v01, v11 = (v * a2 - a for v in (v00, v10, v01, v11))
        r0 = v00 + (v10 - v00) * wx
        r1 = v01 + (v11 - v01) * wx
        out += r0 + (r1 - r0) * wy
    return out.reshape(shape)


# --------------------------------------------------------------------------- calibration
class NoiseCDF:
    """Empirical distribution of a noise (over random positions and keys), for exact thresholds.

    ``threshold(p)`` is the noise level exceeded with probability ``p`` at any pixel, once the
    lattice phase is random (a per-scene offset) or averaged over positions.
    """

    LEVELS = np.linspace(0.0, 1.0, 4097)

    def __init__(self, octaves: Octaves, resolution: int, n: int = 1 << 17):
        idx = np.arange(n, dtype=np.int64)
        keys = hash_u64(key("calibration", *octaves.spacings), idx % 997, 0)
        span = 1 << 20
        h = hash_u64(key("calibration-xy"), idx, 1)
        x = ((h >> np.uint64(8)) % np.uint64(span)).astype(np.int64) * resolution
        y = ((h >> np.uint64(36)) % np.uint64(span)).astype(np.int64) * resolution
        samples = np.sort(fbm_points(keys, x, y, octaves).astype(np.float64))
        q = np.quantile(samples, self.LEVELS)
        # widen the ends a little so p = 0 and p = 1 give all-false / all-true
        pad = octaves.total * 0.02
        q[0] -= pad
        q[-1] += pad
        self.quantiles = q
        self.std = float(samples.std())

    def threshold(self, p) -> np.ndarray:
        """Noise level with P(noise > level) = p (p scalar or array)."""
        return np.interp(1.0 - np.asarray(p, dtype=np.float64), self.LEVELS, self.quantiles)

    def below(self, p) -> np.ndarray:
        """Noise level with P(noise < level) = p."""
        return np.interp(np.asarray(p, dtype=np.float64), self.LEVELS, self.quantiles)

    def cdf(self, v) -> np.ndarray:
        return np.interp(np.asarray(v, dtype=np.float64), self.quantiles, self.LEVELS)


_cdf_lock = threading.Lock()
_cdfs: dict[tuple, NoiseCDF] = {}


def noise_cdf(octaves: Octaves, resolution: int) -> NoiseCDF:
    """The calibrated distribution of ``octaves`` sampled at ``resolution`` (computed once)."""
    k = (octaves, resolution)
    cdf = _cdfs.get(k)
    if cdf is None:
        with _cdf_lock:
            cdf = _cdfs.get(k)
            if cdf is None:
                cdf = _cdfs[k] = NoiseCDF(octaves, resolution)
    return cdf


# --------------------------------------------------------------------------- white noise
_WHITE_N = 512


@lru_cache(maxsize=1)
def _white_table() -> np.ndarray:
    """A periodic table of approximately N(0, 1) float32 values (Irwin-Hall of 4 hashes), tiled 2x2."""
    i = np.arange(_WHITE_N, dtype=np.int64)
    acc = np.zeros((_WHITE_N, _WHITE_N), dtype=np.float32)
    for r in range(4):
        acc += hash_unit(key("white", r), i[None, :], i[:, None])
    acc -= np.float32(2.0)
    acc *= np.float32(np.sqrt(3.0))
    return np.tile(acc, (2, 2))


def white(k: int, col0: int, row0: int, h: int, w: int) -> np.ndarray:
    """(h, w) window of white noise at absolute pixel indices, shifted per key (read-only view)."""
    t = _white_table()
    ox = (col0 + (k & 0xFFFF)) % _WHITE_N
    oy = (row0 + ((k >> 16) & 0xFFFF)) % _WHITE_N
    if h <= _WHITE_N and w <= _WHITE_N:
        return t[oy:oy + h, ox:ox + w]
    rows = (oy + np.arange(h)) % _WHITE_N
    cols = (ox + np.arange(w)) % _WHITE_N
    return t[np.ix_(rows, cols)]
