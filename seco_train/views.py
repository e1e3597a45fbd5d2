"""Training views of one location: SeCo's seasonal views and the MoCo-v2 baselines (SECO.md section 2).

A shard sample (``seasons`` x bands arrays) becomes float images with :func:`to_images`, and
:func:`make_views` draws the views from them with a ``torch.Generator``, so the same generator state
always gives the same views (exact resume).

Modes (``t0``, ``t1``, ``t2``: season indices drawn uniformly WITH replacement, as the reference's
``np.random.choice``):

- ``seco`` (``SeasonalContrastMultiAug``): ``q = crop(t0)``, ``k0 = crop(aug(t1))``,
  ``k1 = crop(t2)``, ``k2 = crop(aug(t0))``: the augmentations run on the full image, the crop last.
- ``moco`` (``SeasonalContrastBasic`` + MoCo-v2 transform): two views of ONE season ``t``;
  ``moco_tp`` (``SeasonalContrastTemporal`` + MoCo-v2 transform): one view of ``t0``, one of ``t1``.
  Each view is ``aug(crop(.))``: the MoCo-v2 transform puts RandomResizedCrop first.

``crop`` is RandomResizedCrop(size, scale, ratio 3/4..4/3; torchvision's sampling with 10 tries and
a centre-crop fallback; bilinear, antialiased). ``aug`` is, in the reference's order:
ColorJitter(0.4, 0.4, 0.4, 0.1) with p=0.8 (the four adjustments in random order), RandomGrayscale
p=0.2, GaussianBlur with sigma ~ U[0.1, 2.0] p=0.5 (the reference's PIL ``GaussianBlur(radius=sigma)``
as torchvision's kernel of radius ceil(3 sigma), reflect padding), horizontal flip p=0.5. Every view
gets its own crop; normalisation comes last. The operations are torchvision.transforms.v2.functional's,
except the hue rotation and the blur: faster forms of the same functions (tested equal to them).
Random numbers come only from the generator, a fixed count per crop and per augmentation.

Stretches:

- ``seco`` (B02/B03/B04 only): DN -> SeCo 8-bit ``floor(clip(DN * scale, 0, 1) * 255)`` (uint8 data
  stored with scale 1/255 is taken as is), then the reference's per-band quantile stretch
  ``uint8(clip((v - min_q) / (max_q - min_q) * 255, 0, 255))``, so images are multiples of 1/255 in
  [0, 1]; colour operations clamp to [0, 1] (torchvision's float ops); ImageNet mean/std last (B04 as
  red, B03 green, B02 blue). Unlike PIL, the augmentations do not round to uint8 between steps.
- ``stats``: images are reflectance ``DN * scale``; colour operations only clamp below at 0;
  ``(x - mean) / std`` per band last.

Band sets other than three bands: brightness multiplies every band; contrast blends each band with
its own mean (torchvision blends the three RGB bands with their common grey mean); saturation, hue
and grayscale are RGB-only and are skipped (their random numbers are still drawn). Three bands are
treated as R, G, B in ``bands`` order.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as nnf
import torchvision.transforms.v2.functional as F

from seco_data.bands import DN_SCALE, canonical, to_uint8
from seco_data.errors import SecoError, UsageError

from .config import MODES, STRETCHES

#: SeCo's per-band 2 % / 98 % quantiles in its uint8 units (reference ``QUANTILES``).
SECO_QUANTILES = {"B02": (3.0, 88.0), "B03": (2.0, 103.0), "B04": (0.0, 129.0)}
#: ImageNet mean / std of the red, green and blue channels.
IMAGENET = {"B04": (0.485, 0.229), "B03": (0.456, 0.224), "B02": (0.406, 0.225)}
JITTER = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue
P_JITTER, P_GRAY, P_BLUR, P_FLIP = 0.8, 0.2, 0.5, 0.5
BLUR_SIGMA = (0.1, 2.0)
RATIO = (3 / 4, 4 / 3)
CROP_TRIES = 10
_CROP_U = 4 * CROP_TRIES  # uniforms a crop consumes
_AUG_U = 13  # uniforms an augmentation consumes
#: views of each mode
VIEWS = {"seco": 4, "moco": 2, "moco_tp": 2}


class SkipSample(SecoError, ValueError):
    """A sample cannot give views (``reason``: ``missing_band``, ``no_season``)."""

    def __init__(self, message: str, *, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ViewConfig:
    """How samples become views; see the module docstring."""

    mode: str = "seco"
    size: int = 224
    scale: tuple[float, float] = (0.2, 1.0)
    bands: tuple[str, ...] = ("B04", "B03", "B02")
    stretch: str = "seco"
    stats: dict | None = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise UsageError(f"view mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.stretch not in STRETCHES:
            raise UsageError(f"stretch {self.stretch!r} is not one of {', '.join(STRETCHES)}")
        if int(self.size) != self.size or self.size < 1:
            raise UsageError(f"view size must be a positive integer, not {self.size!r}")
        scale = tuple(float(s) for s in self.scale)
        if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
            raise UsageError(f"crop scale must be (lo, hi) with 0 < lo <= hi <= 1, not {self.scale!r}")
        try:
            bands = tuple(canonical(b) for b in self.bands)
        except KeyError as e:
            raise UsageError(f"unknown band {e.args[0]!r} in view bands {self.bands!r}") from None
        if not bands or len(set(bands)) != len(bands):
            raise UsageError(f"view bands must be distinct and not empty: {self.bands!r}")
        if self.stretch == "seco" and any(b not in SECO_QUANTILES for b in bands):
            raise UsageError(f"the seco stretch knows B02, B03 and B04 only, not {bands!r}",
                             hint="use stretch='stats' with statistics from `seco-train stats`")
        if self.stretch == "stats":
            for b in bands:
                s = (self.stats or {}).get(b)
                if not isinstance(s, dict) or "mean" not in s or not float(s.get("std", 0)) > 0:
                    raise UsageError(f"stretch='stats' needs a mean and a positive std for {b} in stats",
                                     hint="compute them with `seco-train stats SHARDS`")
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "bands", bands)

    @property
    def num_views(self) -> int:
        return VIEWS[self.mode]

    def normalisation(self) -> tuple[list[float], list[float]]:
        """Per-band (mean, std) applied last, in ``bands`` order."""
        if self.stretch == "seco":
            pairs = [IMAGENET[b] for b in self.bands]
        else:
            pairs = [(float(self.stats[b]["mean"]), float(self.stats[b]["std"])) for b in self.bands]
        return [m for m, _ in pairs], [s for _, s in pairs]


# -- images -----------------------------------------------------------------------------------------

def seco_stretch(value8: np.ndarray, band: str) -> np.ndarray:
    """The reference's quantile stretch of 8-bit values, quantised to uint8."""
    lo, hi = SECO_QUANTILES[band]
    return np.clip((value8.astype(np.float64) - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=64)
def _seco_lut8(dtype: str, scale: float, band: str) -> np.ndarray:
    """uint8 table DN -> stretched 8-bit value k (the image value is k / 255) for 8- and 16-bit data."""
    dn = np.arange(np.iinfo(dtype).max + 1, dtype=dtype)
    return seco_stretch(to_uint8(dn, scale), band)


@functools.lru_cache(maxsize=64)
def _seco_lut(dtype: str, scale: float, band: str) -> np.ndarray:
    """float32 table DN -> stretched image value (k / 255) for 8- and 16-bit data."""
    return (_seco_lut8(dtype, scale, band) / np.float32(255)).astype(np.float32)


def stretch8(dn: np.ndarray, scale: float, band: str, out: np.ndarray | None = None) -> np.ndarray:
    """The seco stretch of ``dn`` as uint8 k (image value k / 255)."""
    if dn.dtype in (np.uint8, np.uint16):
        return np.take(_seco_lut8(dn.dtype.name, scale, band), dn, out=out)
    value = seco_stretch(to_uint8(dn, scale), band)
    if out is None:
        return value
    out[...] = value
    return out


def _locate(meta: dict, bands: tuple[str, ...]) -> list[tuple[str, int, float]]:
    """(array name, row, scale) of each band; raises SkipSample when one is missing."""
    where = {}
    for name, a in meta.get("arrays", {}).items():
        for i, b in enumerate(a.get("bands", ())):
            where.setdefault(b, (name, i, float(a.get("scale", DN_SCALE))))
    missing = [b for b in bands if b not in where]
    if missing:
        raise SkipSample(f"sample {meta.get('key')} has no band {', '.join(missing)}", reason="missing_band")
    return [where[b] for b in bands]


def check_sample(sample: dict, cfg: ViewConfig) -> None:
    """Raise :class:`SkipSample` when ``sample`` cannot give views under ``cfg`` (converts no pixels)."""
    located = _locate(sample["json"], cfg.bands)
    for name, _, _ in located:
        if name not in sample:
            raise SkipSample(f"sample {sample.get('__key__')} lacks its {name} array", reason="missing_band")
        if sample[name].ndim != 4 or sample[name].shape[0] < 1:
            raise SkipSample(f"sample {sample.get('__key__')} has no season", reason="no_season")


class SeasonImages:
    """Lazy :func:`to_images` of one sample: ``len()`` seasons, ``[s]`` converts season ``s`` once."""

    def __init__(self, sample: dict, cfg: ViewConfig):
        check_sample(sample, cfg)
        self.key = sample.get("__key__")
        self.cfg = cfg
        self.located = _locate(sample["json"], cfg.bands)
        self.arrays = [sample[name] for name, _, _ in self.located]
        self.sample_arrays = {name: sample[name] for name, _, _ in self.located}
        self.seasons = self.arrays[0].shape[0]
        if any(a.shape[0] != self.seasons for a in self.arrays):
            raise SkipSample(f"sample {self.key} has arrays of different season counts", reason="no_season")
        self.shape = (len(cfg.bands), max(a.shape[2] for a in self.arrays), max(a.shape[3] for a in self.arrays))
        self._done: dict[int, torch.Tensor] = {}
        # the bands stored in one shard array form a group: [(array name, [(channel, row)])]
        groups: dict[str, list[tuple[int, int]]] = {}
        for c, (name, row, _) in enumerate(self.located):
            groups.setdefault(name, []).append((c, row))
        self.groups = list(groups.items())

    def __len__(self) -> int:
        return self.seasons

    def __getitem__(self, season: int) -> torch.Tensor:
        if season not in self._done:
            self._done[season] = self._convert(season)
        return self._done[season]

    def layout(self) -> tuple[list[list[int]], list[float]]:
        """Per band (in cfg.bands order): its [group, index in the group] in :meth:`pack`, and its scale."""
        where = {c: [g, k] for g, (_, members) in enumerate(self.groups) for k, (c, _) in enumerate(members)}
        return [where[c] for c in range(len(self.located))], [scale for _, _, scale in self.located]

    def pack(self, seasons: tuple[int, ...]) -> list[np.ndarray]:
        """What a loader worker ships of ``seasons``: per group, a (len(seasons), bands, h, w) array at the
        group's own resolution: seco: the stretched uint8 k (image value k / 255); stats: the stored
        values (uint8 as is, uint16 as the bits of int16, anything else as float32), scaled on the device."""
        out = []
        for name, members in self.groups:
            arr = self.sample_arrays[name]
            rows = [row for _, row in members]
            if self.cfg.stretch == "seco":
                packed = np.empty((len(seasons), len(rows), *arr.shape[2:]), np.uint8)
                for i, s in enumerate(seasons):
                    for k, (c, row) in enumerate(members):
                        stretch8(arr[s, row], self.located[c][2], self.cfg.bands[c], out=packed[i, k])
            else:
                packed = arr[np.asarray(seasons)][:, rows]
                if packed.dtype == np.uint16:
                    packed = packed.view(np.int16)
                elif packed.dtype != np.uint8:
                    packed = packed.astype(np.float32)
            out.append(np.ascontiguousarray(packed))
        return out

    def _convert(self, season: int) -> torch.Tensor:
        out = torch.empty(self.shape, dtype=torch.float32)
        for c, ((_, row, scale), arr, band) in enumerate(zip(self.located, self.arrays, self.cfg.bands)):
            dn = arr[season, row]
            if self.cfg.stretch == "seco":
                if dn.dtype in (np.uint8, np.uint16):
                    img = np.take(_seco_lut(dn.dtype.name, scale, band), dn)
                else:
                    img = (seco_stretch(to_uint8(dn, scale), band) / np.float32(255)).astype(np.float32)
            else:
                img = dn.astype(np.float32) * np.float32(scale)
            t = torch.from_numpy(img)
            if t.shape != self.shape[1:]:
                t = nnf.interpolate(t[None, None], size=self.shape[1:], mode="bilinear", align_corners=False)[0, 0]
            out[c] = t
        return out


def to_images(sample: dict, cfg: ViewConfig) -> torch.Tensor:
    """(seasons, C, H, W) float32 images of one shard sample in cfg.bands order, all bands on the finest grid
    present (coarser bands upsampled bilinearly), stretched as cfg.stretch says."""
    seasons = SeasonImages(sample, cfg)
    return torch.stack([seasons[s] for s in range(len(seasons))])


# -- random parameters ------------------------------------------------------------------------------

#: per mode: the image (index into the plan's seasons) of each view, and whether it gets ``aug``
SOURCES = {"seco": (0, 1, 2, 0), "moco": (0, 0), "moco_tp": (0, 1)}
AUGMENTED = {"seco": (False, True, False, True), "moco": (True, True), "moco_tp": (True, True)}
#: per mode: the crop comes before the augmentation (MoCo-v2's transform) or after it (SeCo's)
CROP_FIRST = {"seco": False, "moco": True, "moco_tp": True}


@dataclass(frozen=True)
class ViewParams:
    """Every random choice of one view: its crop box and, when ``augmented``, the augmentation's."""

    source: int  # index into ViewPlan.seasons
    box: tuple[int, int, int, int]  # top, left, height, width of the crop
    augmented: bool = False
    jitter: bool = False  # ColorJitter applied (p=0.8)
    factors: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 0.0)  # brightness, contrast, saturation, hue
    order: tuple[int, int, int, int] = (0, 1, 2, 3)  # the jitter's operations in the order applied
    gray: bool = False  # drawn (p=0.2); applied to three bands only
    blur: bool = False  # p=0.5
    sigma: float = 0.1
    flip: bool = False  # p=0.5

    #: the layout of :meth:`row`, the float64 vector a loader worker ships per view
    FIELDS = ("source", "top", "left", "height", "width", "augmented", "jitter", "brightness", "contrast",
              "saturation", "hue", "order0", "order1", "order2", "order3", "gray", "blur", "sigma", "flip")

    def row(self) -> list[float]:
        return [self.source, *self.box, self.augmented, self.jitter, *self.factors, *self.order, self.gray,
                self.blur, self.sigma, self.flip]


