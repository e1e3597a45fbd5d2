"""The input transform that goes with a backbone: exactly what pre-training fed it.

A backbone only gives the features it was trained for when its inputs are prepared the same way:
which bands, in which order, stretched and normalised how, at what size. :class:`BackboneTransform`
records that (it is written into every model card and STAC item by ``seco-train export``, and
``seco_train.weights.load_backbone(..., with_transform=True)`` returns it) and applies it:

- ``transform(dn)``: Sentinel-2 digital numbers, ``(C, H, W)`` or ``(B, C, H, W)`` in :attr:`bands`
  order (any integer or float dtype; ``scale`` turns them into reflectance, 1e-4 for L1C/L2A DN, 1/255
  for the SeCo release's uint8) -> the float32 network input, as ``seco_train.views`` makes it:
  ``stretch="seco"``: ``floor(clip(DN * scale, 0, 1) * 255)``, SeCo's per-band 2 %/98 % quantile stretch
  in those 8-bit units, ``/ 255``, then ImageNet mean/std; ``stretch="stats"``: ``(DN * scale - mean) / std``.
- ``transform.rgb8(pixels)``: ``(H, W, 3)`` 8-bit renderings such as EuroSAT's JPEGs, already in the
  stretched 8-bit units (``stretch="seco"`` only): ``x / 255`` then mean/std (what
  ``seco_train.evaluate.transforms.rgb8`` does for EuroSAT).

Images are not resized: :attr:`size` is the crop size of pre-training (the backbone accepts any size;
downstream evaluations run at their native size).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from seco_data.bands import DN_SCALE, canonical, to_uint8
from seco_data.errors import UsageError

from .config import STRETCHES

VERSION = 1


@dataclass(frozen=True)
class BackboneTransform:
    bands: tuple[str, ...]
    #: "seco" (SeCo's uint8 quantile stretch + ImageNet mean/std, RGB) | "stats" (per-band mean/std)
    stretch: str
    #: per band, applied last: (x - mean) / std
    mean: tuple[float, ...]
    std: tuple[float, ...]
    #: pre-training crop size (px)
    size: int
    #: DN -> reflectance
    scale: float = DN_SCALE
    #: stretch "seco": per band (lo, hi) in 8-bit units
    quantiles: tuple[tuple[float, float], ...] = ()

    def __post_init__(self):
        if self.stretch not in STRETCHES:
            raise UsageError(f"stretch must be one of {', '.join(STRETCHES)}, not {self.stretch!r}")
        n = len(self.bands)
        if not n or len(self.mean) != n or len(self.std) != n or (self.stretch == "seco" and len(self.quantiles) != n):
            raise UsageError(f"a transform needs one mean, std (and, for the seco stretch, quantile pair) per band; "
                             f"got {n} bands")
        if any(not s > 0 for s in self.std):
            raise UsageError("every band's std must be > 0")

    # -- construction ---------------------------------------------------------------------------------------

    @classmethod
    def seco_rgb(cls, bands=("B04", "B03", "B02"), size: int = 224, scale: float = DN_SCALE) -> BackboneTransform:
        """SeCo's RGB input (the reference's and this project's default pre-training)."""
        from .views import IMAGENET, SECO_QUANTILES

        bands = tuple(canonical(b) for b in bands)
        return cls(bands, "seco", tuple(IMAGENET[b][0] for b in bands), tuple(IMAGENET[b][1] for b in bands),
                   size, scale, tuple(SECO_QUANTILES[b] for b in bands))

    @classmethod
    def from_run_config(cls, cfg: dict) -> BackboneTransform:
        """The transform of a pre-training run from its resolved config (``RunConfig.to_dict()``); the
        statistics file of ``stretch: stats`` is read and its values copied in."""
        data = (cfg or {}).get("data") or {}
        bands = tuple(canonical(b) for b in data.get("bands", ("B04", "B03", "B02")))
        size = int(data.get("size", 224))
        if data.get("stretch", "seco") == "seco":
            return cls.seco_rgb(bands, size)
        path = data.get("stats")
        try:
            stats = json.loads(Path(path).read_text("utf-8"))
        except (OSError, TypeError, ValueError) as e:
            raise UsageError(f"the run's band statistics {path!r} cannot be read ({e})",
                             hint="the transform of a stretch='stats' run needs the JSON of `seco-train stats` it used") from None
        stats = stats.get("bands", stats)
        return cls(bands, "stats", tuple(float(stats[b]["mean"]) for b in bands),
                   tuple(float(stats[b]["std"]) for b in bands), size)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d = {k: (list(map(list, v)) if k == "quantiles" else list(v) if isinstance(v, tuple) else v) for k, v in d.items()}
        return {"version": VERSION, **d}

    @classmethod
    def from_dict(cls, d: dict) -> BackboneTransform:
        if not isinstance(d, dict) or d.get("version") != VERSION:
            raise UsageError(f"not a seco transform (version {VERSION}): {str(d)[:80]}")
        return cls(tuple(d["bands"]), d["stretch"], tuple(d["mean"]), tuple(d["std"]), int(d["size"]),
                   float(d.get("scale", DN_SCALE)), tuple(tuple(q) for q in d.get("quantiles", ())))

    # -- application ----------------------------------------------------------------------------------------

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        shape = (-1, 1, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(shape)
        std = torch.tensor(self.std, dtype=torch.float32).view(shape)
        return (x - mean) / std

    def __call__(self, dn) -> torch.Tensor:
        """DN of :attr:`bands`, (C, H, W) or (B, C, H, W) -> float32 network input (module docstring)."""
        arr = dn.numpy() if isinstance(dn, torch.Tensor) else np.asarray(dn)
        if arr.ndim == 4:
            return torch.stack([self(a) for a in arr])
        if arr.ndim != 3 or arr.shape[0] != len(self.bands):
            raise UsageError(f"expected (C, H, W) or (B, C, H, W) digital numbers of {len(self.bands)} bands "
                             f"({', '.join(self.bands)}), got shape {arr.shape}")
        if self.stretch == "seco":
            out = np.empty(arr.shape, dtype=np.float32)
            for c, (lo, hi) in enumerate(self.quantiles):
                v8 = to_uint8(arr[c], self.scale).astype(np.float64)
                out[c] = np.clip((v8 - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8) / np.float32(255)
            x = torch.from_numpy(out)
        else:
            x = torch.from_numpy(arr.astype(np.float32)) * np.float32(self.scale)
        return self._normalise(x)

    def rgb8(self, pixels) -> torch.Tensor:
        """(H, W, 3) uint8 renderings in the stretched 8-bit units -> (3, H, W) float32 (module docstring)."""
        if self.stretch != "seco" or len(self.bands) != 3:
            raise UsageError("8-bit renderings match only a backbone pre-trained on SeCo-stretched RGB",
                             hint="pass the bands' digital numbers to the transform itself")
        pixels = np.asarray(pixels)
        if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
            raise UsageError(f"expected H x W x 3 uint8 pixels, got {pixels.dtype} {pixels.shape}")
        x = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))).float().div_(255.0)
        return self._normalise(x)

    def describe(self) -> str:
        """One paragraph for a model card."""
        bands = ", ".join(self.bands)
        if self.stretch == "seco":
            q = "; ".join(f"{b} [{lo:g}, {hi:g}]" for b, (lo, hi) in zip(self.bands, self.quantiles))
            how = (f"8-bit value floor(clip(DN x {self.scale:g}, 0, 1) x 255), SeCo's quantile stretch "
                   f"clip((v - lo) / (hi - lo) x 255, 0, 255) truncated to uint8 ({q}), / 255, then (x - mean) / std")
        else:
            how = f"reflectance DN x {self.scale:g}, then (x - mean) / std"
        stats = "; ".join(f"{b} {m:.6g} / {s:.6g}" for b, m, s in zip(self.bands, self.mean, self.std))
        return f"bands {bands} (channel order); {how}; mean / std per band: {stats}; pre-training crops {self.size} px"
