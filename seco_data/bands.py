"""Sentinel-2 MSI band table: names, native resolutions, wavelengths (micrometres)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Sentinel-2 digital numbers to reflectance (L1C top-of-atmosphere, L2A surface): reflectance = DN x DN_SCALE
DN_SCALE = 1e-4
#: 8-bit products (the SeCo release: reflectance clipped to [0, 1], x 255, truncated)
UINT8_SCALE = 1 / 255


def default_scale(dtype: str) -> float:
    """The reflectance scale of data of ``dtype`` whose files do not say (``raster:scale`` missing)."""
    return UINT8_SCALE if str(dtype) == "uint8" else DN_SCALE


def to_uint8(dn: np.ndarray, scale: float) -> np.ndarray:
    """SeCo's 8-bit value of ``dn``: ``floor(clip(DN * scale, 0, 1) * 255)``; uint8 data at scale 1/255
    are already in those units (returned as a copy)."""
    if dn.dtype == np.uint8 and abs(scale * 255 - 1) < 1e-6:
        return dn.copy()
    return np.floor(np.clip(dn.astype(np.float64) * scale, 0.0, 1.0) * 255.0).astype(np.uint8)


@dataclass(frozen=True)
class Band:
    name: str
    resolution: int  # metres
    center_wavelength: float  # micrometres
    full_width_half_max: float  # micrometres
    common_name: str
    description: str


BANDS: dict[str, Band] = {
    b.name: b
    for b in [
        Band("B01", 60, 0.443, 0.027, "coastal", "Coastal aerosol"),
        Band("B02", 10, 0.490, 0.098, "blue", "Blue"),
        Band("B03", 10, 0.560, 0.045, "green", "Green"),
        Band("B04", 10, 0.665, 0.038, "red", "Red"),
        Band("B05", 20, 0.705, 0.019, "rededge071", "Vegetation red edge 1"),
        Band("B06", 20, 0.740, 0.018, "rededge075", "Vegetation red edge 2"),
        Band("B07", 20, 0.783, 0.028, "rededge078", "Vegetation red edge 3"),
        Band("B08", 10, 0.842, 0.145, "nir", "Near infrared"),
        Band("B8A", 20, 0.865, 0.033, "nir08", "Narrow near infrared"),
        Band("B09", 60, 0.945, 0.026, "nir09", "Water vapour"),
        Band("B10", 60, 1.375, 0.075, "cirrus", "Cirrus (L1C only)"),
        Band("B11", 20, 1.610, 0.143, "swir16", "Short-wave infrared 1.6"),
        Band("B12", 20, 2.190, 0.242, "swir22", "Short-wave infrared 2.2"),
    ]
}

#: Bands present in each processing level.
PRODUCT_BANDS = {
    "L1C": tuple(BANDS),
    "L2A": tuple(b for b in BANDS if b != "B10"),
}

#: Aliases accepted on input (SeCo / torchgeo spelling without the leading zero).
ALIASES = {f"B{i}": f"B{i:02d}" for i in range(1, 10)}


def canonical(name: str) -> str:
    """Return the canonical band name (``B1`` -> ``B01``); raise KeyError when unknown."""
    n = name.strip().upper()
    n = ALIASES.get(n, n)
    if n not in BANDS:
        raise KeyError(name)
    return n


def group_by_resolution(bands: list[str] | tuple[str, ...]) -> dict[int, tuple[str, ...]]:
    """Group band names by native resolution, finest first, keeping the given order inside a group."""
    groups: dict[int, list[str]] = {}
    for b in bands:
        groups.setdefault(BANDS[b].resolution, []).append(b)
    return {res: tuple(groups[res]) for res in sorted(groups)}