#: column of each field in a params row
COL = {name: k for k, name in enumerate(ViewParams.FIELDS)}


@dataclass(frozen=True)
class ViewPlan:
    """The random draws of one sample's views: the seasons drawn and each view's parameters."""

    seasons: tuple[int, ...]
    views: tuple[ViewParams, ...]


def _crop_box(u: list[float], height: int, width: int, scale: tuple[float, float]) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params driven by the uniforms ``u``."""
    area = height * width
    lr0, lr1 = math.log(RATIO[0]), math.log(RATIO[1])
    for k in range(CROP_TRIES):
        a, r, ui, uj = u[4 * k:4 * k + 4]
        target = area * (scale[0] + (scale[1] - scale[0]) * a)
        ratio = math.exp(lr0 + (lr1 - lr0) * r)
        cw = int(round(math.sqrt(target * ratio)))
        ch = int(round(math.sqrt(target / ratio)))
        if 0 < cw <= width and 0 < ch <= height:
            return int(ui * (height - ch + 1)), int(uj * (width - cw + 1)), ch, cw
    ratio = width / height  # fallback: the central crop of the allowed ratio
    if ratio < RATIO[0]:
        cw, ch = width, int(round(width / RATIO[0]))
    elif ratio > RATIO[1]:
        ch, cw = height, int(round(height * RATIO[1]))
    else:
        cw, ch = width, height
    return (height - ch) // 2, (width - cw) // 2, ch, cw


def _uniforms(generator: torch.Generator, n: int) -> list[float]:
    return torch.rand(n, dtype=torch.float64, generator=generator).tolist()


def _aug_params(u: list[float]) -> dict:
    """The augmentation's choices from its 13 uniforms: jitter u[0] (factors u[1:5], order the ranks of
    u[5:9]), grayscale u[9], blur u[10] (sigma u[11]), flip u[12]."""
    b, c, s, h = JITTER
    return {"augmented": True, "jitter": u[0] < P_JITTER,
            "factors": (1 - b + 2 * b * u[1], 1 - c + 2 * c * u[2], 1 - s + 2 * s * u[3], -h + 2 * h * u[4]),
            "order": tuple(sorted(range(4), key=lambda k: u[5 + k])), "gray": u[9] < P_GRAY,
            "blur": u[10] < P_BLUR, "sigma": BLUR_SIGMA[0] + (BLUR_SIGMA[1] - BLUR_SIGMA[0]) * u[11],
            "flip": u[12] < P_FLIP}


def draw_plan(seasons: int, height: int, width: int, cfg: ViewConfig, generator: torch.Generator) -> ViewPlan:
    """Every random choice of one sample's views, from ``generator`` in a fixed order: three season
    indices; then seco: the augmentations of k0 and k2, the crops of q, k0, k1, k2; moco modes: crop
    then augmentation of each view. A crop uses 40 uniforms, an augmentation 13."""
    if seasons < 1:
        raise SkipSample(f"{seasons} seasons hold no image", reason="no_season")
    t = torch.randint(seasons, (3,), generator=generator).tolist()
    sources, augmented = SOURCES[cfg.mode], AUGMENTED[cfg.mode]
    if cfg.mode == "seco":
        augs = {1: _aug_params(_uniforms(generator, _AUG_U)), 3: _aug_params(_uniforms(generator, _AUG_U))}
        boxes = [_crop_box(_uniforms(generator, _CROP_U), height, width, cfg.scale) for _ in sources]
        drawn = (t[0], t[1], t[2])
    else:
        augs, boxes = {}, []
        for v in range(len(sources)):
            boxes.append(_crop_box(_uniforms(generator, _CROP_U), height, width, cfg.scale))
            augs[v] = _aug_params(_uniforms(generator, _AUG_U))
        drawn = (t[0],) if cfg.mode == "moco" else (t[0], t[1])
    views = tuple(ViewParams(source=s, box=boxes[v], **(augs[v] if augmented[v] else {}))
                  for v, s in enumerate(sources))
    return ViewPlan(drawn, views)


# -- operations (one image at a time: the reference for seco_train.batched) ----------------------------

def crop(img: torch.Tensor, box: tuple[int, int, int, int], size: int) -> torch.Tensor:
    """The resized crop of a (C, H, W) image: torchvision's, bilinear and antialiased."""
    i, j, h, w = box
    return F.resized_crop(img, i, j, h, w, [size, size], antialias=True)


