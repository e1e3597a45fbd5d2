"""Input normalisation for evaluation: ONE function per input kind, matching pre-training.

- 8-bit RGB renderings (EuroSAT's JPEGs): :func:`rgb8`. The pixels already are 8-bit display
  values, the same units that SeCo's uint8 stretch produces in pre-training, so they are NOT stretched
  again: ``x / 255`` then ImageNet mean/std (``seco_train.views.IMAGENET``), pre-training's last step.
  (SeCo's own EuroSAT script used ``x / 255`` alone: :func:`unit8`, the ``reference`` preset.)
- Sentinel-2 digital numbers of any band set (EuroSAT's 13-band TIFs, BigEarthNet): :func:`reflectance`,
  pre-training's ``stretch="stats"``: ``(DN * scale - mean) / std`` per band, with the statistics
  JSON written by ``seco-train stats`` (the one the backbone was trained with).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as nnf

from seco_data.bands import DN_SCALE
from seco_data.errors import UsageError

from ..views import IMAGENET

_RGB_MEAN = torch.tensor([IMAGENET[b][0] for b in ("B04", "B03", "B02")]).view(3, 1, 1)
_RGB_STD = torch.tensor([IMAGENET[b][1] for b in ("B04", "B03", "B02")]).view(3, 1, 1)


def rgb8(pixels: np.ndarray) -> torch.Tensor:
    """``H x W x 3`` uint8 RGB -> ``3 x H x W`` float32, ``(x / 255 - mean) / std`` (ImageNet)."""
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise UsageError(f"expected H x W x 3 uint8 RGB pixels, got {pixels.dtype} {pixels.shape}")
    x = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))).float().div_(255.0)
    return (x - _RGB_MEAN) / _RGB_STD


def unit8(pixels: np.ndarray) -> torch.Tensor:
    """``H x W x C`` uint8 -> ``C x H x W`` float32 ``x / 255`` (torchvision's ``ToTensor``; the reference
    evaluation scripts' only normalisation)."""
    if pixels.dtype != np.uint8 or pixels.ndim != 3:
        raise UsageError(f"expected H x W x C uint8 pixels, got {pixels.dtype} {pixels.shape}")
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))).float().div_(255.0)


def reflectance(dn: np.ndarray, bands: tuple[str, ...], stats: dict, scale: float = DN_SCALE) -> torch.Tensor:
    """``C x H x W`` digital numbers of ``bands`` -> ``(DN * scale - mean) / std`` per band.

    ``stats``: ``{band: {"mean": m, "std": s}}`` (or ``{"bands": {...}}``) from ``seco-train stats``.
    """
    per_band = stats.get("bands", stats) if isinstance(stats, dict) else {}
    missing = [b for b in bands if b not in per_band]
    if missing:
        raise UsageError(f"band statistics lack {', '.join(missing)}",
                         hint="pass the statistics JSON the backbone was pre-trained with (`seco-train stats`)")
    mean = torch.tensor([float(per_band[b]["mean"]) for b in bands]).view(-1, 1, 1)
    std = torch.tensor([float(per_band[b]["std"]) for b in bands]).view(-1, 1, 1)
    x = torch.from_numpy(dn.astype(np.float32)) * scale
    return (x - mean) / std


def resize(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """``C x H x W`` resized to ``size x size`` (bilinear, antialiased); unchanged when it already is."""
    if size is None or (x.shape[-2] == size and x.shape[-1] == size):
        return x
    return nnf.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