def blur_kernel(sigma: float, radius: int) -> list[float]:
    """The Gaussian weights at offsets -radius..radius (torchvision's, normalised to sum 1)."""
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    return torch.softmax(-(x / sigma) ** 2 / 2, dim=0).tolist()


def blur_radius(sigma: float, height: int, width: int) -> int:
    """The kernel radius ceil(3 sigma), capped by the reflect padding's limit."""
    return min(math.ceil(3 * sigma), height - 1, width - 1)


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """torchvision's Gaussian blur (kernel radius ceil(3 sigma), reflect padding) of a (C, H, W)
    image, computed separably as sums of shifted images (2-4x faster than its conv2d on CPU)."""
    c, h, w = img.shape
    r = blur_radius(sigma, h, w)
    k = blur_kernel(sigma, r)
    padded = nnf.pad(img[None], (r, r, r, r), mode="reflect")[0]
    rows = padded[:, :, r:r + w] * k[r]
    for i in range(2 * r + 1):
        if i != r:
            rows.add_(padded[:, :, i:i + w], alpha=k[i])
    out = rows[:, r:r + h] * k[r]
    for i in range(2 * r + 1):
        if i != r:
            out.add_(rows[:, i:i + h], alpha=k[i])
    return out


def adjust_hue(img: torch.Tensor, factor: float) -> torch.Tensor:
    """Rotate the HSV hue of a (3, H, W) RGB image by ``factor`` turns: torchvision's adjust_hue (PIL's
    HSV) in closed form, without its clamping to [0, 1] (values stay between each pixel's min and max)."""
    return rotate_hue(img, 6 * factor)


def rotate_hue(img: torch.Tensor, sixths) -> torch.Tensor:
    """:func:`adjust_hue` by ``sixths`` sixths of a turn, of a (..., 3, H, W) image or batch (``sixths``
    then a tensor broadcasting against (..., H, W))."""
    r, g, b = img.unbind(-3)
    minc, maxc = torch.aminmax(img, dim=-3)
    delta = maxc - minc
    d = torch.where(delta > 0, delta, torch.ones_like(delta))
    h6 = torch.where(maxc == r, (g - b) / d, torch.where(maxc == g, (b - r) / d + 2, (r - g) / d + 4))
    h6 = h6.add_(sixths).remainder_(6)
    out = torch.empty_like(img)
    for ch, n in enumerate((5, 3, 1)):  # HSV -> RGB: V - V S clamp(min(k, 4 - k), 0, 1), k = (n + 6 H) mod 6
        k = h6.add(n).remainder_(6)
        o = out.select(-3, ch)
        torch.minimum(k, 4 - k, out=o)
        o.clamp_(0, 1).mul_(delta).neg_().add_(maxc)
    return out


def _jitter(img: torch.Tensor, p: ViewParams, hi: float) -> torch.Tensor:
    """ColorJitter(0.4, 0.4, 0.4, 0.1) with the factors and order of ``p``."""
    rgb = img.shape[0] == 3
    for op in p.order:
        f = p.factors[op]
        if op == 0:
            img = img.mul(f).clamp_(0, hi)
        elif op == 1:
            if rgb:
                mean = F.rgb_to_grayscale(img).mean()
            else:
                mean = img.mean(dim=(-2, -1), keepdim=True)
            img = img.mul(f).add_(mean, alpha=1 - f).clamp_(0, hi)
        elif rgb and op == 2:
            img = img.mul(f).add_(F.rgb_to_grayscale(img), alpha=1 - f).clamp_(0, hi)
        elif rgb and op == 3:
            img = adjust_hue(img, f)
    return img


def augment(img: torch.Tensor, p: ViewParams, hi: float) -> torch.Tensor:
    """MoCo-v2's artificial augmentation of a (C, H, W) image with the choices of ``p`` (jitter,
    grayscale, blur, flip); ``hi``: the colour operations' upper clamp."""
    if p.jitter:
        img = _jitter(img, p, hi)
    if p.gray and img.shape[0] == 3:
        img = F.rgb_to_grayscale(img, num_output_channels=3).contiguous()
    if p.blur:
        img = gaussian_blur(img, p.sigma)
    if p.flip:
        img = F.horizontal_flip(img)
    return img


def upper_clamp(cfg: ViewConfig) -> float:
    """The colour operations clamp to [0, 1] for the seco stretch, only below at 0 for ``stats``."""
    return 1.0 if cfg.stretch == "seco" else math.inf


def apply_view(img: torch.Tensor, p: ViewParams, cfg: ViewConfig) -> torch.Tensor:
    """One view of a (C, H, W) image, before normalisation: crop(aug(img)) for seco, aug(crop(img)) for
    the MoCo modes (aug only when ``p.augmented``)."""
    if CROP_FIRST[cfg.mode]:
        img = crop(img, p.box, cfg.size)
        return augment(img, p, upper_clamp(cfg)) if p.augmented else img
    if p.augmented:
        img = augment(img, p, upper_clamp(cfg))
    return crop(img, p.box, cfg.size)


def make_views(images: torch.Tensor, cfg: ViewConfig, generator: torch.Generator) -> list[torch.Tensor]:
    """seco: [q, k0, k1, k2]; moco: [q, k0]; moco_tp: [q, k0]; each (C, size, size) float32.

    ``images`` may also be a :class:`SeasonImages`, which converts only the seasons drawn. The per-sample
    path: :mod:`seco_train.batched` computes the same views for a whole batch on the training device."""
    if len(images) < 1 or (isinstance(images, torch.Tensor) and images.ndim != 4):
        raise SkipSample(f"images of shape {tuple(images.shape)} hold no season", reason="no_season")
    height, width = images.shape[-2:]
    plan = draw_plan(len(images), height, width, cfg, generator)
    views = [apply_view(images[plan.seasons[p.source]], p, cfg) for p in plan.views]
    mean, std = cfg.normalisation()
    return [F.normalize(v, mean, std) for v in views]  # not in place: a crop may be a view of images
